"""The kernels behind the PyTorch peer's lead on some CPUs (docs/pytorch-peer.md), each
measured in MindSpore and in PyTorch (skipped without the peers extra): float32 matrix
multiplies at the shapes of the models' MLPs, and the sum over the field axis of a
batch of embeddings."""
from __future__ import annotations

import os

import numpy as np
import pytest

from bench.micro.settings import BATCH, EMBEDDING_DIM, SEED

FIELDS = 39
MATMUL_SHAPES = [(BATCH, 624, 256), (BATCH, 1560, 1024), (BATCH, 1024, 1024)]


def _shape_id(shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, shape))


def _operands(*shape: int) -> np.ndarray:
    return np.random.default_rng(SEED).random(shape, dtype=np.float32)


@pytest.fixture(scope="module")
def torch():
    """PyTorch on every core this process may use, as the peer trains."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the peers extra)")
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return torch


@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=_shape_id)
def test_mindspore_matmul(benchmark, runtime, per_second, shape):
    """``ops.MatMul`` in a GRAPH-mode Cell, (M, K) x (K, N), result read back."""
    from mindspore import Tensor, nn, ops

    class MatMul(nn.Cell):
        def __init__(self):
            super().__init__()
            self.matmul = ops.MatMul()

        def construct(self, a, b):
            return self.matmul(a, b)

    m, k, n = shape
    a, b = Tensor(_operands(m, k)), Tensor(_operands(k, n))
    cell = MatMul()
    cell(a, b).asnumpy()  # compile
    benchmark(lambda: cell(a, b).asnumpy())
    per_second(2 * m * k * n, "flop_per_s")


@pytest.mark.parametrize("shape", MATMUL_SHAPES, ids=_shape_id)
def test_torch_matmul(benchmark, torch, per_second, shape):
    """``torch.mm``, (M, K) x (K, N)."""
    m, k, n = shape
    a, b = torch.from_numpy(_operands(m, k)), torch.from_numpy(_operands(k, n))
    benchmark(torch.mm, a, b)
    per_second(2 * m * k * n, "flop_per_s")


def test_mindspore_field_sum(benchmark, runtime, per_second):
    """``ops.reduce_sum`` over the middle (field) axis of (batch, fields, dim)."""
    from mindspore import Tensor, nn, ops

    class FieldSum(nn.Cell):
        def construct(self, x):
            return ops.reduce_sum(x, 1)

    x = Tensor(_operands(BATCH, FIELDS, EMBEDDING_DIM))
    cell = FieldSum()
    cell(x).asnumpy()  # compile
    benchmark(lambda: cell(x).asnumpy())
    per_second(BATCH)


def test_torch_field_sum(benchmark, torch, per_second):
    """``Tensor.sum`` over the middle (field) axis of (batch, fields, dim)."""
    x = torch.from_numpy(_operands(BATCH, FIELDS, EMBEDDING_DIM))
    benchmark(x.sum, 1)
    per_second(BATCH)
