"""Training and evaluation loops over a converted dataset.

Timing follows the project's rules: the first step (graph compilation) is reported apart
as ``compile_s``; every later step is timed to completion (the loss is read back), and
throughput is quoted from the median step time. The input pipeline is timed apart too.
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from mindspore import Tensor

from mindrec.config import RunConfig
from mindrec.data.dataset import open_dataset
from mindrec.data.mindrecord import iter_batches
from mindrec.models.registry import build_model
from mindrec.metrics import log_loss, roc_auc
from mindrec.train import checkpoint
from mindrec.train.step import Predict, TrainStep, configure_runtime


@dataclass
class TrainResult:
    """What one training run measured. Times in seconds unless the name says ms."""

    batch_size: int
    steps: int = 0  # the step count reached (from ``first_step``)
    first_step: int = 0  # the step a resumed run started from
    compile_s: float = 0.0
    step_s: list[float] = field(default_factory=list)  # per timed step, compile excluded
    # Process CPU time (all threads) of each timed step: unlike wall time it does not
    # grow while a busy neighbour keeps this process off the cores.
    step_cpu_s: list[float] = field(default_factory=list)
    input_s: float = 0.0  # time spent waiting for batches
    wall_s: float = 0.0
    checkpoint_s: float = 0.0  # writing periodic checkpoints (not in any step's time)
    losses: list[float] = field(default_factory=list)  # per step, compile step included
    # Hash embeddings only: the index counters at the end (see IndexStats).
    table_stats: dict | None = None

    def step_ms(self, q: float) -> float:
        """Quantile ``q`` (0-100) of the timed step durations, in milliseconds."""
        return float(np.percentile(self.step_s, q) * 1e3) if self.step_s else float("nan")

    @property
    def samples_per_cpu_s(self) -> float:
        """Samples per second of process CPU time (median timed step, all threads)."""
        if not self.step_cpu_s:
            return float("nan")
        return self.batch_size / float(np.median(self.step_cpu_s))

    @property
    def samples_per_s(self) -> float:
        """Throughput from the median timed step (batch size / median step time)."""
        if not self.step_s:
            return float("nan")
        return self.batch_size / float(np.median(self.step_s))


@dataclass
class EvalResult:
    """Quality over a whole split."""

    auc: float
    logloss: float
    rows: int
    predictions: np.ndarray
    labels: np.ndarray


EVAL_BATCH = 4096  # rows per evaluation step (one compiled graph; padded at the end)

# A prime above every table size we build, so id -> id * P mod rows is a bijection.
_SPREAD_PRIME = 2_147_483_647


def spread_ids(ids: np.ndarray, table_size: int) -> np.ndarray:
    """Map ids injectively over ``[0, table_size)``: ``id * P mod table_size``.

    Used when a benchmark sizes the table beyond the dataset's vocabulary: the rows in
    use are then scattered over the whole table, as in a real large table, instead of
    packed at its start (which would flatter caches).
    """
    return (ids.astype(np.int64) * _SPREAD_PRIME % table_size).astype(np.int32)


def table_rows(run: RunConfig, data_dir: Path) -> int:
    """Rows of the model's tables: ``run.train.table_size`` or the dataset vocabulary."""
    vocab = int(open_dataset(data_dir)["vocab_size"])
    size = run.train.table_size
    if size is None:
        return vocab
    if size < vocab:
        raise ValueError(f"train.table_size {size:,} is smaller than the vocabulary "
                         f"({vocab:,} ids) of {data_dir}")
    return size


def batches(data_dir: Path, split: str, batch_size: int, table_size: int | None = None,
            **options):
    """Batches of ``split`` with ids spread over ``table_size`` rows when it is given."""
    path = Path(data_dir) / open_dataset(data_dir)["files"][split]
    for ids, vals, labels in iter_batches(path, batch_size, **options):
        yield (ids if table_size is None else spread_ids(ids, table_size)), vals, labels


def build(run: RunConfig, data_dir: Path, device: str = "CPU", rank: int = 0):
    """Configure the runtime and build the model sized for the dataset (or table_size),
    as worker ``rank`` of a parallel run; a cache's device tier is sized against the
    dataset's vocabulary (the rows the data touches)."""
    configure_runtime(run.train.seed, device)
    cache = run.cache.sized(int(open_dataset(data_dir)["vocab_size"]))
    return build_model(dataclasses.replace(run, cache=cache), table_rows(run, data_dir), rank)


