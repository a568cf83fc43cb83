"""Machine-limit kernels: the ceilings a model's throughput is compared against.

``sgemm_gflops`` is the float32 matrix-multiply rate numpy reaches on this machine (the
bound for the MLP part of a step); ``mem_bw_gbs`` the rate of a large array copy (the
bound for embedding gathers and optimizer sweeps over big tables). Each is the best of
a few repetitions, so a noisy neighbour lowers it less.
"""
from __future__ import annotations

import time

import numpy as np

from bench.results import now_iso


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 ``n x n`` matmul rate in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm up threads and caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


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


def measure_limits() -> dict:
    """Both kernels, with the time they were measured."""
    return {"sgemm_gflops": sgemm_gflops(), "mem_bw_gbs": mem_bw_gbs(),
            "measured_at": now_iso()}

