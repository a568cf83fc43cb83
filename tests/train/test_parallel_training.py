"""Parallel training through msrun (2 workers on 127.0.0.1) against a standalone run on
the same global batches, from the same initial parameters."""
import mindspore as ms
import numpy as np
import pytest

from bench.job.parallel import run_parallel
from mindrec.config import build_run_config
from mindrec.embedding.tables import table_bytes
from mindrec.train import checkpoint
from mindrec.train.trainer import build, evaluate, fit

pytestmark = pytest.mark.integration  # real msrun jobs

STEPS = 8
TABLES = ("wide_table.lookup.embedding_table", "deep_embedding.table.lookup.embedding_table")


def run_config(mode="standalone", workers=1, model="wide_deep"):
    return build_run_config(model, "cpu-small", parallel={"mode": mode, "workers": workers},
                            train_overrides={"batch_size": 500, "max_steps": STEPS})


@pytest.fixture(scope="module")
def standalone(tiny_data, tmp_path_factory):
    """K standalone steps from a saved initial state: (losses, AUC, table MB, checkpoint)."""
    run = run_config()
    net = build(run, tiny_data)
    init = checkpoint.save(net, tmp_path_factory.mktemp("init") / "init.safetensors")
    losses = fit(net, run, tiny_data, progress=None).losses
    return losses, evaluate(net, tiny_data).auc, table_bytes(net) / 2**20, init


def params(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path), format="safetensors").items()}


@pytest.mark.parametrize("mode", ["data_parallel", "hybrid"])
def test_two_workers_match_standalone(mode, standalone, tiny_data, tmp_path):
    losses, auc, table_mb, init = standalone
    job = run_parallel(run_config(mode, 2), tiny_data, tmp_path, timeout_s=300,
                       save_params=True, init_from=init)
    assert job.train.steps == STEPS
    np.testing.assert_allclose(job.train.losses, losses, rtol=2e-4, atol=2e-5)
    assert job.quality.auc == pytest.approx(auc, abs=2e-4)
    assert job.quality.rows == evaluate_rows(tiny_data)
    rank0, rank1 = params(tmp_path / "rank_0.safetensors"), params(tmp_path / "rank_1.safetensors")
    replicated = [k for k in rank0 if k not in TABLES or mode == "data_parallel"]
    assert len(replicated) > 5
    for key in replicated:  # the data-parallel part ends identical on both ranks
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=key)
    if mode == "hybrid":
        # Each worker holds half of every table's rows (plus one padding row).
        assert job.per_worker("table_mb") == pytest.approx(table_mb / 2, rel=0.01)
    else:
        assert job.per_worker("table_mb") == pytest.approx(table_mb)


def evaluate_rows(data):
    from mindrec.data.dataset import load_meta
    return load_meta(data)["rows"]["test"]


@pytest.mark.parametrize("model", ["dcn", "deepfm", "dcnv2", "dlrm"])
@pytest.mark.parametrize("mode", [pytest.param("data_parallel", marks=pytest.mark.slow),
                                  "hybrid"])  # hybrid, the sharded case, in the default run
def test_every_model_trains_in_both_parallel_modes(model, mode, tiny_data, tmp_path):
    run = run_config(model=model)
    net = build(run, tiny_data)
    init = checkpoint.save(net, tmp_path / "init.safetensors")
    losses = fit(net, run, tiny_data, progress=None).losses
    job = run_parallel(run_config(mode, 2, model), tiny_data, tmp_path / "job", timeout_s=300,
                       init_from=init)
    assert job.train.steps == STEPS
    np.testing.assert_allclose(job.train.losses, losses, rtol=2e-4, atol=2e-5)
