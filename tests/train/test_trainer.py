"""Training on the tiny synthetic dataset: learning, determinism, checkpoints."""
import numpy as np
import pytest

from mindrec.config import build_run_config
from mindrec.data.dataset import load_meta
from mindrec.train import checkpoint
from mindrec.train.trainer import build, evaluate, fit


def small_run(model, embedding="static", **train):
    return build_run_config(model, "cpu-small", embedding={"kind": embedding},
                            train_overrides={"epochs": 1, "batch_size": 500, **train})


@pytest.mark.parametrize("model", ["wide_deep", "dcn", "deepfm", "dcnv2", "dlrm"])
def test_training_lowers_test_logloss(model, tiny_data):
    run = small_run(model, epochs=2)
    net = build(run, tiny_data)
    before = evaluate(net, tiny_data)
    result = fit(net, run, tiny_data, progress=None)
    after = evaluate(net, tiny_data)
    assert result.steps == 2 * (load_meta(tiny_data)["rows"]["train"] // 500)
    assert after.logloss < before.logloss - 0.02
    assert after.auc > before.auc + 0.05
    assert after.rows == before.rows and after.rows > 1500


def test_seeded_runs_repeat(tiny_data):
    losses = []
    for _ in range(2):
        run = small_run("wide_deep", max_steps=15)
        net = build(run, tiny_data)
        losses.append(fit(net, run, tiny_data, progress=None).losses)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.mark.parametrize("model, embedding", [("wide_deep", "static"), ("dcn", "static"),
                                              ("deepfm", "static"), ("dcnv2", "static"),
                                              ("dlrm", "static"), ("wide_deep", "hash"),
                                              ("deepfm", "hash"), ("dcnv2", "hash"),
                                              ("dlrm", "hash")])
def test_checkpoint_reload_gives_same_predictions(model, embedding, tiny_data, tmp_path):
    run = small_run(model, max_steps=10, embedding=embedding)
    net = build(run, tiny_data)
    fit(net, run, tiny_data, progress=None)
    expected = evaluate(net, tiny_data).predictions
    path = checkpoint.save(net, tmp_path / f"{model}.safetensors")

    fresh = build(small_run(model, seed=99, embedding=embedding), tiny_data)
    assert not np.allclose(evaluate(fresh, tiny_data).predictions, expected)
    checkpoint.load(fresh, path)
    np.testing.assert_array_equal(evaluate(fresh, tiny_data).predictions, expected)


def test_checkpoint_errors(tiny_data, tmp_path):
    net = build(small_run("dcn"), tiny_data)
    with pytest.raises(ValueError, match="safetensors"):
        checkpoint.save(net, tmp_path / "model.ckpt")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        checkpoint.load(net, tmp_path / "missing.safetensors")
