"""The online trainer (``mindrec-bench online``): consume a topic of raw rows, predict
each batch before training on it (progressive validation: the training step's own
forward pass, taken before its update), train, publish model versions and checkpoint
with the stream's offsets inside.

Exactly once. A checkpoint holds the model, the optimizer state and the stream
positions after the last batch trained, with counters of the rows trained (count, sum
and sum of squares of their row numbers); offsets are committed to the broker only
after it is durable. A restart loads the checkpoint and reads on from its positions, so
every row is reflected in the training state once, whatever the moment of a crash.
Versions published after the last checkpoint may hold rows that a restart trains again;
the restarted trainer publishes a full version that replaces them.

Out directory: ``checkpoint.safetensors``; ``frozen.safetensors`` (the model frozen
after ``freeze_after_rows``, predicting every FROZEN_EVERY-th batch beside the online
one); ``versions/`` (see :mod:`mindrec.stream.versions`); ``progressive-<step>.npz``
(written at each checkpoint, for the rows trained since the one before, ``<step>`` the
checkpoint's: row number, event time, label, online and frozen predictions (NaN where
none), the times its batch was taken from the stream and trained) and ``online.json``
(the summary of this process, rewritten at each checkpoint).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from mindspore import Tensor

from mindrec.config import ConfigError, EmbeddingKind, RunConfig
from mindrec.files import write_durably
from mindrec.metrics import roc_auc
from mindrec.models.registry import build_model
from mindrec.npz import save_npz
from mindrec.stream.consumer import Batch, StreamConsumer
from mindrec.stream.versions import VersionWriter
from mindrec.train import checkpoint
from mindrec.train.step import Predict, TrainStep, configure_runtime

CHECKPOINT = "checkpoint.safetensors"
FROZEN = "frozen.safetensors"
SUMMARY = "online.json"
VERSIONS = "versions"
_PROGRESS_EVERY_S = 10.0
FROZEN_EVERY = 4  # the frozen model predicts every this many batches (it costs a forward)
_RECENT_BATCHES = 20  # the progress line's AUC is over this many batches


@dataclass
class StreamCounters:
    """What the training state has consumed: saved in every checkpoint."""

    positions: dict[int, int] = field(default_factory=dict)
    steps: int = 0
    rows_trained: int = 0
    row_sum: int = 0
    row_square_sum: int = 0
    bad: int = 0

    def add(self, batch: Batch) -> None:
        rows = batch.rows.astype(object)  # Python ints: the sums must not overflow
        self.positions = dict(batch.positions)
        self.steps += 1
        self.rows_trained += len(batch.rows)
        self.row_sum += int(rows.sum())
        self.row_square_sum += int((rows * rows).sum())
        self.bad += batch.bad

    @classmethod
    def from_extra(cls, extra: dict | None, path: Path) -> StreamCounters:
        if not extra or "stream" not in extra:
            raise checkpoint.CheckpointError(f"{path}: not an online trainer's checkpoint "
                                             f"(no stream positions)")
        values = dict(extra["stream"])
        values["positions"] = {int(p): int(o) for p, o in values["positions"].items()}
        return cls(**values)


class _Progressive:
    """Per row trained: row number, event time, label, predictions, times taken and
    trained; kept until :meth:`flush` writes them, the last batches kept for the
    progress line."""

    def __init__(self):
        self.parts: list[dict[str, np.ndarray]] = []
        self.recent: deque[dict[str, np.ndarray]] = deque(maxlen=_RECENT_BATCHES)
        self.rows = 0  # rows added in all

    def add(self, batch: Batch, online: np.ndarray, frozen: np.ndarray | None,
            taken_ms: int, trained_ms: int) -> None:
        n = len(batch.rows)
        self.rows += n
        self.parts.append({
            "rows": batch.rows, "event_ms": batch.event_ms, "labels": batch.labels[:, 0],
            "online": online, "frozen": np.full(n, np.nan, np.float32) if frozen is None
            else frozen, "taken_ms": np.full(n, taken_ms, np.int64),
            "trained_ms": np.full(n, trained_ms, np.int64)})
        self.recent.append(self.parts[-1])

    def flush(self, path: Path) -> None:
        """Write the rows added since the last flush to ``path`` (none: no file)."""
        if self.parts:
            save_npz(path, {name: np.concatenate([p[name] for p in self.parts])
                            for name in self.parts[0]})
            self.parts = []

    def recent_auc(self) -> tuple[float | None, float | None]:
        """AUC of the online and frozen predictions over the last batches (the frozen
        model's over the rows it predicted)."""
        if not self.recent:
            return None, None
        labels, online, frozen = (np.concatenate([p[name] for p in self.recent])
                                  for name in ("labels", "online", "frozen"))
        scored = ~np.isnan(frozen)
        return _auc(labels, online), _auc(labels[scored], frozen[scored])


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None without both classes."""
    return roc_auc(labels, scores) if len(labels) and labels.min() != labels.max() else None


def check_run(run: RunConfig) -> None:
    """Online training needs hash tables with a capacity and no cache."""
    if run.embedding.kind is not EmbeddingKind.HASH:
        raise ConfigError("online: the stream brings new values; set embedding.kind: hash")
    if run.embedding.capacity is None:
        raise ConfigError("online: set embedding.capacity (rows of the hash tables): a stream "
                          "has no vocabulary to size them by")
    if run.cache.enabled:
        raise ConfigError("online: the embedding cache is not supported by the online "
                          "trainer yet; unset the cache section")


def run_online(run: RunConfig, bootstrap_servers: str, out_dir: Path,
               progress: TextIO | None = sys.stderr) -> dict:
    """Train ``run`` on the stream of ``run.online`` until ``max_rows`` rows are trained
    or no batch comes for ``idle_stop_s``; resume from ``out_dir``'s checkpoint if there
    is one. Returns the summary written to ``online.json``."""
    config = run.online
    check_run(run)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_runtime(run.train.seed)
    network = build_model(run, run.embedding.capacity)
    step_fn = TrainStep(network, with_predictions=True)
    step_fn.set_train(True)
    counters = StreamCounters()
    ckpt = out_dir / CHECKPOINT
    if ckpt.exists():
        checkpoint.load(network, ckpt, step_fn.optimizers)
        counters = StreamCounters.from_extra(checkpoint.read_extra(ckpt), ckpt)
        _say(progress, f"resuming from {ckpt}: step {counters.steps}, "
                       f"{counters.rows_trained:,} rows trained, positions {counters.positions}")
    frozen = _load_frozen(run, out_dir)
    consumer = StreamConsumer(bootstrap_servers, config.topic, counters.positions,
                              wait_s=config.broker_wait_s, progress=progress)
    writer = VersionWriter(out_dir / VERSIONS, run, full_every=config.full_every)
    loop = _Loop(run, config, out_dir, network, step_fn, frozen, consumer, writer,
                 counters, progress)
    try:
        loop.run()
    finally:
        consumer.close()
    return loop.summary()


class _Loop:
    """The consume -> predict -> train -> publish -> checkpoint loop of one process."""

    def __init__(self, run, config, out_dir, network, step_fn, frozen, consumer, writer,
                 counters, progress):
        self.run_config, self.config, self.out_dir = run, config, out_dir
        self.network, self.step_fn = network, step_fn
        self.frozen, self.consumer, self.writer = frozen, consumer, writer
        self.counters, self.progress = counters, progress
        self.first_step = counters.steps
        self.progressive = _Progressive()
        self.versions: list[dict] = []
        self.timings = {"wait_s": 0.0, "frozen_predict_s": 0.0, "train_s": 0.0,
                        "publish_s": 0.0, "checkpoint_s": 0.0}
        self.started = time.perf_counter()
        self.last_publish = self.last_report = time.monotonic()
        self.batch_event_ms: list[np.ndarray] = []  # event times since the last version

    def run(self) -> None:
        cfg = self.config
        batch_size = self.run_config.train.batch_size
        idle_since = time.monotonic()
        while cfg.max_rows is None or self.counters.rows_trained < cfg.max_rows:
            waited = time.perf_counter()
            batch = self.consumer.next_batch(batch_size, cfg.batch_wait_s)
            self.timings["wait_s"] += time.perf_counter() - waited
            now = time.monotonic()
            if batch is None:
                if cfg.idle_stop_s is not None and now - idle_since > cfg.idle_stop_s:
                    _say(self.progress, f"no full batch for {cfg.idle_stop_s:g} s: stopping")
                    break
                self._maybe_publish(now)
                continue
            idle_since = now
            self._step(batch)
            self._maybe_publish(time.monotonic())
            if self.counters.steps % cfg.checkpoint_every_steps == 0:
                self._checkpoint()
            self._report(time.monotonic())
        if self.counters.steps > self.first_step:
            self._publish()
            self._checkpoint()

    def _step(self, batch: Batch) -> None:
        """Train on the batch; the step's forward pass, before the update, is the online
        model's prediction of it; the frozen model predicts every FROZEN_EVERY-th batch."""
        taken_ms = int(time.time() * 1000)
        started = time.perf_counter()
        frozen = None
        if self.frozen is not None and self.counters.steps % FROZEN_EVERY == 0:
            frozen_net, frozen_predict = self.frozen
            frozen = frozen_predict(Tensor(frozen_net.hash_index.lookup(batch.keys)),
                                    Tensor(batch.vals)).asnumpy()[:, 0]
        trained = time.perf_counter()
        self.timings["frozen_predict_s"] += trained - started
        index = self.network.hash_index
        slots = index.train_lookup(batch.keys)[0]
        loss, online = self.step_fn(Tensor(slots), Tensor(batch.vals), Tensor(batch.labels))
        loss, online = float(loss.asnumpy()), online.asnumpy()
        index.advance()
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {self.counters.steps + 1}")
        self.timings["train_s"] += time.perf_counter() - trained
        self.counters.add(batch)
        self.batch_event_ms.append(batch.event_ms)
        self.progressive.add(batch, online[:, 0], frozen, taken_ms, int(time.time() * 1000))
        freeze_at = self.config.freeze_after_rows
        if (self.frozen is None and freeze_at is not None
                and self.counters.rows_trained >= freeze_at):
            self._freeze()

    def _maybe_publish(self, now: float) -> None:
        cfg = self.config
        by_time = cfg.publish_every_s is not None and now - self.last_publish >= cfg.publish_every_s
        by_steps = (cfg.publish_every_steps is not None and self.batch_event_ms
                    and self.counters.steps % cfg.publish_every_steps == 0)
        if self.batch_event_ms and (by_time or by_steps):
            self._publish()

    def _publish(self) -> None:
        """Publish a version of the model as trained so far."""
        started = time.perf_counter()
        events = np.concatenate(self.batch_event_ms) if self.batch_event_ms else np.empty(0)
        info = {"step": self.counters.steps, "rows_trained": self.counters.rows_trained,
                "positions": {str(p): o for p, o in self.counters.positions.items()},
                "oldest_event_ms": int(events.min()) if len(events) else None,
                "newest_event_ms": int(events.max()) if len(events) else None,
                "publish_start_ms": int(time.time() * 1000)}
        published = self.writer.publish(self.network, info)
        elapsed = time.perf_counter() - started
        self.timings["publish_s"] += elapsed
        self.versions.append({"version": published.version, "kind": published.kind,
                              "rows": published.rows, "bytes": published.bytes,
                              "publish_s": elapsed, **info,
                              "published_ms": int(time.time() * 1000)})
        self.batch_event_ms = []
        self.last_publish = time.monotonic()

    def _checkpoint(self) -> None:
        """Checkpoint (with the stream counters), then commit the offsets to the broker."""
        started = time.perf_counter()
        checkpoint.save(self.network, self.out_dir / CHECKPOINT, self.step_fn.optimizers,
                        step=self.counters.steps,
                        extra={"stream": dataclasses.asdict(self.counters)})
        self.consumer.commit(self.counters.positions)
        self.progressive.flush(self.out_dir / f"progressive-{self.counters.steps}.npz")
        write_durably(self.out_dir / SUMMARY,
                      json.dumps(self.summary(), indent=1, default=str).encode())
        self.timings["checkpoint_s"] += time.perf_counter() - started

    def _freeze(self) -> None:
        """Keep a copy of the model as it is now, to predict beside the online one."""
        path = self.out_dir / FROZEN
        checkpoint.save(self.network, path, step=self.counters.steps)
        self.frozen = _load_frozen(self.run_config, self.out_dir)
        _say(self.progress, f"froze a copy of the model after {self.counters.rows_trained:,} "
                            f"rows ({path})")

    def _report(self, now: float) -> None:
        if now - self.last_report < _PROGRESS_EVERY_S:
            return
        self.last_report = now
        recent = self.progressive.recent
        lag = (recent[-1]["trained_ms"][0] - recent[-1]["event_ms"].min()) / 1e3 \
            if recent else None
        online, frozen = self.progressive.recent_auc()
        rate = self.progressive.rows / (time.perf_counter() - self.started)
        _say(self.progress,
             f"step {self.counters.steps}: {self.counters.rows_trained:,} rows "
             f"({rate:,.0f}/s), event-time lag {'-' if lag is None else f'{lag:.1f} s'}, "
             f"{len(self.versions)} versions, progressive AUC "
             f"{'-' if online is None else f'{online:.4f}'}"
             + (f" (frozen {frozen:.4f})" if frozen is not None else ""))

    def summary(self) -> dict:
        """What this process did (``online.json``)."""
        wall = time.perf_counter() - self.started
        trained_here = self.progressive.rows
        return {"schema": "mindrec-online/1", "run_config": self.run_config.to_dict(),
                "counters": dataclasses.asdict(self.counters),
                "first_step": self.first_step, "rows_this_process": trained_here,
                "wall_s": wall, "rows_per_s": trained_here / wall if wall > 0 else 0.0,
                "timings": self.timings, "transport_errors": self.consumer.transport_errors,
                "versions": self.versions}


def _load_frozen(run: RunConfig, out_dir: Path):
    """The frozen model (network, predictor) of ``out_dir``, or None before freezing."""
    path = out_dir / FROZEN
    if not path.exists():
        return None
    network = build_model(run, run.embedding.capacity)
    checkpoint.load(network, path)
    predict = Predict(network)
    predict.set_train(False)
    return network, predict


def _say(progress: TextIO | None, line: str) -> None:
    if progress is not None:
        print(line, file=progress, flush=True)
