"""Optimizers the models use beside MindSpore's own."""
from __future__ import annotations

from mindspore import ParameterTuple, nn, ops


def adam(params, sparse: bool, learning_rate: float, eps: float) -> nn.Optimizer:
    """Adam on ``params``: ``nn.LazyAdam`` (the rows of a batch only) when the tables are
    sparse, ``nn.Adam`` otherwise."""
    return (nn.LazyAdam if sparse else nn.Adam)(params, learning_rate=learning_rate, eps=eps)


class DenseFTRL(nn.Cell):
    """FTRL-Proximal (learning-rate power -0.5) for dense gradients, in elementwise ops.

    The same update as ``nn.FTRL`` (MindSpore's ApplyFtrl kernel), with the same state
    names (``moments.*`` for the accumulators, ``linear.*``), so checkpoints of either
    load into the other. Per value and step::

        accum' = accum + g^2
        linear' = linear + g - (sqrt(accum') - sqrt(accum)) / lr * w
        w' = (sign(linear') * l1 - linear') / (sqrt(accum') / lr + 2 * l2)
             if |linear'| > l1 else 0

    On CPU the ApplyFtrl kernel takes about 45 ns per value, 3.5x Adam's time on 16x
    the values; these ops make Wide&Deep's step 1.25x faster with a dense wide table
    (profile and paired measurement: docs/pytorch-peer.md). Sparse tables keep
    ``nn.FTRL``, which updates only the rows of a batch.
    """

    def __init__(self, params, learning_rate: float, l1: float = 0.0, l2: float = 0.0,
                 initial_accum: float = 0.1):
        super().__init__(auto_prefix=False)
        self.parameters = ParameterTuple(params)
        self.moments = self.parameters.clone(prefix="moments", init=initial_accum)
        self.linear = self.parameters.clone(prefix="linear", init="zeros")
        self.lr = learning_rate
        self.l1 = l1
        self.l2 = l2

    def construct(self, grads):
        for i in range(len(self.parameters)):
            weight, accum, linear, grad = (self.parameters[i], self.moments[i],
                                           self.linear[i], grads[i])
            new_accum = accum + grad * grad
            root = ops.sqrt(new_accum)
            new_linear = linear + grad - (root - ops.sqrt(accum)) / self.lr * weight
            quadratic = root / self.lr + 2 * self.l2
            new_weight = ops.select(ops.abs(new_linear) > self.l1,
                                    (ops.sign(new_linear) * self.l1 - new_linear) / quadratic,
                                    ops.zeros_like(new_linear))
            ops.assign(accum, new_accum)
            ops.assign(linear, new_linear)
            ops.assign(weight, new_weight)
        return True
