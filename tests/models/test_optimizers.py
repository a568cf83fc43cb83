"""DenseFTRL: nn.FTRL's update, state and names, in elementwise ops."""
import numpy as np
import pytest
from mindspore import Parameter, ParameterTuple, Tensor, nn

from mindrec.models.optimizers import DenseFTRL


class _Apply(nn.Cell):
    """Runs an optimizer cell on given gradients (compiled, as in a training step)."""

    def __init__(self, optimizer):
        super().__init__()
        self.optimizer = optimizer

    def construct(self, g0, g1):
        return self.optimizer((g0, g1))


def _params(tag: str, rng_seed: int = 0):
    rng = np.random.default_rng(rng_seed)
    return [Parameter(Tensor(rng.normal(0, 0.1, (50, 1)).astype(np.float32)), name=f"{tag}w"),
            Parameter(Tensor(np.zeros(1, np.float32)), name=f"{tag}b")]


def _grads(rng):
    return (Tensor(rng.normal(0, 1, (50, 1)).astype(np.float32)),
            Tensor(rng.normal(0, 1, (1,)).astype(np.float32)))


@pytest.mark.parametrize("l2", [1e-8, 0.1])
def test_dense_ftrl_follows_mindspores_ftrl_step_by_step(l2):
    """With the presets' negligible l1 (see the next test for l1 > 0)."""
    from mindrec.train.step import configure_runtime
    configure_runtime(0)
    settings = {"learning_rate": 0.05, "l1": 1e-8, "l2": l2, "initial_accum": 1.0}
    ours, theirs = DenseFTRL(_params("a"), **settings), nn.FTRL(_params("b"), **settings)
    step_ours, step_theirs = _Apply(ours), _Apply(theirs)
    rng = np.random.default_rng(1)
    for _ in range(5):
        grads = _grads(rng)
        step_ours(*grads)
        step_theirs(*grads)
    for mine, reference in [(ours.parameters, theirs.parameters),
                            (ours.moments, theirs.moments), (ours.linear, theirs.linear)]:
        for a, b in zip(mine, reference):
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-7)
    assert [p.name.split(".")[0] for p in (*ours.moments, *ours.linear)] == [
        p.name.split(".")[0] for p in (*theirs.moments, *theirs.linear)]


def test_dense_ftrl_shrinks_by_l1_towards_zero_on_both_signs():
    """FTRL-Proximal's published update (McMahan et al. 2013; TensorFlow's ApplyFtrl
    with l2 defined as the coefficient of w^2), in numpy. MindSpore 2.10's CPU ApplyFtrl
    kernel departs from it for l1 > 0 where the linear term is negative (it adds l1 to
    the magnitude instead of taking it off), so it is not the reference here."""
    from mindrec.train.step import configure_runtime
    configure_runtime(0)
    lr, l1, l2 = 0.05, 0.05, 0.1
    ours = DenseFTRL(_params("a"), learning_rate=lr, l1=l1, l2=l2, initial_accum=1.0)
    step = _Apply(ours)
    weights = [p.asnumpy().astype(np.float64) for p in ours.parameters]
    accums = [np.ones_like(w) for w in weights]
    linears = [np.zeros_like(w) for w in weights]
    rng = np.random.default_rng(1)
    for _ in range(5):
        grads = _grads(rng)
        step(*grads)
        for i, grad in enumerate(g.asnumpy().astype(np.float64) for g in grads):
            new_accum = accums[i] + grad ** 2
            linears[i] += grad - (np.sqrt(new_accum) - np.sqrt(accums[i])) / lr * weights[i]
            accums[i] = new_accum
            weights[i] = np.where(np.abs(linears[i]) > l1,
                                  (np.sign(linears[i]) * l1 - linears[i])
                                  / (np.sqrt(new_accum) / lr + 2 * l2), 0.0)
    assert (linears[0] < -l1).any() and (linears[0] > l1).any()  # both signs exercised
    for param, expected in zip(ours.parameters, weights):
        np.testing.assert_allclose(param.asnumpy(), expected, rtol=1e-4, atol=1e-7)


def test_wide_and_deep_takes_dense_ftrl_only_for_a_dense_wide_table():
    from mindrec.config import run_config_from_sections
    from mindrec.models.registry import build_model
    from mindrec.train.step import configure_runtime
    configure_runtime(0)
    kinds = {}
    for sparse in ("off", "on"):
        run = run_config_from_sections("wide_deep", "cpu-small", {"train": {"sparse": sparse}})
        kinds[sparse] = type(build_model(run, 100).optimizers()[0])
    assert kinds == {"off": DenseFTRL, "on": nn.FTRL}
