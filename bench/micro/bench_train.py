"""Training-side kernels: the embedding step, AUC, and the peak-memory sampler's cost."""
from __future__ import annotations

import numpy as np
import pytest

from bench.benchmarks.loops import held_batch_loop
from bench.micro.settings import (AUC_ROWS, BATCH, EMBEDDING_DIM, EMBEDDING_ROWS,
                                  SAMPLER_PAIRS, SAMPLER_ROUNDS, SAMPLER_STEPS, SEED)


def _embedding_step(sparse: bool):
    """A compiled step over one value-scaled embedding table: lookup, mean-square loss,
    gradient, optimizer (LazyAdam on the sparse gradient, Adam on the dense one)."""
    from mindspore import nn, ops

    from mindrec.embedding.static import StaticEmbedding
    from mindrec.models.blocks import FeatureEmbedding

    class Loss(nn.Cell):
        def __init__(self, embedding):
            super().__init__(auto_prefix=False)
            self.embedding = embedding

        def construct(self, ids, vals):
            return ops.reduce_mean(ops.square(self.embedding(ids, vals)))

    class Step(nn.Cell):
        def __init__(self, embedding, optimizer):
            super().__init__(auto_prefix=False)
            self.optimizer = optimizer
            self.grad_fn = ops.value_and_grad(Loss(embedding), None, optimizer.parameters)

        def construct(self, ids, vals):
            loss, grads = self.grad_fn(ids, vals)
            self.optimizer(grads)
            return loss

    embedding = FeatureEmbedding(StaticEmbedding(EMBEDDING_ROWS, EMBEDDING_DIM, sparse, 0.01))
    optimizer = (nn.LazyAdam if sparse else nn.Adam)(embedding.trainable_params(),
                                                    learning_rate=1e-3)
    step = Step(embedding, optimizer)
    step.set_train(True)
    return step


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
def test_embedding_grad_step(benchmark, runtime, parsed_chunk, vocabulary, sparse, per_second):
    """Forward + backward + update of a 100k x 16 table on one batch of 1000 encoded
    rows (one lookup per field). Dense updates every row's Adam state; sparse only the rows
    the batch touched."""
    from mindspore import Tensor

    from mindrec.data.criteo import encode
    ids, vals, _ = encode(parsed_chunk, vocabulary)
    assert vocabulary.size <= EMBEDDING_ROWS, "vocabulary larger than the benchmark's table"
    ids, vals = Tensor(ids[:BATCH]), Tensor(vals[:BATCH])
    step = _embedding_step(sparse)
    step(ids, vals).asnumpy()  # compile

    benchmark(lambda: step(ids, vals).asnumpy())
    per_second(BATCH, "samples_per_s")


def test_roc_auc_1m(benchmark, per_second):
    """mindrec.metrics.roc_auc over 1M predictions (float32 scores, some ties)."""
    from mindrec.metrics import roc_auc
    rng = np.random.default_rng(SEED)
    labels = (rng.random(AUC_ROWS) < 0.25).astype(np.float32)
    scores = (rng.random(AUC_ROWS) + 0.5 * labels).astype(np.float32)

    benchmark(roc_auc, labels, scores)
    per_second(AUC_ROWS)


@pytest.fixture(scope="session")
def train_loop(runtime, dataset):
    """SAMPLER_STEPS Wide&Deep (cpu-small) train steps on batches held in memory, after
    two warm-up passes."""
    from mindrec.config import build_run_config
    from mindrec.train.trainer import build
    run = build_run_config("wide_deep", "cpu-small", train_overrides={"seed": SEED})
    return held_batch_loop(build(run, dataset), run, dataset, SAMPLER_STEPS,
                           warmup_steps=2 * SAMPLER_STEPS)


def _interleaved_ratio(loop, pairs: int) -> float:
    """Median time of ``loop`` with a sampler running / without, over alternating pairs
    (one run, so machine drift cancels; FACTS.md: compare ratios measured together)."""
    import time

    from bench.job.measure import PeakMemorySampler
    plain, sampled = [], []
    for _ in range(pairs):
        start = time.perf_counter()
        loop()
        plain.append(time.perf_counter() - start)
        with PeakMemorySampler():
            start = time.perf_counter()
            loop()
            sampled.append(time.perf_counter() - start)
    return float(np.median(sampled) / np.median(plain))


@pytest.mark.parametrize("sampler", ["off", "on"])
def test_sampler_overhead(benchmark, train_loop, sampler, medians, per_second):
    """The train-step loop with bench.job.measure.PeakMemorySampler (50 ms interval, as the
    runner uses it) sampling in the background for the whole benchmark, and without.
    The "on" case also measures the ratio on alternating pairs (``interleaved_ratio``);
    the summary prints both ratios."""
    from bench.job.measure import PeakMemorySampler

    def measure() -> None:
        benchmark.pedantic(train_loop, rounds=SAMPLER_ROUNDS, iterations=1, warmup_rounds=1)

    if sampler == "on":
        with PeakMemorySampler() as memory:
            measure()
        benchmark.extra_info["samples_taken"] = memory.samples
        benchmark.extra_info["peak_rss_mb"] = memory.peak_rss_mb
    else:
        measure()
    per_second(SAMPLER_STEPS * BATCH, "samples_per_s")
    if benchmark.stats is None:
        return
    medians[f"sampler-{sampler}"] = benchmark.stats.stats.median
    if sampler == "on":
        if "sampler-off" in medians:
            benchmark.extra_info["ratio_to_off"] = medians["sampler-on"] / medians["sampler-off"]
        ratio = _interleaved_ratio(train_loop, SAMPLER_PAIRS)
        benchmark.extra_info["interleaved_ratio"] = medians["sampler-interleaved"] = ratio
