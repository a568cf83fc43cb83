import numpy as np
import pytest
from mindspore import Tensor, ops

from mindrec.config import build_run_config
from mindrec.models.blocks import CrossNet, MatrixCrossNet
from mindrec.models.registry import build_model, use_sparse
from mindrec.config import SparseMode
from mindrec.train.step import configure_runtime

VOCAB = 500


def batch(n=8, seed=0):
    rng = np.random.default_rng(seed)
    ids = Tensor(rng.integers(0, VOCAB, (n, 39)).astype(np.int32))
    vals = Tensor(rng.random((n, 39)).astype(np.float32))
    return ids, vals


@pytest.mark.parametrize("model", ["wide_deep", "dcn", "deepfm", "dcnv2", "dlrm"])
@pytest.mark.parametrize("sparse", ["on", "off"])
def test_forward_shapes(model, sparse):
    configure_runtime(0)
    run = build_run_config(model, "cpu-small", train_overrides={"sparse": sparse})
    logits = build_model(run, VOCAB)(*batch())
    assert logits.shape == (8, 1)
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
    assert type(ftrl).__name__ == "DenseFTRL" and type(adam).__name__ == "Adam"


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
    logits_a = net(ids, zeros)
    logits_b = net(Tensor(np.zeros((2, 39), np.int32)), zeros)
    np.testing.assert_allclose(logits_a.asnumpy(), logits_b.asnumpy(), rtol=1e-6)


def _layer_by_layer(cross, x0):
    """The cross layers as the paper writes them, one (B, dim) layer at a time."""
    x = x0
    for layer in cross.weights:
        x = x0 * ops.matmul(x, layer.w) + layer.b + x
    return x


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_cross_layer_formula_and_its_gradients(layers):
    """The factored CrossNet is the paper's layers: same output, and the same gradient
    with respect to x0 and every weight and bias (biases made non-zero)."""
    configure_runtime(0)
    rng = np.random.default_rng(1)
    cross = CrossNet(4, layers)
    for layer in cross.weights:
        layer.b.set_data(Tensor(rng.normal(0, 0.5, 4).astype(np.float32)))
    x0 = Tensor(rng.random((3, 4)).astype(np.float32))
    expected = _layer_by_layer(cross, x0)
    np.testing.assert_allclose(cross(x0).asnumpy(), expected.asnumpy(), rtol=1e-5,
                               atol=1e-6)
    weights = Tensor(rng.normal(size=(3, 4)).astype(np.float32))
    params = cross.trainable_params()

    def factored(x):
        return ops.reduce_sum(cross(x) * weights)

    def plain(x):
        return ops.reduce_sum(_layer_by_layer(cross, x) * weights)

    (dx, dparams), (dx_plain, dparams_plain) = (
        ops.grad(f, grad_position=0, weights=params)(x0) for f in (factored, plain))
    np.testing.assert_allclose(dx.asnumpy(), dx_plain.asnumpy(), rtol=1e-4, atol=1e-6)
    for got, want in zip(dparams, dparams_plain):
        np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-6)


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


def test_l2_gradient_adds_the_penalty_gradient_and_nothing_to_the_forward():
    """d/dx of sum(w * L2Gradient(s)(x)) is w + 2 s / B x: the gradient of
    sum(w * x) + s * sum(x^2) / B; the forward pass is x itself."""
    from mindrec.models.blocks import L2Gradient
    configure_runtime(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 2)).astype(np.float32)
    w = rng.normal(size=(4, 3, 2)).astype(np.float32)
    penalised = L2Gradient(0.3)
    np.testing.assert_array_equal(penalised(Tensor(x)).asnumpy(), x)
    weights = Tensor(w)

    def weighted_sum(t):
        return ops.reduce_sum(penalised(t) * weights)

    grad = ops.grad(weighted_sum)(Tensor(x))
    np.testing.assert_allclose(grad.asnumpy(), w + 2 * 0.3 / 4 * x, rtol=1e-6)


