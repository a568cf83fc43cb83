"""The table factory picks the storage: static, CPU hash, or MapParameter on GPU."""
import mindspore as ms
import pytest

from mindrec.config import EmbeddingConfig, EmbeddingKind
from mindrec.embedding import tables as tables_module
from mindrec.embedding.hash import DeviceHashEmbedding, HashEmbedding
from mindrec.embedding.static import StaticEmbedding
from mindrec.embedding.tables import TableFactory

ms.set_device("CPU")


def test_static_and_cpu_hash_tables():
    static = TableFactory(EmbeddingConfig(), rows=100, sparse=False)
    assert isinstance(static(8, 0.01), StaticEmbedding) and static.index is None
    factory = TableFactory(EmbeddingConfig(kind=EmbeddingKind.HASH, permit_filter_value=2,
                                           evict_filter_value=9), rows=100, sparse=False)
    wide, deep = factory(1, 0.0), factory(8, 0.01)
    assert isinstance(deep, HashEmbedding) and wide.index is deep.index is factory.index
    assert (factory.index.capacity, factory.index.permit, factory.index.evict) == (100, 2, 9)
    assert (wide.default_value, deep.default_value) == ("zeros", "normal")


def test_gpu_hash_tables_are_map_parameters(monkeypatch):
    """On a GPU the factory builds MapParameter tables with the configured filters (the
    device kernels themselves cannot run on a CPU machine)."""
    monkeypatch.setattr(tables_module.ms, "get_context",
                        lambda key: "GPU" if key == "device_target" else None)
    factory = TableFactory(EmbeddingConfig(kind=EmbeddingKind.HASH, permit_filter_value=3,
                                           evict_filter_value=7), rows=100, sparse=True)
    table = factory(16, 0.01)
    assert isinstance(table, DeviceHashEmbedding) and factory.index is None
    param = table.table
    assert (param.value_shape, param.permit_filter_value, param.evict_filter_value,
            param.default_value) == ((16,), 3, 7, "normal")


def test_capacity_overrides_rows():
    factory = TableFactory(EmbeddingConfig(kind=EmbeddingKind.HASH, capacity=10), rows=100,
                           sparse=True)
    assert factory.index.capacity == 10


@pytest.mark.parametrize("values, match", [({"permit_filter_value": 0}, "permit"),
                                           ({"evict_filter_value": 0}, "evict"),
                                           ({"kind": "lru"}, "kind")])
def test_bad_embedding_config_is_named(values, match):
    from mindrec.config import ConfigError, from_dict
    with pytest.raises(ConfigError, match=match):
        from_dict(EmbeddingConfig, values, "embedding")


def test_hybrid_tables_shard_by_collectives_on_cpu_and_row_slicing_elsewhere(monkeypatch):
    from mindrec.embedding.sharded import ShardedEmbedding
    cpu = TableFactory(EmbeddingConfig(), rows=100, sparse=False, shard=(1, 2))
    table = cpu(8, 0.01)
    assert isinstance(table, ShardedEmbedding) and table.table.shape == (50 + 1, 8)
    monkeypatch.setattr(tables_module.ms, "get_context",
                        lambda key: "Ascend" if key == "device_target" else None)
    native = TableFactory(EmbeddingConfig(), rows=100, sparse=False, shard=(1, 2))(8, 0.01)
    assert type(native) is StaticEmbedding and native.row_sliced
    assert native.table.shape == (100, 8)  # MindSpore slices it when the graph compiles