def worker_rows(batch_size: int, rank: int, workers: int) -> slice:
    """The rows of every global batch that worker ``rank`` of ``workers`` takes."""
    share = batch_size // workers
    return slice(rank * share, (rank + 1) * share)


def fit(network, run: RunConfig, data_dir: Path, progress: TextIO | None = sys.stderr,
        rank: int = 0, checkpoint_path: str | Path | None = None,
        resume_from: str | Path | None = None) -> TrainResult:
    """Train ``network`` on the train split for ``run.train.epochs`` (or ``max_steps``).

    The last partial batch of each epoch is dropped so every step has one shape (one
    compiled graph). Batches are shuffled with a seed derived from ``run.train.seed``.
    With hash embeddings each step's time includes turning its keys into slots. In a
    parallel run every worker reads the same global batches and trains on its own
    equal slice of each (so K steps match K standalone steps on the global batches);
    throughput counts the global batch.

    With ``checkpoint_path``, a checkpoint (optimizer state included) is written at the
    end and, with ``run.train.checkpoint_every``, every that many steps, each replacing
    the last; its time is not part of any step's. ``resume_from`` starts from such a
    checkpoint: its parameters, optimizer state and step, the batches before that step
    skipped, so the run goes on as if it had not stopped.
    """
    cfg = run.train
    index = network.hash_index
    mine = worker_rows(cfg.batch_size, rank, run.parallel.workers)
    step_fn = TrainStep(network, run.parallel.workers)
    step_fn.set_train(True)
    result = TrainResult(batch_size=cfg.batch_size)
    if resume_from is not None:
        result.first_step = result.steps = checkpoint.load(network, resume_from,
                                                           step_fn.optimizers)
    per_epoch = int(open_dataset(data_dir)["rows"]["train"]) // cfg.batch_size
    started = last_report = time.perf_counter()
    for epoch in range(result.steps // max(1, per_epoch), cfg.epochs):
        epoch_batches = itertools.islice(train_batches(run, data_dir, epoch),
                                         result.steps - epoch * per_epoch, None)
        if index is not None:  # a cache stages the rows of the next batches
            epoch_batches = index.prefetch(epoch_batches)
        try:
            while cfg.max_steps is None or result.steps < cfg.max_steps:
                batch = next_batch(epoch_batches, result)
                if batch is None:
                    break
                _train_step(step_fn, index, [a[mine] for a in batch], result,
                            cfg.warmup_steps)
                if checkpoint_path and cfg.checkpoint_every and (
                        result.steps % cfg.checkpoint_every == 0):
                    _save(network, checkpoint_path, step_fn, result)
                last_report = report_progress(progress, run, epoch, result, last_report)
        finally:
            close = getattr(epoch_batches, "close", None)
            if close is not None:
                close()  # stops a prefetch thread between epochs
        if cfg.max_steps is not None and result.steps >= cfg.max_steps:
            break
    check_timed(result, run, data_dir)
    result.wall_s = time.perf_counter() - started
    if checkpoint_path:
        _save(network, checkpoint_path, step_fn, result)
    if index is not None:
        result.table_stats = dataclasses.asdict(index.stats())
    return result


def _save(network, path, step_fn, result: TrainResult) -> None:
    """A checkpoint of the run at its current step (its time apart)."""
    start = time.perf_counter()
    checkpoint.save(network, path, step_fn.optimizers, step=result.steps)
    result.checkpoint_s += time.perf_counter() - start


def _train_step(step_fn, index, batch: list[np.ndarray], result: TrainResult,
                warmup_steps: int) -> None:
    """One timed step (:func:`record_step`): keys to slots (hash tables), the compiled
    step, the index's step counter."""
    keys, vals, labels = batch
    step_start = time.perf_counter()
    cpu_start = time.process_time()
    ids = keys if index is None else index.train_lookup(keys)[0]
    loss = float(step_fn(Tensor(ids), Tensor(vals), Tensor(labels)).asnumpy())
    if index is not None:
        index.advance()
    record_step(result, time.perf_counter() - step_start, time.process_time() - cpu_start,
                loss, warmup_steps)


def record_step(result: TrainResult, elapsed: float, cpu: float, loss: float,
                warmup_steps: int) -> None:
    """Count a step of ``elapsed`` wall and ``cpu`` process seconds that ended at
    ``loss``: the first step of a process is its compile time, the next
    ``warmup_steps`` are untimed; a loss that is not finite stops the run."""
    done_here = result.steps - result.first_step
    if done_here == 0:
        result.compile_s = elapsed
    elif done_here >= warmup_steps:
        result.step_s.append(elapsed)
        result.step_cpu_s.append(cpu)
    result.steps += 1
    result.losses.append(loss)
    if not np.isfinite(loss):
        raise FloatingPointError(f"loss became {loss} at step {result.steps}")


def next_batch(batches, result: TrainResult):
    """The next of ``batches`` (None at the end), its wait added to ``result.input_s``."""
    fetch_start = time.perf_counter()
    batch = next(batches, None)
    if batch is not None:
        result.input_s += time.perf_counter() - fetch_start
    return batch


def train_batches(run: RunConfig, data_dir: Path, epoch: int):
    """The training batches of ``epoch`` (0-based): shuffled with a seed derived from
    ``run.train.seed``, the last partial batch dropped so every step has one shape."""
    cfg = run.train
    return batches(data_dir, "train", cfg.batch_size, cfg.table_size, shuffle=True,
                   seed=cfg.seed + epoch, drop_remainder=True)


def report_progress(progress: TextIO | None, run: RunConfig, epoch: int,
                    result: TrainResult, last_report: float) -> float:
    """Print a progress line every ``log_every`` steps or 10 s; returns the time of the
    last line printed."""
    cfg = run.train
    now = time.perf_counter()
    if progress is None or not (result.steps % cfg.log_every == 0 or now - last_report > 10):
        return last_report
    print(f"epoch {epoch + 1}/{cfg.epochs} step {result.steps} "
          f"loss {np.mean(result.losses[-cfg.log_every:]):.4f} "
          f"{result.samples_per_s:,.0f} samples/s", file=progress, flush=True)
    return now


def check_timed(result: TrainResult, run: RunConfig, data_dir: Path) -> None:
    """Raise ValueError when the run had no step past its warm-up to time."""
    cfg = run.train
    if result.steps - result.first_step <= cfg.warmup_steps:
        raise ValueError(f"{data_dir}: {result.steps - result.first_step} full batches of "
                         f"{cfg.batch_size} rows; more than warmup_steps={cfg.warmup_steps} "
                         f"are needed to time")


def evaluate(network, data_dir: Path, split: str = "test", batch_size: int = EVAL_BATCH,
             table_size: int | None = None) -> EvalResult:
    """AUC and logloss of ``network`` over every row of ``split`` (one process)."""
    return quality(*predict_split(network, data_dir, split, batch_size, table_size))


def quality(predictions: np.ndarray, labels: np.ndarray) -> EvalResult:
    """AUC and logloss of click ``predictions`` against 0/1 ``labels``."""
    return EvalResult(auc=roc_auc(labels, predictions), logloss=log_loss(labels, predictions),
                      rows=len(labels), predictions=predictions, labels=labels)


def predict_split(network, data_dir: Path, split: str = "test", batch_size: int = EVAL_BATCH,
                  table_size: int | None = None, rank: int = 0,
                  workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and labels of ``split``: all its rows, or in a parallel run the rows
    of worker ``rank``'s slice of each batch (every worker must call this together:
    sharded tables look rows up with collectives).

    Batches are padded to ``batch_size`` (rounded up to a multiple of ``workers``; the
    padding is dropped) so evaluation compiles one graph. Hash keys are looked up
    without counting as hits.
    """
    batch_size = -(-batch_size // workers) * workers
    mine = worker_rows(batch_size, rank, workers)
    positions = np.arange(batch_size)[mine]
    predict = Predict(network)
    predict.set_train(False)
    index = network.hash_index
    preds, labels = [], []
    for ids, vals, lab in batches(data_dir, split, batch_size, table_size):
        if index is not None:
            ids = index.lookup(ids)
        n = len(lab)
        if n < batch_size:
            ids = np.pad(ids, ((0, batch_size - n), (0, 0)))
            vals = np.pad(vals, ((0, batch_size - n), (0, 0)))
            lab = np.pad(lab, ((0, batch_size - n), (0, 0)))
        kept = positions < n
        p = predict(Tensor(ids[mine]), Tensor(vals[mine])).asnumpy()[:, 0]
        preds.append(p[kept])
        labels.append(lab[mine][kept, 0])
    if not preds:
        raise ValueError(f"{data_dir}: the {split} split is empty")
    return np.concatenate(preds), np.concatenate(labels)
