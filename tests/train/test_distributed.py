"""Real 2-worker msrun jobs on 127.0.0.1 (CPU, mccl): sharded tables, worker helpers.

A job costs about 10-20 s here (msrun start-up, cluster building, teardown), so each test
runs one job; the worker side lives in dist_workers.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dist_workers import BATCH, VOCAB

from bench.job.launcher import launch
from mindrec.train.distributed import in_msrun_worker, init_worker

pytestmark = pytest.mark.integration  # real msrun jobs

WORKER = str(Path(__file__).with_name("dist_workers.py"))
WORKERS = 2


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


def test_worker_helpers_outside_a_job():
    assert not in_msrun_worker()
    with pytest.raises(RuntimeError, match="started by msrun"):
        init_worker()
