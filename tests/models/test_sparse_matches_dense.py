"""The sparse path (lookups + lazy optimizers) must update exactly like the dense one.

On the first step LazyAdam equals Adam and sparse FTRL equals FTRL, so any difference is
a bug: e.g. an id repeated in a batch being stepped once per occurrence.
"""
import numpy as np
import pytest
from mindspore import Tensor

from mindrec.config import build_run_config
from mindrec.models.registry import build_model
from mindrec.train.step import TrainStep, configure_runtime


def first_step_updates(model, sparse, ids, vals, labels):
    configure_runtime(0)
    net = build_model(build_run_config(model, "cpu-small", train_overrides={"sparse": sparse}),
                      50)
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    TrainStep(net)(Tensor(ids), Tensor(vals), Tensor(labels))
    return [p.asnumpy() - b for p, b in zip(net.trainable_params(), before)]


@pytest.mark.parametrize("model", ["wide_deep", "dcn", "deepfm", "dcnv2", "dlrm"])
def test_first_step_is_identical_with_repeated_ids(model):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, (64, 39)).astype(np.int32)  # each id ~500 times per batch
    vals = rng.random((64, 39)).astype(np.float32)
    labels = (rng.random((64, 1)) < 0.3).astype(np.float32)
    dense = first_step_updates(model, "off", ids, vals, labels)
    sparse = first_step_updates(model, "on", ids, vals, labels)
    assert len(dense) == len(sparse)
    for d, s in zip(dense, sparse):
        np.testing.assert_allclose(s, d, atol=1e-7)
    assert any(np.abs(d).max() > 0 for d in dense)
