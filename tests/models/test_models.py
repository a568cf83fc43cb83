import numpy as np
import pytest
from mindspore import Tensor

from mindrec.config import build_run_config
from mindrec.models.blocks import CrossNet
from mindrec.models.registry import build_model, use_sparse
from mindrec.config import SparseMode
from mindrec.train.step import configure_runtime

VOCAB = 500


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = Tensor(rng.integers(0, VOCAB, (n, 39)).astype(np.int32))
    vals = Tensor(rng.random((n, 39)).astype(np.float32))
    return ids, vals


@pytest.mark.parametrize("model", ["wide_deep", "dcn"])
@pytest.mark.parametrize("sparse", ["on", "off"])
def test_forward_shapes(model, sparse):
    configure_runtime(0)
    run = build_run_config(model, "cpu-small", train_overrides={"sparse": sparse})
    logits, penalty = build_model(run, VOCAB)(*batch())
    assert logits.shape == (8, 1)
    assert penalty.shape == ()
    assert np.isfinite(logits.asnumpy()).all()


def test_wide_deep_optimizers_split_wide_and_deep():
    configure_runtime(0)
    net = build_model(build_run_config("wide_deep", "cpu-small"), VOCAB)
    ftrl, adam = net.optimizers()
    wide = {p.name for p in ftrl.parameters}
    deep = {p.name for p in adam.parameters}
    assert wide == {net.wide_table.table.name, net.wide_bias.name}
    assert not wide & deep
    assert wide | deep == {p.name for p in net.trainable_params()}
    assert type(ftrl).__name__ == "FTRL" and type(adam).__name__ == "Adam"


def test_sparse_tables_use_lazy_adam():
    configure_runtime(0)
    run = build_run_config("dcn", "cpu-small", train_overrides={"sparse": "on"})
    (opt,) = build_model(run, VOCAB).optimizers()
    assert type(opt).__name__ == "LazyAdam"


def test_embeddings_are_scaled_by_values():
    """A sample whose values are all zero sees only biases: its wide part is the bias."""
    configure_runtime(0)
    net = build_model(build_run_config("wide_deep", "cpu-small"), VOCAB)
    ids, _ = batch(2)
    zeros = Tensor(np.zeros((2, 39), np.float32))
    logits_a, penalty = net(ids, zeros)
    logits_b, _ = net(Tensor(np.zeros((2, 39), np.int32)), zeros)
    np.testing.assert_allclose(logits_a.asnumpy(), logits_b.asnumpy(), rtol=1e-6)
    assert float(penalty.asnumpy()) == 0.0


def test_cross_layer_formula():
    configure_runtime(0)
    cross = CrossNet(4, 2)
    x0 = np.random.default_rng(1).random((3, 4)).astype(np.float32)
    x = x0
    for layer in cross.weights:
        w, b = layer.w.asnumpy(), layer.b.asnumpy()
        x = x0 * (x @ w) + b + x
    np.testing.assert_allclose(cross(Tensor(x0)).asnumpy(), x, rtol=1e-5)


def test_sparse_auto_threshold():
    def run(sparse, **parallel):
        return build_run_config("dcn", "cpu-small", train_overrides={"sparse": sparse},
                                parallel=parallel)

    assert not use_sparse(run(SparseMode.AUTO), 200_000)
    assert use_sparse(run(SparseMode.AUTO), 10_000_000)
    assert use_sparse(run(SparseMode.ON), 10)
    assert not use_sparse(run(SparseMode.OFF), 10**8)
    # Data parallel averages gradients with AllReduce: dense only.
    assert not use_sparse(run(SparseMode.AUTO, mode="data_parallel", workers=2), 10_000_000)
    assert use_sparse(run(SparseMode.AUTO, mode="hybrid", workers=2), 10_000_000)
