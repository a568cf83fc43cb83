"""Builds a model's embedding tables of the configured kind.

Models ask for tables by width and initial spread; this module decides how they are
stored: a static table of ``rows`` ids, a table sharded by rows over the workers of a
hybrid-parallel job, CPU hash tables sharing one key index (so a model's tables admit
and evict the same keys), hash tables behind the multi-level cache (whose device tier
is such an index), or MapParameter tables on GPU.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn

from mindrec.config import CacheConfig, EmbeddingConfig, EmbeddingKind
from mindrec.embedding.hash import DeviceHashEmbedding, HashEmbedding
from mindrec.embedding.hash_index import HashIndex
from mindrec.embedding.sharded import ShardedEmbedding
from mindrec.embedding.static import StaticEmbedding


class TableFactory:
    """Makes the tables of one model.

    Args:
        config (EmbeddingConfig): static or hash, and the hash filters.
        rows (int): static rows; the hash capacity unless ``config.capacity`` is set.
        sparse (bool): sparse lookups for static tables (hash tables always are).
        seed (int): seeds the rows drawn for new hash keys.
        shard (tuple[int, int] | None): ``(rank, size)`` to shard static tables by rows
            over the workers of a hybrid-parallel job: on CPU through collectives
            (:class:`ShardedEmbedding`), on GPU and Ascend through MindSpore's semi-auto
            parallel row slicing.
        cache (CacheConfig | None): put hash tables behind the multi-level cache (its
            device tier, ``cache.device_rows``, replaces ``config.capacity``).

    ``index`` is what the trainer turns keys into slots with before each step: the
    shared :class:`HashIndex` of CPU hash tables, their :class:`DeviceCache` with a
    cache, None otherwise.
    """

    def __init__(self, config: EmbeddingConfig, rows: int, sparse: bool, seed: int = 0,
                 shard: tuple[int, int] | None = None, cache: CacheConfig | None = None):
        self.config = config
        self.shard = shard
        self.rows = rows
        self.sparse = sparse
        self.seed = seed
        cached = cache is not None and cache.enabled
        device = ms.get_context("device_target")
        self.on_device = config.kind is EmbeddingKind.HASH and device == "GPU" and not cached
        self.native_sharding = device != "CPU"
        self.index = self._hash_index = None
        if config.kind is EmbeddingKind.HASH and not self.on_device:
            if cached and cache.device_rows is None:
                raise ValueError("the cache's device_fraction must be resolved against the "
                                 "data first (CacheConfig.sized)")
            capacity = cache.device_rows if cached else config.capacity or rows
            self._hash_index = HashIndex(capacity, config.permit_filter_value,
                                         config.evict_filter_value)
            self.index = self._hash_index
        if cached:
            from mindrec.embedding.cache.build import device_cache
            self.index = device_cache(cache, self._hash_index, seed)
        self._made = 0

    def __call__(self, dim: int, init_std: float) -> nn.Cell:
        """A table of ``dim``-wide rows starting from N(0, init_std^2) (zeros if 0)."""
        self._made += 1
        if self.config.kind is EmbeddingKind.STATIC and self.shard is not None:
            if self.native_sharding:
                return StaticEmbedding(self.rows, dim, self.sparse, init_std, row_sliced=True)
            return ShardedEmbedding(self.rows, dim, self.sparse, init_std, *self.shard)
        if self.config.kind is EmbeddingKind.STATIC:
            return StaticEmbedding(self.rows, dim, self.sparse, init_std)
        default = "normal" if init_std > 0 else "zeros"
        if self.on_device:
            return DeviceHashEmbedding(dim, default, self.config.permit_filter_value,
                                       self.config.evict_filter_value)
        table = HashEmbedding(self._hash_index, dim, default, init_std,
                              seed=self.seed + self._made)
        if self.index is not self._hash_index:
            self.index.add_table(table)
        return table


def table_bytes(network: nn.Cell) -> int:
    """Bytes of the embedding tables this process holds (its shard in hybrid mode)."""
    kinds = (StaticEmbedding, ShardedEmbedding, HashEmbedding)
    tables = {id(cell.table): cell.table for _, cell in network.cells_and_names()
              if isinstance(cell, kinds)}
    return sum(table.nbytes for table in tables.values())
