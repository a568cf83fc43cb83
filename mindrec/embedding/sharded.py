"""Row-sharded embedding table for hybrid-parallel training on CPU (msrun + mccl).

Layout: global row ``i`` lives on rank ``i % size`` at local row ``i // size``, so rank
``r`` holds ``ceil((vocab_size - r) / size)`` rows, plus one padding row (the last) that
absorbs lookups of ids owned by other ranks; its value is never read (it is masked to 0)
and it never gets a non-zero gradient.

Routing (a collective: every worker must call the lookup the same number of times, with
ids of the same shape, in training and in evaluation alike):

1. AllGather the ids of all ranks: ``(size*B, F)`` int32.
2. Each rank looks up the ids it owns in its shard, zero for the rest.
3. AllReduce(sum) the ``(size*B, F, dim)`` rows: each position has exactly one owner, so
   the sum *is* the row (adding zeros is exact). Each rank keeps its own ``B`` block.

Backward, MindSpore turns the AllReduce into an AllReduce of the zero-padded output
gradients, so each owner receives the gradients of all ranks for the rows it owns.
The ids' AllGather carries no gradient (ids are integers), which is what makes this
work on CPU: the gradient of a float AllGather is a ReduceScatter, which has no CPU kernel.

Collectives measured on CPU (mccl, 2 workers, GRAPH mode, forward and
``ops.value_and_grad`` backward inside an ``nn.Cell``; MindSpore 2.10.0):

- ``ops.AllReduce()`` (sum): forward and backward correct. float32/float16 only; int32
  fails "Select CPU operator[AllReduce] fail! Unsupported data type! The supported data
  types are input[Float32], output[Float32]; input[Float16], output[Float16]".
- ``ops.AllGather()``: forward correct (float32 and int32); backward fails at kernel
  selection: "Unsupported op [ReduceScatter] on CPU" (its bprop is a ReduceScatter).
  An AllGather of int ids inside a differentiated graph is fine (no bprop is built).
- ``ops.ReduceScatter()`` and ``ops.AlltoAll(2, 0, 0)``: forward fails, "Unsupported op
  [ReduceScatter] on CPU" / "Unsupported op [AlltoAll] on CPU".
- ``ops.Broadcast(0)``: forward correct; backward runs but the gradient is wrong (it is
  the local gradient, not the sum over ranks that the root's input receives).
- ``mindspore.communication.comm_func`` in GRAPH mode: ``all_reduce`` fails ("Failed to
  find input ... PrimFunc_Contiguous ... in graph output map"); ``all_gather_into_tensor``,
  ``reduce_scatter_tensor`` and ``all_to_all_single_with_output_shape`` fail even with
  ``group="mccl_world_group"`` ("The name 'hccl' is not defined, or not supported in graph
  mode"). ``ops.all_reduce`` (functional): "Unsupported op [DistCommAllReduce] on CPU".
- ``nn.DistributedGradReducer(mean=True)``: dense gradients averaged correctly. Sparse
  (RowTensor) gradients are AllGathered: indices concatenated, duplicates kept, so a
  lazy optimizer steps an id seen on two ranks twice.

Gradient scale: with ``grad_mean=True`` (default) the table gradient is divided by
``size`` inside the lookup's backward. Data-parallel training averages the dense
gradients over workers (the loss is the mean of the workers' losses); the owner of a row
receives the *sum* of the workers' gradients, so dividing by ``size`` makes one
distributed step equal a standalone step on the concatenated global batch. Use
``grad_mean=False`` when the training loss is the sum over workers.

Cost: the AllReduce moves ``size*B*F*dim`` floats forward and again backward, ``size``
times the bytes an AlltoAll would (AlltoAll has no CPU kernel), and each rank looks up
``size*B*F`` positions. Measured on the project's 2-core machine (vocab 200k, dim 16,
39 fields, Adam/LazyAdam on the table alone, noisy): 2 workers x B=1000 take 98-118 ms
per step dense and 139-232 ms sparse; one process on the same 2000 samples with
``StaticEmbedding`` 45 ms dense and 103 ms sparse. One AllReduce of the 5 MB of rows
costs 19-32 ms. On one machine sharding buys memory (each rank holds 1/size of the
rows), not speed.
"""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore.common import dtype as mstype
from mindspore.common.initializer import Normal


