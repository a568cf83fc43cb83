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


class L2Gradient(nn.Cell):
    """Identity in the forward pass; the backward pass adds ``2 * scale / B * x`` to
    the gradient flowing into ``x`` (B = its first dimension): the gradient of the
    penalty ``scale * sum(x^2) / B``, applied without computing the penalty's value.

    On CPU the value (a square and a full reduction over the batch's rows) cost a
    tenth of Wide&Deep's step for a number nobody reads: at the presets' scale it is
    below 1e-5 of the loss.

    Shapes:
        x (B, ...) -> (B, ...).
    """

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def construct(self, x):
        return x

    def bprop(self, x, out, dout):
        return (dout + (2.0 * self.scale / x.shape[0]) * x,)


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

    Computed in the equivalent factored form: every ``x_l`` is ``x0 * a_l + B_l`` with a
    per-sample scalar ``a_l`` (``a_0 = 1``) and the bias sum ``B_l = b_0 + ... +
    b_{l-1}``, so ``x_l . w_l = a_l (x0 . w_l) + B_l . w_l`` and ``a_{l+1} = a_l +
    x_l . w_l``. One matmul projects x0 on every ``w_l``; the layers then work on (B, 1)
    scalars, and only the output touches (B, dim) again. The same function and
    gradients as the layer-by-layer form, in about a tenth of its elementwise work:
    on CPU the layer-by-layer form spent a third of DCN's step on (B, dim) elementwise
    ops for under 1% of its FLOPs.

    Shapes:
        x0 (B, dim) -> (B, dim).
    """

    def __init__(self, dim: int, n_layers: int):
        super().__init__()
        std = 1.0 / math.sqrt(dim)
        self.n_layers = n_layers
        self.dim = dim
        self.weights = nn.CellList([_CrossWeight(dim, std) for _ in range(n_layers)])
        # The primitive, not ops.matmul, whose gradient transposes its operands.
        self.matmul = ops.MatMul()

    @staticmethod
    def flops(dim: int, n_layers: int) -> int:
        """Forward FLOPs per sample of the layer-by-layer form: a dot product, a scale
        and two adds per layer (the nominal count the roofline uses)."""
        return n_layers * 5 * dim

    def construct(self, x0):
        if self.n_layers == 0:
            return x0
        projections = self.matmul(x0, ops.concat([layer.w for layer in self.weights], 1))
        scale = ops.ones((x0.shape[0], 1), x0.dtype)
        bias_sum = ops.zeros((1, self.dim), x0.dtype)
        for i, layer in enumerate(self.weights):
            dot = scale * projections[:, i:i + 1] + self.matmul(bias_sum, layer.w)
            scale = scale + dot
            bias_sum = bias_sum + layer.b
        return x0 * scale + bias_sum


class MatrixCrossNet(nn.Cell):
    """DCN-V2 cross layers: ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l``, with ``W_l`` a
    full ``dim x dim`` matrix or, with ``low_rank`` r, the product ``U_l V_l^T`` of two
    ``dim x r`` matrices (x goes through V_l^T, then U_l).

    Shapes:
        x0 (B, dim) -> (B, dim).
    """

    def __init__(self, dim: int, n_layers: int, low_rank: int | None = None):
        super().__init__()
        self.n_layers = n_layers
        if low_rank is None:
            layers = [nn.Dense(dim, dim) for _ in range(n_layers)]
        else:
            layers = [nn.SequentialCell([nn.Dense(dim, low_rank, has_bias=False),
                                         nn.Dense(low_rank, dim)])
                      for _ in range(n_layers)]
        self.layers = nn.CellList(layers)

    @staticmethod
    def flops(dim: int, n_layers: int, low_rank: int | None = None) -> int:
        """Forward FLOPs per sample: the matrix product (2 per multiply-add), the bias,
        the scale by x0 and the residual add, per layer."""
        product = 2 * dim * dim if low_rank is None else 4 * dim * low_rank
        return n_layers * (product + 3 * dim)

    def construct(self, x0):
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class _CrossWeight(nn.Cell):
    def __init__(self, dim: int, std: float):
        super().__init__()
        self.w = Parameter(initializer(Normal(std), (dim, 1), ms.float32), name="w")
        self.b = Parameter(initializer(Zero(), (dim,), ms.float32), name="b")