def test_deepfm_forward_by_hand():
    """The logit is bias + first-order sum + FM pairs + MLP, each from the value-scaled
    rows, computed here in numpy from the model's own parameters."""
    configure_runtime(0)
    net = build_model(build_run_config("deepfm", "cpu-small"), VOCAB)
    params = {p.name: p.asnumpy().astype(np.float64) for p in net.trainable_params()}
    for name in ("bias", "first_order.lookup.embedding_table"):  # non-zero: exercised
        params[name] = np.random.default_rng(2).normal(size=params[name].shape)
        dict((p.name, p) for p in net.trainable_params())[name].set_data(
            Tensor(params[name].astype(np.float32)))
    ids, vals = batch(4)
    i, v = ids.asnumpy(), vals.asnumpy().astype(np.float64)
    first = (params["first_order.lookup.embedding_table"][i, 0] * v).sum(1)
    rows = params["embedding.table.lookup.embedding_table"][i] * v[..., None]
    pairs = sum((rows[:, a] * rows[:, b]).sum(-1) for a in range(39) for b in range(a + 1, 39))
    x = rows.reshape(4, -1)
    for k in (0, 2):
        x = np.maximum(x @ params[f"deep_tower.net.{k}.weight"].T
                       + params[f"deep_tower.net.{k}.bias"], 0)
    deep = x @ params["deep_head.weight"].T + params["deep_head.bias"]
    expected = params["bias"] + first[:, None] + pairs[:, None] + deep
    np.testing.assert_allclose(net(ids, vals).asnumpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("low_rank", [None, 3])
def test_matrix_cross_layer_formula(low_rank):
    """x_{l+1} = x0 * (W_l x_l + b_l) + x_l with W_l full or U_l V_l^T, in numpy."""
    configure_runtime(0)
    cross = MatrixCrossNet(6, 2, low_rank)
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=(4, 6)).astype(np.float32)
    params = [p.asnumpy().astype(np.float64) for p in cross.trainable_params()]
    x = x0.astype(np.float64)
    for k in range(2):
        if low_rank is None:
            w, b = params[2 * k:2 * k + 2]
            projected = x @ w.T + b
        else:
            v, u, b = params[3 * k:3 * k + 3]  # (r, dim), (dim, r), (dim,)
            projected = (x @ v.T) @ u.T + b
        x = x0 * projected + x
    np.testing.assert_allclose(cross(Tensor(x0)).asnumpy(), x, rtol=1e-5, atol=1e-6)
    assert MatrixCrossNet.flops(6, 2, low_rank) == 2 * (
        (2 * 36 if low_rank is None else 4 * 6 * 3) + 18)


def test_dlrm_forward_by_hand():
    """Bottom MLP on the 13 dense values, the 26 categorical rows, the dot products of
    the 351 pairs among the 27 vectors beside the bottom output, the top MLP: numpy."""
    configure_runtime(0)
    net = build_model(build_run_config("dlrm", "cpu-small"), VOCAB)
    params = {p.name: p.asnumpy().astype(np.float64) for p in net.trainable_params()}
    ids, vals = batch(3)
    i, v = ids.asnumpy(), vals.asnumpy().astype(np.float64)

    def mlp(x, prefix, indices, last_relu=True):
        for n, k in enumerate(indices):
            x = x @ params[f"{prefix}.net.{k}.weight"].T + params[f"{prefix}.net.{k}.bias"]
            if last_relu or n < len(indices) - 1:
                x = np.maximum(x, 0)
        return x

    dense = mlp(v[:, :13], "bottom", (0, 2))
    rows = params["embedding.table.lookup.embedding_table"][i[:, 13:]] * v[:, 13:, None]
    every = np.concatenate([dense[:, None], rows], 1)
    dots = [every[:, a] @ every[:, b].T for a in range(27) for b in range(a)]
    pairs = np.stack([np.diag(d) for d in dots], 1)
    expected = mlp(np.concatenate([dense, pairs], 1), "top", (0, 2, 4), last_relu=False)
    np.testing.assert_allclose(net(ids, vals).asnumpy(), expected, rtol=1e-4, atol=1e-5)


def test_dlrm_sgd_on_sparse_tables_is_a_clear_error():
    from mindrec.config import ConfigError
    configure_runtime(0)
    run = build_run_config("dlrm", "mindrec", train_overrides={"sparse": "on"})
    with pytest.raises(ConfigError, match="SGD has no row-wise"):
        build_model(run, VOCAB).optimizers()
    with pytest.raises(ConfigError, match="bottom_layers must end at emb_dim"):
        build_run_config("dlrm", "cpu-small", model_overrides={"bottom_layers": [64, 8]})
