"""Real 2-worker msrun jobs on 127.0.0.1 (CPU, mccl): sharded tables and job supervision.

A job costs about 10-20 s here (msrun start-up, cluster building, teardown), so each test
runs one job; the worker side lives in dist_workers.py.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from dist_workers import BATCH, VOCAB

from mindrec.train.distributed import (DistributedJobError, DistributedTimeoutError,
                                       free_port, in_msrun_worker, init_worker, launch)

WORKER = str(Path(__file__).with_name("dist_workers.py"))
WORKERS = 2


def no_children_left() -> bool:
    """True when this test process has no live descendants (msrun, scheduler, workers)."""
    return not psutil.Process().children(recursive=True)


@pytest.fixture(scope="module")
def sharded_results(tmp_path_factory):
    """Outputs of one sharded training step on each rank, and the unsharded reference."""
    out = tmp_path_factory.mktemp("sharded")
    launch([WORKER, "sharded", str(out)], WORKERS, out / "logs", timeout_s=120)
    ranks = [dict(np.load(out / f"rank{rank}.npz")) for rank in range(WORKERS)]
    return ranks, dict(np.load(out / "reference.npz"))


def gather_table(ranks: list[dict], name: str) -> np.ndarray:
    """Reassemble a full-table array from the ranks' local rows (padding row dropped)."""
    full = np.full((VOCAB, ranks[0][name].shape[1]), np.nan, np.float32)
    for result in ranks:
        ids = result["global_ids"]
        full[ids] = result[name][:len(ids)]
    return full


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_sharded_step_matches_unsharded_table(sharded_results, path):
    ranks, ref = sharded_results
    rows = np.concatenate([result[f"{path}_rows"] for result in ranks])
    np.testing.assert_array_equal(rows, ref[f"{path}_rows"])
    np.testing.assert_allclose(np.mean([result[f"{path}_loss"] for result in ranks]),
                               ref[f"{path}_loss"], rtol=1e-6)
    np.testing.assert_allclose(gather_table(ranks, f"{path}_table_grad"),
                               ref[f"{path}_table_grad"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gather_table(ranks, f"{path}_table_after"),
                               ref[f"{path}_table_after"], rtol=1e-5, atol=1e-7)
    for result in ranks:  # the replicated weight, averaged by GradientMean
        np.testing.assert_allclose(result[f"{path}_weight_grad"], ref[f"{path}_weight_grad"],
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result[f"{path}_weight_after"],
                                   ref[f"{path}_weight_after"], rtol=1e-5, atol=1e-7)
        padding = result[f"{path}_table_grad"][len(result["global_ids"]):]
        np.testing.assert_array_equal(padding, 0)


def test_sparse_gradient_steps_each_local_row_once(sharded_results):
    ranks, _ = sharded_results
    for result in ranks:
        indices = result["sparse_grad_indices"]
        assert len(indices) < len(result["global_ids"])  # sparse: only looked-up rows
        assert len(np.unique(indices)) == len(indices)


def test_each_rank_holds_its_share_of_rows(sharded_results):
    ranks, _ = sharded_results
    owned = [len(result["global_ids"]) for result in ranks]
    assert owned == [(VOCAB + 1) // 2, VOCAB // 2] and sum(owned) == VOCAB
    for result, rows in zip(ranks, owned):
        assert tuple(result["dense_table_shape"]) == (rows + 1, 4)  # + padding row
        assert result["dense_rows"].shape[0] == BATCH
    ids = np.concatenate([result["global_ids"] for result in ranks])
    assert sorted(ids) == list(range(VOCAB))


@pytest.mark.parametrize("how, code_text", [
    (["--code", "3"], "exited with code 3"),
    pytest.param(["--sigkill"], "killed by SIGKILL", marks=pytest.mark.slow),
])
def test_dead_worker_fails_the_job_fast(tmp_path, how, code_text):
    start = time.monotonic()
    with pytest.raises(DistributedJobError) as failure:
        launch([WORKER, "crash", *how], WORKERS, tmp_path, timeout_s=120)
    failed_at, elapsed = time.time(), time.monotonic() - start
    error = failure.value
    assert error.rank == 1
    assert "worker rank 1" in str(error) and code_text in str(error)
    died_at = float(re.search(r"rank 1 is about to die at ([\d.]+)", error.log_tail).group(1))
    assert failed_at - died_at < 5, f"noticed the dead worker after {failed_at - died_at:.1f} s"
    assert elapsed < 60, f"the job took {elapsed:.1f} s of its 120 s timeout"
    assert error.log_tail in str(error)
    assert no_children_left()


def test_timeout_kills_every_process(tmp_path):
    timeout_s = 15
    start = time.monotonic()
    with pytest.raises(DistributedTimeoutError, match="ran past its 15 s timeout") as failure:
        launch([WORKER, "hang", str(tmp_path)], WORKERS, tmp_path / "logs", timeout_s)
    elapsed = time.monotonic() - start
    assert timeout_s <= elapsed < timeout_s + 8
    assert failure.value.rank is None
    pids = [int((tmp_path / f"rank{rank}.pid").read_text()) for rank in range(WORKERS)]
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert no_children_left()


def test_helpers_outside_a_job(tmp_path):
    assert 1024 <= free_port() <= 65535
    assert not in_msrun_worker()
    with pytest.raises(RuntimeError, match="started by msrun"):
        init_worker()
    with pytest.raises(FileNotFoundError, match="missing.py"):
        launch([str(tmp_path / "missing.py")], WORKERS, tmp_path, timeout_s=10)
