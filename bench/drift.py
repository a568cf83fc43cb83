"""Memory of a hash embedding on an endless stream whose key population drifts.

``mindrec-bench hash-drift``: each step looks up a batch of keys drawn (Zipf-skewed)
from a window of the key space that slides forward by ``drift`` keys per step, so old
keys stop appearing and new ones keep arriving. With eviction on, admissions and
evictions balance and the process's memory must level off however many distinct keys
pass; the run records RSS, live rows and index memory along the way.

Each step does what training does to the table: ``train_lookup`` (admission, fresh
rows and optimizer state written for new slots), a sparse row update through the
looked-up slots, ``advance`` (eviction), and every ``export_every`` steps an
incremental export (which also bounds the log of removed keys).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from typing import TextIO

import numpy as np
import psutil


@dataclass(frozen=True)
class DriftSpec:
    """The stream and the table."""

    distinct_keys: int = 2_000_000  # keys the stream passes through in total
    window: int = 100_000  # live population at any moment
    batch: int = 39_000  # keys per step (1000 rows x 39 fields)
    evict: int = 20  # idle steps before a row is evicted
    permit: int = 1
    dim: int = 16
    export_every: int = 50
    samples: int = 40  # memory samples along the run
    seed: int = 0

    @property
    def drift(self) -> int:
        """Keys the window slides per step: the stream ends once it has covered
        ``distinct_keys``, after ``steps`` steps."""
        return max(1, self.window // 20)

    @property
    def steps(self) -> int:
        return (self.distinct_keys - self.window) // self.drift + 1


def run_drift(spec: DriftSpec, progress: TextIO | None = sys.stderr) -> dict:
    """Stream ``spec.distinct_keys`` keys through a hash table; return the measurements
    (``admitted`` counts every admission: a key evicted and seen again counts twice)."""
    from mindspore import Tensor, ops

    from mindrec.embedding.hash import HashEmbedding
    from mindrec.embedding.hash_index import HashIndex
    from mindrec.train.step import use_device

    use_device("CPU")
    rng = np.random.default_rng(spec.seed)
    # Enough rows for everything that can be live: evict + 1 steps of distinct keys.
    capacity = min(spec.distinct_keys, (spec.evict + 2) * spec.batch)
    table = HashEmbedding(HashIndex(capacity, spec.permit, spec.evict), spec.dim)
    process = psutil.Process()
    every = max(1, spec.steps // spec.samples)
    series, started = [], time.perf_counter()
    update = np.full((spec.batch, spec.dim), 1e-3, np.float32)
    for step in range(spec.steps):
        offset = step * spec.drift
        keys = offset + (rng.zipf(1.2, spec.batch) - 1) % spec.window
        slots, _ = table.index.train_lookup(keys * 7919 + 13)  # spread over int64
        ops.scatter_add(table.table, Tensor(slots), Tensor(update))
        table.index.advance()
        if (step + 1) % spec.export_every == 0:
            table.export_delta()
        if step % every == 0 or step == spec.steps - 1:
            stats = table.index.stats()
            series.append({"step": step, "admitted": stats.admitted,
                           "rss_mb": process.memory_info().rss / 2**20,
                           "live_rows": stats.live_rows, "candidates": stats.candidates,
                           "index_mb": stats.index_bytes / 2**20,
                           "evicted": stats.evicted})
            if progress is not None:
                last = series[-1]
                print(f"step {step + 1}/{spec.steps}: {last['admitted']:,} keys admitted, "
                      f"{last['live_rows']:,} rows live, {last['evicted']:,} evicted, "
                      f"RSS {last['rss_mb']:,.0f} MB", file=progress, flush=True)
    half = series[len(series) // 2:]
    return {"spec": asdict(spec), "capacity": capacity, "steps": spec.steps,
            "seconds": time.perf_counter() - started, "series": series,
            "rss_mb_second_half_growth": half[-1]["rss_mb"] - half[0]["rss_mb"],
            "rss_mb_peak": max(s["rss_mb"] for s in series),
            "live_rows_max": max(s["live_rows"] for s in series)}
