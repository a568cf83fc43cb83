"""The compiled training step.

FACTS.md measured the fastest correct MindSpore 2.10 CPU path: ``value_and_grad`` called
inside a GRAPH-mode ``Cell.construct`` with the optimizers as Cells (1.5-2x faster than
the same step under ``ms.jit``). Each model returns its logits and lists its
optimizers; the step splits the gradient tuple between them.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import ParameterTuple, nn, ops

from mindrec.embedding.hash import bind_table_states
from mindrec.embedding.sharded import ShardedEmbedding
from mindrec.train.distributed import GradientMean


class LossCell(nn.Cell):
    """Mean sigmoid cross-entropy of the logits (and, with ``with_predictions``, the
    click probabilities of the forward pass beside it). Penalties enter the gradient
    inside the models (:class:`mindrec.models.blocks.L2Gradient`)."""

    def __init__(self, network: nn.Cell, with_predictions: bool = False):
        super().__init__(auto_prefix=False)
        self.network = network
        self.bce = nn.BCEWithLogitsLoss(reduction="mean")
        self.with_predictions = with_predictions

    def construct(self, ids, vals, labels):
        logits = self.network(ids, vals)
        loss = self.bce(logits, labels)
        if self.with_predictions:
            return loss, ops.sigmoid(logits)
        return loss


class TrainStep(nn.Cell):
    """One optimisation step: loss, gradients, then every optimizer on its parameters.

    With ``workers`` > 1 (inside an msrun job) gradients are averaged over the workers
    before the update, except those of row-sharded tables, whose owners already receive
    the gradients of every worker. Under MindSpore's semi-auto parallel (hybrid mode on
    GPU and Ascend) MindSpore inserts those collectives itself.

    With ``with_predictions`` the step also returns the click probabilities its forward
    pass computed, before the update: what online learning's progressive validation
    needs, without a forward pass of its own.

    Shapes:
        ids (B, F) int32, vals (B, F) float32, labels (B, 1) float32 -> loss () float32
        (and probabilities (B, 1) float32 with ``with_predictions``).
    """

    def __init__(self, network: nn.Cell, workers: int = 1, with_predictions: bool = False):
        super().__init__(auto_prefix=False)
        self.with_predictions = with_predictions
        self.loss_cell = LossCell(network, with_predictions)
        optimizers = network.optimizers()
        bind_table_states(network, optimizers)
        self.optimizers = nn.CellList(optimizers, auto_prefix=False)
        params = [p for opt in optimizers for p in opt.parameters]
        bounds = [0]
        for opt in optimizers:
            bounds.append(bounds[-1] + len(opt.parameters))
        self.bounds = tuple(bounds)
        self.grad_fn = ops.value_and_grad(self.loss_cell, None, ParameterTuple(params),
                                          has_aux=with_predictions)
        self.distributed = (workers > 1 and ms.get_auto_parallel_context("parallel_mode")
                            != ms.ParallelMode.SEMI_AUTO_PARALLEL)
        if self.distributed:
            sharded = [c.table for _, c in network.cells_and_names()
                       if isinstance(c, ShardedEmbedding)]
            self.grad_mean = GradientMean(params, workers, local=sharded)

    def construct(self, ids, vals, labels):
        outputs, grads = self.grad_fn(ids, vals, labels)
        if self.distributed:
            grads = self.grad_mean(grads)
        for i, opt in enumerate(self.optimizers):
            opt(grads[self.bounds[i]:self.bounds[i + 1]])
        return outputs


class Predict(nn.Cell):
    """Click probabilities ``sigmoid(logits)`` of shape (B, 1)."""

    def __init__(self, network: nn.Cell):
        super().__init__(auto_prefix=False)
        self.network = network

    def construct(self, ids, vals):
        return ops.sigmoid(self.network(ids, vals))


def use_device(device: str) -> None:
    """Select MindSpore's device. It can be set once per process (MindSpore refuses a
    change once collectives are up); asking again for the device in use is fine."""
    try:
        ms.set_device(device)
    except RuntimeError:
        if ms.get_context("device_target") != device:
            raise


def configure_runtime(seed: int, device: str = "CPU") -> None:
    """Select the device, GRAPH mode and the global seed (call before building models)."""
    use_device(device)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(seed)
