"""RedisTier on a real Valkey server (and a real 3-node cluster): round trip,
generations, eviction by capacity, lost rows, and errors naming the address."""
from __future__ import annotations

import re

import numpy as np
import pytest
import redis

from bench.job.launcher import free_port
from bench.services import LocalCluster, RedisServer
from mindrec.embedding.cache.errors import CapacityError, TierError
from mindrec.embedding.cache.remote import RedisTier
from mindrec.embedding.cache.tiers import HostTier, TierChain

pytestmark = pytest.mark.integration

WIDTH = 51


def rows_of(keys, version=0):
    keys = np.asarray(keys)
    return (keys[:, None] % 997 + version + np.arange(WIDTH)[None, :] / 64).astype(np.float32)


@pytest.fixture(scope="module")
def server():
    with RedisServer() as started:
        yield started


@pytest.fixture
def client(server):
    connection = redis.Redis.from_url(server.url)
    connection.flushall()
    yield connection
    connection.close()


def names(client, namespace):
    return sorted(k.decode() for k in client.scan_iter(match=f"{namespace}:*"))


def test_round_trip(server, client):
    tier = RedisTier(server.url, WIDTH, namespace="t", chunk_rows=700)
    keys = np.arange(-2499, 2500, 3, dtype=np.int64)  # -1 and -2 are reserved
    tier.put(keys, rows_of(keys), keys * 3)
    tier.put(keys[:5], rows_of(keys[:5], 1), np.arange(5))
    found, rows, steps = tier.get(np.concatenate([keys, [1, 4]]))
    assert found.tolist() == [True] * len(keys) + [False, False]
    assert np.array_equal(rows[:5], rows_of(keys[:5], 1))
    assert np.array_equal(rows[5:len(keys)], rows_of(keys[5:]))
    assert steps[:len(keys)].tolist() == list(range(5)) + (keys[5:] * 3).tolist()
    assert client.get("t:0:-2499") == tier._codec.pack(rows[:1], steps[:1])[0]
    tier.delete(keys[:10])
    assert not tier.get(keys[:10])[0].any() and client.dbsize() == len(keys) - 10
    stats = tier.stats()
    assert (stats.rows_held, stats.bytes_held) == (len(keys) - 10,
                                                   (len(keys) - 10) * (8 + 4 * WIDTH))
    tier.close()


def test_a_new_generation_discards_earlier_rows(server, client):
    tier = RedisTier(server.url, WIDTH, namespace="gen", generation=4)
    other = RedisTier(server.url, WIDTH, namespace="other")
    keys = np.arange(3000)
    tier.put(keys, rows_of(keys), keys)
    other.put(keys[:3], rows_of(keys[:3]), keys[:3])
    client.set("gen:2:17", b"left by a run before")
    assert tier.new_generation() == 5
    assert not tier.get(keys)[0].any() and tier.stats().rows_held == 0
    assert names(client, "gen") == []
    assert other.get(keys[:3])[0].all()  # another namespace is untouched
    tier.put(keys[:2], rows_of(keys[:2], 1), keys[:2])
    assert names(client, "gen") == ["gen:5:0", "gen:5:1"]
    again = RedisTier(server.url, WIDTH, namespace="gen", generation=4)
    assert not again.get(keys[:2])[0].any()  # generation 4 is gone for everyone


def test_capacity_evicts_by_policy_and_writes_only_dirty_rows_down(server, client):
    store = HostTier(WIDTH, name="store")
    remote = RedisTier(server.url, WIDTH, namespace="cap", capacity_rows=100, below=store)
    chain = TierChain([remote, store])
    keys = np.arange(100)
    chain.write_back(keys, rows_of(keys), keys)
    remote.get(keys[50:])  # 0..49 are now the least recent
    chain.write_back(keys + 100, rows_of(keys + 100), keys)
    assert client.dbsize() == 100 and store.stats().puts == 100
    assert np.flatnonzero(store.get(keys)[0]).tolist() == list(range(100))
    chain.flush()
    assert store.stats().puts == 200
    chain.flush()
    assert store.stats().puts == 200  # clean rows are not written again
    chain.write_back(keys + 200, rows_of(keys + 200), keys)
    assert store.stats().puts == 200 and client.dbsize() == 100  # clean victims unlinked
    found, rows, _, source = chain.fetch(np.arange(300))
    assert found.all() and np.array_equal(rows, rows_of(np.arange(300)))
    assert (source[200:] == 0).all() and (source[:200] == 1).all()
    stats = remote.stats()
    assert (stats.evictions, stats.written_down, stats.rows_held) == (200, 200, 100)


