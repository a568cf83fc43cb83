"""The PyTorch peer: the same models as MindSpore's, what it can run, and how cells,
suites and the sweep treat the backend axis."""
from __future__ import annotations

import re

import numpy as np
import pytest

from bench.peers import backend_unavailable, check_backend, twin_id
from bench.suite import CellSpec, cell_from_dict, load_suite
from mindrec.config import ConfigError, run_config_from_sections

torch = pytest.importorskip("torch")

ROWS, FIELDS, BATCH = 60, 39, 8
SMALL = {"model_config": {"deep_layers": [8, 4]}}
SMALL_DLRM = {"bottom_layers": [8, 16], "top_layers": [8, 4]}


def _torch_name(ms_name: str) -> str:
    """The PyTorch twin's name of a MindSpore parameter."""
    name = ms_name.replace(".lookup.embedding_table", ".weight").replace(".net.", ".")
    name = name.replace("deep_embedding.table", "deep_table")
    name = re.sub(r"^embedding\.table", "table", name).replace("cross.layers.", "cross.")
    return re.sub(r"^cross\.weights\.(\d+)\.([wb])$", r"cross_\2.\1", name)


def twins(model: str, sparse: bool = False, **config):
    """A MindSpore model and its PyTorch twin holding the same parameter values."""
    from bench.peers.torch_models import build_torch_model
    from mindrec.models.registry import build_model
    from mindrec.train.step import configure_runtime
    run = run_config_from_sections(model, "cpu-small", {
        "model_config": {**(SMALL_DLRM if model == "dlrm" else SMALL["model_config"]),
                         **config},
        "train": {"sparse": "on" if sparse else "off"}})
    configure_runtime(0)
    ours = build_model(run, ROWS)
    theirs = build_torch_model(model, run.model_config, ROWS, sparse)
    named = dict(theirs.named_parameters())
    with torch.no_grad():
        for p in ours.trainable_params():
            named.pop(_torch_name(p.name)).copy_(torch.from_numpy(p.asnumpy()))
    assert not named, f"PyTorch parameters without a MindSpore twin: {sorted(named)}"
    return run, ours, theirs


def batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, ROWS, (BATCH, FIELDS)).astype(np.int32)
    vals = rng.random((BATCH, FIELDS), dtype=np.float32)
    labels = (rng.random((BATCH, 1)) < 0.3).astype(np.float32)
    return ids, vals, labels


@pytest.mark.parametrize("model, config", [
    ("wide_deep", {}), ("dcn", {}), ("deepfm", {}), ("dcnv2", {}),
    ("dcnv2", {"low_rank": None, "structure": "parallel"}), ("dlrm", {})])
