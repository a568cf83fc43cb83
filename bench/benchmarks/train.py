"""Training and evaluation of the models (mirrors ``mindrec.train``).

The grid (common.ModelBenchmark) crosses the two models with a small dense table and a
1M-row sparse one, because table size decides which optimizer path runs (dense updates
of every row vs lazy updates of the touched rows).
"""
from __future__ import annotations

from itertools import islice

from .common import PEAKMEM_STEPS, TIMED_STEPS, WARMUP_STEPS, ModelBenchmark, run_config


class TrainSteps(ModelBenchmark):
    """Time of TIMED_STEPS train steps (batch 1000) on batches already in memory,
    after WARMUP_STEPS steps (the first compiles the graph): the step alone, no input."""

    def setup(self, cache, model, table_size):
        self.check_supported(cache)
        from mindspore import Tensor
        from mindrec.train.step import TrainStep
        from mindrec.train.trainer import batches, build

        run = run_config(model, table_size, TIMED_STEPS + WARMUP_STEPS)
        network = build(run, cache["data"])
        self.step = TrainStep(network)
        self.step.set_train(True)
        stream = batches(cache["data"], "train", run.train.batch_size, run.train.table_size,
                         shuffle=True, seed=run.train.seed, drop_remainder=True)
        self.batches = [tuple(Tensor(a) for a in batch)
                        for batch in islice(stream, TIMED_STEPS)]
        for i in range(WARMUP_STEPS):
            self.step(*self.batches[i % len(self.batches)]).asnumpy()

    def time_train_step(self, cache, model, table_size):
        for ids, vals, labels in self.batches:
            self.step(ids, vals, labels).asnumpy()  # wait for the step, as fit() does


class TrainMemory(ModelBenchmark):
    """Peak resident memory of a process that builds the model and trains
    PEAKMEM_STEPS steps from the MindRecord files (MindSpore import included)."""

    def setup(self, cache, model, table_size):
        self.check_supported(cache)

    def peakmem_train(self, cache, model, table_size):
        from mindrec.train.trainer import build, fit
        run = run_config(model, table_size, PEAKMEM_STEPS)
        fit(build(run, cache["data"]), run, cache["data"], progress=None)


class TrainQuality(ModelBenchmark):
    """What the setup_cache training measured (fixed steps, seed and data): throughput
    and test quality, tracked beside the timings as scikit-learn tracks its scores."""

    def setup(self, cache, model, table_size):
        self.result = self.trained(cache, model, table_size)

    def track_samples_per_s(self, cache, model, table_size):
        return self.result["samples_per_s"]

    track_samples_per_s.unit = "samples/s"

    def track_auc(self, cache, model, table_size):
        return self.result["auc"]

    track_auc.unit = "AUC"

    def track_logloss(self, cache, model, table_size):
        return self.result["logloss"]

    track_logloss.unit = "logloss"


class Evaluate(ModelBenchmark):
    """mindrec.train.trainer.evaluate over the test split (about 6k rows), as a user
    calls it: reading, prediction (its graph compile included: evaluate builds a new
    Predict cell per call) and AUC/logloss. The weights do not change the cost, so the
    model is freshly initialised rather than loaded."""

    repeat = 3

    def setup(self, cache, model, table_size):
        self.check_supported(cache)
        from mindrec.train.trainer import build, evaluate

        run = run_config(model, table_size, TIMED_STEPS)
        self.network = build(run, cache["data"])
        self.table_rows = run.train.table_size
        self.evaluate = evaluate
        evaluate(self.network, cache["data"], table_size=self.table_rows)  # warm-up

    def time_eval(self, cache, model, table_size):
        self.evaluate(self.network, cache["data"], table_size=self.table_rows)