class _ScaleGrad(nn.Cell):
    """Identity forward; multiplies the gradient by ``scale`` backward."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def construct(self, x):
        return x

    def bprop(self, x, out, dout):
        return (dout * self.scale,)


class ShardedEmbedding(nn.Cell):
    """A ``vocab_size x dim`` table split by rows over the ``size`` workers of a job.

    Args:
        vocab_size (int): number of global rows; ids must lie in ``[0, vocab_size)``.
        dim (int): row width.
        sparse (bool): as in ``StaticEmbedding``: True gives a sparse gradient of the
            local rows looked up (each once), for lazy optimizers; False a dense one.
        init_std (float): local rows start from N(0, init_std^2) (per rank; use
            ``load_full`` to start from a given full table).
        rank (int): this worker's rank.
        size (int): number of workers.
        grad_mean (bool): divide the table gradient by ``size`` (see the module notes).

    Shapes:
        ids (B, F) int32 global ids, the same B and F on every rank
        -> rows (B, F, dim) float32.

    A lookup ``table(ids)`` is a collective: it runs only in the workers of a job, whose
    rank and size ``init_worker()`` returns. The shard of rank 1 of 2, outside a job:

    Example::

        >>> import numpy as np
        >>> table = ShardedEmbedding(5, 2, sparse=True, init_std=0.01, rank=1, size=2)
        >>> table.global_ids()         # the odd rows
        array([1, 3])
        >>> table.table.shape          # 2 owned rows + 1 padding row
        (3, 2)
        >>> table.load_full(np.arange(10, dtype=np.float32).reshape(5, 2))
        >>> table.local_rows()
        array([[2., 3.],
               [6., 7.]], dtype=float32)
    """

    def __init__(self, vocab_size: int, dim: int, sparse: bool, init_std: float, rank: int,
                 size: int, grad_mean: bool = True):
        super().__init__()
        if vocab_size <= 0 or dim <= 0:
            raise ValueError(f"vocab_size and dim must be positive, got {vocab_size}, {dim}")
        if not 0 <= rank < size:
            raise ValueError(f"rank must lie in [0, size), got rank {rank}, size {size}")
        if vocab_size < size:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the {size} workers")
        self.vocab_size = vocab_size
        self.dim = dim
        self.sparse = sparse
        self.rank = rank
        self.size = size
        self.owned_rows = (vocab_size - rank + size - 1) // size
        # MindSpore allows sparse=False only with target="DEVICE" (a plain Gather).
        self.lookup = nn.EmbeddingLookup(self.owned_rows + 1, dim, param_init=Normal(init_std),
                                         target="CPU" if sparse else "DEVICE", sparse=sparse)
        self.all_gather = ops.AllGather()
        self.all_reduce = ops.AllReduce()
        self.scale_grad = _ScaleGrad(1.0 / size if grad_mean else 1.0)

    @property
    def table(self):
        """The local trainable ``(owned_rows + 1, dim)`` Parameter (last row: padding)."""
        return self.lookup.embedding_table

    def global_ids(self) -> np.ndarray:
        """Global ids of the local rows, in local order: ``rank, rank + size, ...``."""
        return np.arange(self.rank, self.vocab_size, self.size)

    def local_rows(self) -> np.ndarray:
        """The owned rows as a ``(owned_rows, dim)`` array (without the padding row)."""
        return self.table.asnumpy()[:self.owned_rows]

    def load_full(self, table: np.ndarray) -> None:
        """Set the local rows from a full ``(vocab_size, dim)`` table (padding row: 0)."""
        if table.shape != (self.vocab_size, self.dim):
            raise ValueError(f"expected a ({self.vocab_size}, {self.dim}) table, "
                             f"got {table.shape}")
        shard = np.zeros((self.owned_rows + 1, self.dim), np.float32)
        shard[:self.owned_rows] = table[self.rank::self.size]
        self.table.set_data(Tensor(shard))

    def construct(self, ids):
        batch = ids.shape[0]
        all_ids = self.all_gather(ids)
        owned = ops.cast(ops.equal(all_ids % self.size, self.rank), ids.dtype)
        local_ids = (all_ids // self.size) * owned + self.owned_rows * (1 - owned)
        rows = self._local_lookup(local_ids) * ops.expand_dims(ops.cast(owned, mstype.float32), -1)
        summed = self.all_reduce(self.scale_grad(rows))
        return summed[self.rank * batch:(self.rank + 1) * batch]

    def _local_lookup(self, local_ids):
        """Rows of the local shard; in the sparse path each local row is looked up once."""
        if not self.sparse:
            return self.lookup(local_ids)
        # As in StaticEmbedding: unique ids give a sparse gradient with one slice per row,
        # so lazy optimizers step each row once (duplicates are summed by the gather).
        unique_ids, inverse = ops.unique(ops.reshape(local_ids, (-1,)))
        rows = ops.gather(self.lookup(unique_ids), inverse, 0)
        return ops.reshape(rows, local_ids.shape + (self.dim,))