def test_the_twin_computes_the_same_logits(model, config):
    from mindspore import Tensor
    _, ours, theirs = twins(model, **config)
    ids, vals, _ = batch()
    logits = ours(Tensor(ids), Tensor(vals))
    t_logits = theirs(torch.from_numpy(ids), torch.from_numpy(vals))
    np.testing.assert_allclose(t_logits.detach().numpy(), logits.asnumpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("model", ["wide_deep", "dcn", "deepfm", "dcnv2", "dlrm"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_one_step_moves_every_adam_parameter_as_mindspore_does(model, sparse):
    """Same loss, and after one step the same parameters: Adam against fused Adam, and
    LazyAdam against SparseAdam on a sparse table (untouched rows stay). Wide&Deep's L2
    penalty (made large here) enters both through its gradient; its wide part (FTRL
    against Adam) is left out.

    MindSpore adds Adam's epsilon to the uncorrected second moment, PyTorch to the
    bias-corrected one; a tiny epsilon takes that difference out of the comparison.
    Adam's first step is about ``lr * sign(gradient)``, so a gradient that rounding
    leaves near zero may move a few percent of ``lr`` differently: the tolerance.
    """
    import torch.nn.functional as F
    from mindspore import Tensor

    from bench.peers.torch_models import optimizers
    from mindrec.train.step import TrainStep
    extra = {"deep_l2": 0.5} if model == "wide_deep" else {}
    run, ours, theirs = twins(model, sparse, adam_eps=1e-14, **extra)
    # A compiled step with two optimizers renames parameters: take the names before.
    names = {id(p): _torch_name(p.name) for p in ours.trainable_params()}
    ids, vals, labels = batch(1)
    loss = float(TrainStep(ours)(Tensor(ids), Tensor(vals), Tensor(labels)).asnumpy())
    opts, variant = optimizers(model, theirs, run.model_config, sparse)
    t_loss = F.binary_cross_entropy_with_logits(
        theirs(torch.from_numpy(ids), torch.from_numpy(vals)), torch.from_numpy(labels))
    t_loss.backward()
    for opt in opts:
        opt.step()
    assert t_loss.item() == pytest.approx(loss, rel=1e-5)
    named = dict(theirs.named_parameters())
    lr = getattr(run.model_config, "lr", None) or run.model_config.deep_lr
    for p in ours.trainable_params():
        name = names[id(p)]
        if not name.startswith("wide_"):
            np.testing.assert_allclose(named[name].detach().numpy(), p.asnumpy(), rtol=1e-4,
                                       atol=0.05 * lr, err_msg=name)
    assert variant.startswith("SparseAdam on the tables + fused Adam" if sparse
                              else "fused Adam")


def test_wide_and_deep_trains_its_wide_part_with_adam_at_the_wide_rate():
    from bench.peers.torch_models import optimizers
    run, _, theirs = twins("wide_deep", sparse=True)
    opts, variant = optimizers("wide_deep", theirs, run.model_config, sparse=True)
    by_param = {id(p): (type(opt).__name__, group["lr"]) for opt in opts
                for group in opt.param_groups for p in group["params"]}
    cfg = run.model_config
    assert by_param[id(theirs.wide_table.weight)] == ("SparseAdam", cfg.wide_lr)
    assert by_param[id(theirs.wide_bias)] == ("Adam", cfg.wide_lr)
    assert by_param[id(theirs.deep_table.weight)] == ("SparseAdam", cfg.deep_lr)
    assert by_param[id(theirs.deep_head.weight)] == ("Adam", cfg.deep_lr)
    assert len(by_param) == len(list(theirs.parameters()))
    assert "wide part on Adam (MindSpore: FTRL)" in variant


@pytest.mark.parametrize("overrides, says", [
    ({"embedding": {"kind": "hash"}}, "embedding.kind hash"),
    ({"embedding": {"kind": "hash"}, "cache": {"device_rows": 100}}, "a cache"),
    ({"parallel": {"mode": "hybrid", "workers": 2}}, "parallel mode hybrid"),
    ({"embedding": {"kind": "hash"}, "online": {"stream": True}}, "online.stream"),
])
def test_the_peer_refuses_what_only_mindspore_has_naming_it(overrides, says):
    run = run_config_from_sections("wide_deep", "cpu-small", overrides)
    with pytest.raises(ConfigError, match=re.escape(says)):
        check_backend(run, "torch")
    check_backend(run, "mindspore")
    with pytest.raises(ConfigError, match="backend: 'jax' is not one of mindspore, torch"):
        check_backend(run, "jax")


def test_a_suite_cell_of_the_wrong_backend_is_an_error_naming_the_cell():
    with pytest.raises(ConfigError, match=r"cells\[0\].*backend torch.*embedding.kind hash"):
        cell_from_dict({"model": "dcn", "backend": "torch", "embedding.kind": "hash"},
                       "cells[0]")


def test_a_twin_cell_id_is_its_mindspore_cell_id_and_the_backend():
    ours = CellSpec(model="dcn", overrides={"train": {"max_steps": 20}})
    peer = cell_from_dict({**ours.to_dict(), "backend": "torch"})
    assert peer.cell_id == ours.cell_id + "-torch"
    assert twin_id(peer.measurement_id, "torch") == ours.measurement_id
    assert twin_id(ours.measurement_id, "mindspore") == ours.measurement_id
    again = cell_from_dict({**ours.to_dict(), "backend": "torch", "repeat": 2})
    assert again.cell_id == peer.cell_id + "-rep2"
    assert again.measurement_id == peer.measurement_id
    assert cell_from_dict(peer.to_dict()) == peer


def test_the_peers_suite_alternates_its_pairs_round_by_round():
    suite = load_suite("peers")
    assert len(suite.cells) == 54
    rounds = [suite.cells[k * 18:(k + 1) * 18] for k in range(3)]
    for k, cells in enumerate(rounds):
        assert {c.repeat for c in cells} == {k}
        assert [c.backend for c in cells] == ["mindspore", "torch"] * 9
        assert [c.measurement_id for c in cells] == [c.measurement_id for c in rounds[0]]
    for ours, peer in zip(rounds[0][::2], rounds[0][1::2]):
        assert twin_id(peer.measurement_id, "torch") == ours.measurement_id


@pytest.mark.parametrize("rounds, says", [(0, "at least 1"), ("3", "whole number")])
def test_rounds_must_be_a_count(tmp_path, rounds, says):
    path = tmp_path / "s.yaml"
    path.write_text(f"rounds: {rounds!r}\nfixed: {{model: dcn}}\n")
    with pytest.raises(ConfigError, match=says):
        load_suite(str(path))


def test_a_machine_without_pytorch_skips_torch_cells_saying_how_to_install(monkeypatch):
    import importlib.util

    from bench.sweep import skip_reason
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    assert backend_unavailable("torch") == (
        "PyTorch is not installed (the peers extra: pip install -e '.[peers]')")
    assert skip_reason(CellSpec(model="dcn", backend="torch")) == backend_unavailable("torch")
    assert skip_reason(CellSpec(model="dcn")) is None


def test_rounds_and_a_repeat_axis_do_not_mix(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("rounds: 2\nfixed: {model: dcn}\ngrid: {repeat: [0, 1]}\n")
    with pytest.raises(ConfigError, match="leave the repeat axis unset"):
        load_suite(str(path))


AGREEMENT_SUITE = """
fixed:
  preset: cpu-small
  data: {rows: 300000, vocab: 200000}
  train: {batch_size: 1000, max_steps: 270, warmup_steps: 10, seed: 0}
grid:
  model: [wide_deep, dcn]
  backend: [mindspore, torch]
"""


@pytest.mark.slow
def test_both_frameworks_reach_the_same_auc_on_the_same_data_and_schedule(tmp_path):
    """A reproducibility check across implementations: one epoch of 270k rows, each model
    in MindSpore and in PyTorch; their test AUCs lie within 0.002 (measured: 0.0015
    for Wide&Deep, whose wide part differs by optimizer, and 0.0001 for DCN)."""
    from bench.results import metric, read_records
    from bench.sweep import run_sweep
    path = tmp_path / "agreement.yaml"
    path.write_text(AGREEMENT_SUITE)
    records = read_records(run_sweep(load_suite(str(path)), tmp_path / "results"))
    auc = {(r["spec"]["model"], r["spec"]["backend"]): metric(r, "auc") for r in records}
    for model in ("wide_deep", "dcn"):
        assert auc[model, "mindspore"] > 0.78  # both learned what the data holds
        assert auc[model, "torch"] == pytest.approx(auc[model, "mindspore"], abs=0.002)


def test_the_twins_l2_penalty_enters_the_deep_rows_gradient_only():
    """As in MindSpore: with deep_l2 the deep table's gradient gains 2 l2 / B x the
    value-scaled rows (summed per id); the logits and the loss stay the same."""
    from bench.peers.torch_models import build_torch_model
    ids, vals, labels = (torch.from_numpy(a) for a in batch(2))
    grads, losses = {}, {}
    for l2 in (0.0, 0.5):
        run = run_config_from_sections("wide_deep", "cpu-small", {
            "model_config": {**SMALL["model_config"], "deep_l2": l2}})
        torch.manual_seed(0)
        module = build_torch_model("wide_deep", run.model_config, ROWS, sparse=False)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(module(ids, vals), labels)
        loss.backward()
        grads[l2], losses[l2] = module.deep_table.weight.grad.clone(), loss.item()
        rows = (module.deep_table.weight[ids] * vals.unsqueeze(-1)).detach()
    expected = torch.zeros_like(grads[0.0]).index_add_(
        0, ids.reshape(-1).long(), (2 * 0.5 / BATCH * rows * vals.unsqueeze(-1)).reshape(-1, 16))
    assert losses[0.0] == losses[0.5]
    torch.testing.assert_close(grads[0.5] - grads[0.0], expected, rtol=1e-4, atol=1e-7)
