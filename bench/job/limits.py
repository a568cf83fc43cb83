"""Machine-limit kernels: the ceilings a model's throughput is compared against.

``sgemm_gflops`` is the float32 matrix-multiply rate numpy reaches on this machine (the
bound for the MLP part of a step); ``mem_bw_gbs`` the rate of a large array copy (the
bound for embedding gathers and optimizer sweeps over big tables). Each is the best of
a few repetitions, so a noisy neighbour lowers it less.

A sweep keeps its run's limits in ``<run-id>.limits.json``, a document of measurements
taken at each start, each resume and the end of the run::

    {"schema": "mindrec-bench/limits/2",
     "measurements": [{"phase": "start", "measured_at": ..., "sgemm_gflops": ..., ...}]}

:func:`record_limits` measures and appends; :func:`read_limits` reads (version 1 files,
one flat measurement, read as a single ``start``).
"""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.results import now_iso, write_atomic

SCHEMA = "mindrec-bench/limits/2"
PHASES = ("start", "resume", "end")
# Every measurement has these keys (None where a version 1 file did not record one).
MEASUREMENT_KEYS = ("phase", "measured_at", "sgemm_gflops", "sgemm_gflops_min",
                    "sgemm_gflops_median", "mem_bw_gbs", "load_avg_1m", "load_avg_5m",
                    "cores")


def sgemm_rates(n: int = 2048, repeats: int = 5) -> list[float]:
    """Float32 ``n x n`` matmul rates in GFLOP/s, one per repetition (after a warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm up threads and caches
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return rates


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``n x n`` matmul rate in GFLOP/s."""
    return max(sgemm_rates(n, repeats))


def mem_bw_gbs(mbytes: int = 512, repeats: int = 5) -> float:
    """Best copy bandwidth in GB/s (bytes read + written) over an ``mbytes`` array."""
    src = np.ones(mbytes * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def measure_limits(phase: str) -> dict:
    """One measurement (:data:`MEASUREMENT_KEYS`): both kernels, the sgemm spread over
    its repeats, and the load on the machine just before."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
    load_1m, load_5m, _ = os.getloadavg()
    measured_at = now_iso()
    rates = sgemm_rates()
    return {"phase": phase, "measured_at": measured_at, "sgemm_gflops": max(rates),
            "sgemm_gflops_min": min(rates), "sgemm_gflops_median": statistics.median(rates),
            "mem_bw_gbs": mem_bw_gbs(), "load_avg_1m": load_1m, "load_avg_5m": load_5m,
            "cores": os.cpu_count()}


@dataclass(frozen=True)
class RunLimits:
    """The measurements of a run's limits file, oldest first."""

    measurements: list[dict]

    @property
    def in_force(self) -> dict:
        """The measurement new cells use: the latest start or resume."""
        return next(m for m in reversed(self.measurements) if m["phase"] != "end")


def read_limits(path: str | Path) -> RunLimits:
    """Read a limits file (version 2, or a version 1 flat measurement as a ``start``).

    Raises:
        ValueError: another schema, or no start measurement.
    """
    try:
        document = json.loads(Path(path).read_text(errors="replace"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}); a truncated or "
                         f"damaged limits file") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a limits file (expected a JSON object)")
    schema = document.get("schema")
    if schema is None and "sgemm_gflops" in document:  # version 1
        measurements = [{**{key: document.get(key) for key in MEASUREMENT_KEYS},
                         "phase": "start"}]
    elif schema == SCHEMA:
        measurements = document["measurements"]
    else:
        raise ValueError(f"{path}: unknown limits schema {schema!r} (expected {SCHEMA})")
    if not measurements or measurements[0]["phase"] != "start":
        raise ValueError(f"{path}: the first measurement is not a start")
    return RunLimits(measurements)


def record_limits(path: str | Path, phase: str) -> dict:
    """Measure now and append the measurement to the limits file ``path`` (created at a
    ``start``, rewritten atomically, a version 1 file upgraded); returns it."""
    previous = read_limits(path).measurements if Path(path).exists() else []
    if bool(previous) == (phase == "start"):
        raise ValueError(f"{path}: a file starts with a 'start' measurement, and has one "
                         f"only; cannot add {phase!r} to {len(previous)} measurements")
    measurement = measure_limits(phase)
    document = {"schema": SCHEMA, "measurements": [*previous, measurement]}
    write_atomic(path, json.dumps(document, indent=2) + "\n")
    return measurement