def test_a_full_bottom_tier_refuses_naming_the_address(server, client):
    tier = RedisTier(server.url, WIDTH, namespace="full", capacity_rows=10)
    tier.put(np.arange(8), rows_of(np.arange(8)), np.arange(8))
    with pytest.raises(CapacityError, match=re.escape(
            f"remote tier at 127.0.0.1:{server.port} is full (10 rows)")):
        tier.put(np.arange(5, 15), rows_of(np.arange(5, 15)), np.arange(10))
    assert tier.stats().rows_held == 8 and client.dbsize() == 8


def test_rows_lost_by_the_server(server, client):
    store = HostTier(WIDTH, name="store")
    tier = RedisTier(server.url, WIDTH, namespace="lost", capacity_rows=10, below=store)
    tier.put(np.arange(4), rows_of(np.arange(4)), np.arange(4))
    tier.flush()
    client.delete("lost:0:0")  # clean: the store has it
    assert tier.get(np.array([0, 1]))[0].tolist() == [False, True]
    assert tier.stats().rows_held == 3
    tier.put(np.array([1]), rows_of([1], 1), np.array([1]))
    client.delete("lost:0:1")  # dirty: it exists nowhere else
    with pytest.raises(TierError, match=re.escape(
            f"remote tier at 127.0.0.1:{server.port}: the server no longer has 1 rows")):
        tier.get(np.array([1]))


def test_server_errors_name_the_address():
    with RedisServer(maxmemory="2mb") as small:
        tier = RedisTier(small.url, WIDTH, namespace="oom")
        keys = np.arange(20_000)
        with pytest.raises(TierError, match=re.escape(
                f"remote tier at 127.0.0.1:{small.port}: writing rows: ")):
            tier.put(keys, rows_of(keys), keys)
        tier.close()


def test_an_unreachable_server_is_named():
    port = free_port()
    with pytest.raises(ConnectionError, match=re.escape(
            f"remote tier: no Redis server answers at 127.0.0.1:{port} within 2 s")):
        RedisTier(f"redis://127.0.0.1:{port}", WIDTH, connect_timeout_s=2)
    with pytest.raises(ConnectionError, match="lost the server"):
        with RedisServer() as short_lived:
            tier = RedisTier(short_lived.url, WIDTH)
            short_lived.stop()
            tier.put(np.array([1]), rows_of([1]), np.array([1]))
    with pytest.raises(ValueError, match="namespace 'a:b'"):
        RedisTier(f"redis://127.0.0.1:{port}", WIDTH, namespace="a:b")


def test_a_cluster_spreads_rows_over_its_masters():
    with LocalCluster(masters=3) as cluster:
        store = HostTier(WIDTH, name="store")
        tier = RedisTier(cluster.url, WIDTH, namespace="c", capacity_rows=500, below=store,
                         chunk_rows=300)
        assert tier.cluster
        keys = np.arange(800)
        tier.put(keys, rows_of(keys), keys)
        found, rows, _, _ = TierChain([tier, store]).fetch(keys)
        assert found.all() and np.array_equal(rows, rows_of(keys))
        sizes = [redis.Redis(port=s.port).dbsize() for s in cluster.servers]
        assert sum(sizes) == 500 and min(sizes) > 0
        tier.new_generation()
        assert sum(redis.Redis(port=s.port).dbsize() for s in cluster.servers) == 0
        tier.close()
