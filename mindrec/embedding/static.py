"""Static embedding table: a fixed id space [0, vocab_size) of trainable rows."""
from __future__ import annotations

from mindspore import nn, ops
from mindspore.common.initializer import Normal


class StaticEmbedding(nn.Cell):
    """A ``vocab_size x dim`` table looked up by integer ids.

    Args:
        vocab_size (int): number of rows; ids must lie in ``[0, vocab_size)``.
        dim (int): row width.
        sparse (bool): if True the lookup yields a sparse gradient (only the rows of
            the batch), which lazy optimizers (LazyAdam, FTRL) apply row by row; if
            False the gradient is a dense table-sized tensor.
        init_std (float): rows start from N(0, init_std^2).
        row_sliced (bool): under MindSpore's semi-auto parallel (GPU, Ascend), split the
            table by rows over the devices (MindSpore's ``table_row_slice`` strategy).

    Shapes:
        ids (B, F) int32 -> rows (B, F, dim) float32.

    Example::

        >>> import numpy as np
        >>> from mindspore import Tensor
        >>> table = StaticEmbedding(1000, 8, sparse=True, init_std=0.01)
        >>> table(Tensor(np.zeros((2, 39), np.int32))).shape
        (2, 39, 8)
    """

    def __init__(self, vocab_size: int, dim: int, sparse: bool, init_std: float,
                 row_sliced: bool = False):
        super().__init__()
        if vocab_size <= 0 or dim <= 0:
            raise ValueError(f"vocab_size and dim must be positive, got {vocab_size}, {dim}")
        self.vocab_size = vocab_size
        self.dim = dim
        self.sparse = sparse
        # MindSpore allows sparse=False only with target="DEVICE" (a plain Gather).
        self.row_sliced = row_sliced
        self.lookup = nn.EmbeddingLookup(
            vocab_size, dim, param_init=Normal(init_std), target="CPU" if sparse else "DEVICE",
            sparse=sparse,
            slice_mode=nn.EmbeddingLookup.TABLE_ROW_SLICE if row_sliced else "batch_slice")

    @property
    def table(self):
        """The trainable ``(vocab_size, dim)`` Parameter."""
        return self.lookup.embedding_table

    def construct(self, ids):
        if not self.sparse or self.row_sliced:
            return self.lookup(ids)
        # The sparse gradient of a lookup carries one slice per occurrence of an id, and
        # MindSpore's CPU lazy optimizers apply each slice as its own update: an id seen
        # k times in a batch would be stepped k times. Looking up each id once and
        # gathering back makes the slices unique (duplicates summed in the gather's
        # gradient), which matches the dense path on the first step exactly.
        unique_ids, inverse = ops.unique(ops.reshape(ids, (-1,)))
        rows = ops.gather(self.lookup(unique_ids), inverse, 0)
        return ops.reshape(rows, ids.shape + (self.dim,))
