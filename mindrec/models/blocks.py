"""Building blocks shared by the models: value-scaled embeddings, MLP tower, cross net."""
from __future__ import annotations

import math

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer

from mindrec.embedding.static import StaticEmbedding


class FeatureEmbedding(nn.Cell):
    """Looks up one row per field and scales it by the field's value.

    As in the original MindRec, a dense field's row is multiplied by its normalised
    value and a categorical field's row by 1.0 (0.0 for a missing dense value).

    Shapes:
        ids (B, F) int32, vals (B, F) float32 -> (B, F, dim) float32.
    """

    def __init__(self, table: StaticEmbedding):
        super().__init__()
        self.table = table

    def construct(self, ids, vals):
        return self.table(ids) * ops.expand_dims(vals, -1)


class MLP(nn.Cell):
    """Dense layers with ReLU between them: in_dim -> layers[0] -> ... -> layers[-1].

    The last layer has no activation when ``last_activation`` is False.
    """

    def __init__(self, in_dim: int, layers: tuple[int, ...], last_activation: bool = True):
        super().__init__()
        cells = []
        width = in_dim
        for i, out in enumerate(layers):
            cells.append(nn.Dense(width, out))
            if last_activation or i < len(layers) - 1:
                cells.append(nn.ReLU())
            width = out
        self.net = nn.SequentialCell(cells)
        self.out_dim = width

    def construct(self, x):
        return self.net(x)


def mlp_flops(in_dim: int, layers: tuple[int, ...]) -> int:
    """Forward multiply-add FLOPs (2 per MAC) of an MLP, per sample."""
    widths = (in_dim, *layers)
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:]))


class CrossNet(nn.Cell):
    """DCN cross layers: ``x_{l+1} = x0 * (x_l . w_l) + b_l + x_l``.

    Shapes:
        x0 (B, dim) -> (B, dim).
    """

    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        std = 1.0 / math.sqrt(dim)
        self.n_layers = n_layers
        self.weights = nn.CellList([_CrossWeight(dim, std) for _ in range(n_layers)])

    @staticmethod
    def flops(dim: int, n_layers: int) -> int:
        """Forward FLOPs per sample: a dot product, a scale and two adds per layer."""
        return n_layers * 5 * dim

    def construct(self, x0):
        x = x0
        for layer in self.weights:
            x = x0 * ops.matmul(x, layer.w) + layer.b + x
        return x


class _CrossWeight(nn.Cell):
    def __init__(self, dim: int, std: float):
        super().__init__()
        self.w = Parameter(initializer(Normal(std), (dim, 1), ms.float32), name="w")
        self.b = Parameter(initializer(Zero(), (dim,), ms.float32), name="b")

