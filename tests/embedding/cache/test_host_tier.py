"""HostTier and TierChain semantics: inclusive write-back (only dirty rows go down,
once), eviction by policy, capacity errors, fetch order, flush; and the packed-row
format every tier stores."""
from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from mindrec.embedding.cache.errors import CapacityError, TierError
from mindrec.embedding.cache.tiers import HostTier, RowCodec, TierChain

WIDTH = 3


def rows_of(keys, version=0):
    """Rows whose values say which key and version they belong to."""
    keys = np.asarray(keys)
    return (keys[:, None] * 10 + version + np.arange(WIDTH)[None, :] / 10).astype(np.float32)


def put(tier, keys, version=0):
    keys = np.asarray(keys, np.int64)
    tier.put(keys, rows_of(keys, version), keys + version)


def two_tiers(capacity=4, policy="lru"):
    store = HostTier(WIDTH, name="store")
    top = HostTier(WIDTH, capacity_rows=capacity, policy=policy, below=store)
    return top, store, TierChain([top, store])


def test_round_trip_absent_keys_and_growth():
    tier = HostTier(WIDTH)
    keys = np.arange(-3000, 3000, 3, dtype=np.int64)  # grows past the first 1024 slots
    for part in np.array_split(keys, 3):
        put(tier, part)
    put(tier, keys[:5], version=1)  # overwrite
    found, rows, steps = tier.get(np.concatenate([keys, [1, 4]]))
    assert found.tolist() == [True] * len(keys) + [False, False]
    assert np.array_equal(rows[:5], rows_of(keys[:5], 1))
    assert np.array_equal(rows[5:len(keys)], rows_of(keys[5:]))
    assert np.array_equal(steps[:len(keys)], np.concatenate([keys[:5] + 1, keys[5:]]))
    assert not rows[len(keys):].any() and not steps[len(keys):].any()
    stats = tier.stats()
    assert (stats.rows_held, stats.capacity_rows) == (len(keys), None)
    assert stats.bytes_held == len(keys) * (8 + 4 * WIDTH)
    tier.delete(keys[:10])
    assert not tier.get(keys[:10])[0].any()


def test_snapshot_and_restore(tmp_path):
    tier = HostTier(WIDTH)
    keys = np.arange(-40, 60, 7)
    put(tier, keys)
    tier.delete(keys[:3])
    path = tier.snapshot(tmp_path / "host.npz")
    put(tier, keys, version=1)  # after the snapshot
    restored = HostTier.from_snapshot(path)
    assert restored.stats().rows_held == len(keys) - 3
    found, rows, steps = restored.get(keys)
    assert found.tolist() == [False] * 3 + [True] * (len(keys) - 3)
    assert np.array_equal(rows[3:], rows_of(keys[3:])) and np.array_equal(steps[3:], keys[3:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host.npz"]


def test_full_tier_without_a_tier_below_refuses_and_writes_nothing():
    tier = HostTier(WIDTH, capacity_rows=4)
    put(tier, [1, 2, 3])
    with pytest.raises(CapacityError, match=r"host tier is full \(4 rows\) and has no tier "
                                            r"below.*1 more rows"):
        put(tier, [4, 5])
    with pytest.raises(CapacityError, match="host tier is full"):
        put(tier, np.arange(10, 20))
    assert tier.stats().rows_held == 3
    put(tier, [1, 2, 3, 4])  # overwriting held keys needs no room
    assert tier.get(np.array([4]))[0].all()


def test_only_dirty_victims_are_written_down_and_only_once():
    top, store, chain = two_tiers(capacity=4)
    put(store, [100, 101, 102, 103])
    found, _, _, source = chain.fetch(np.array([100, 101]))
    assert found.all() and source.tolist() == [1, 1]
    assert top.stats().rows_held == 0  # fetched rows are not copied up
    chain.write_back(np.arange(4), rows_of(np.arange(4), 1), np.arange(4))
    assert store.stats().puts == 4
    chain.write_back(np.arange(4, 8), rows_of(np.arange(4, 8), 1), np.arange(4, 8))
    top_stats, store_stats = top.stats(), store.stats()
    assert (top_stats.evictions, top_stats.written_down) == (4, 4)
    assert store_stats.puts == 8  # the four dirty victims
    chain.flush()
    assert store.stats().puts == 12  # the four dirty rows left in the top tier
    chain.flush()
    assert store.stats().puts == 12  # clean now: not rewritten
    chain.write_back(np.arange(8, 12), rows_of(np.arange(8, 12), 1), np.arange(8, 12))
    assert store.stats().puts == 12  # clean victims are dropped, not written
    assert top.stats().evictions == 8
    found, rows, _, source = chain.fetch(np.arange(12))
    assert found.all() and np.array_equal(rows, rows_of(np.arange(12), 1))
    assert source.tolist() == [1] * 8 + [0] * 4


@pytest.mark.parametrize("policy, evicted", [("lru", [0, 3]), ("lfu", [2, 3])])
def test_victims_follow_the_policy(policy, evicted):
    top, store, _ = two_tiers(capacity=4, policy=policy)
    put(top, [0, 1, 2, 3])  # operation 1: one use each
    top.get(np.array([0, 1]))  # 2
    top.get(np.array([0, 2]))  # 3
    top.get(np.array([1]))  # 4
    # uses 0:3 1:3 2:2 3:1; last use 0:3 1:4 2:3 3:1 (a tie of 0 and 2: the lower slot)
    put(top, [10, 11])
    in_store = store.get(np.array([0, 1, 2, 3]))[0]
    assert np.flatnonzero(in_store).tolist() == evicted
    assert np.flatnonzero(~top.get(np.array([0, 1, 2, 3]))[0]).tolist() == evicted


def test_keys_of_a_put_are_not_its_own_victims():
    top, store, _ = two_tiers(capacity=4)
    put(top, [0, 1, 2, 3])
    top.get(np.array([1, 2, 3]))  # 0 is the least recent
    put(top, [0, 5], version=1)  # 0 is overwritten: 1, the next least recent, goes
    found, rows, _ = top.get(np.array([0, 1, 5]))
    assert found.tolist() == [True, False, True]
    assert np.array_equal(rows[0], rows_of([0], 1)[0])
    assert store.get(np.array([1]))[0].all()


def test_a_put_larger_than_the_tier_goes_down_in_chunks():
    top, store, chain = two_tiers(capacity=4)
    keys = np.arange(11)
    put(top, keys)
    assert top.stats().rows_held == 4
    found, rows, steps, _ = chain.fetch(keys)
    assert found.all() and np.array_equal(rows, rows_of(keys)) and np.array_equal(steps, keys)


def test_fetch_asks_each_tier_only_for_what_the_tiers_above_lacked():
    middle_store = HostTier(WIDTH, name="store")
    middle = HostTier(WIDTH, capacity_rows=8, below=middle_store, name="middle")
    top = HostTier(WIDTH, capacity_rows=8, below=middle)
    chain = TierChain([top, middle, middle_store])
    put(middle_store, [1, 2, 3, 4])
    put(middle, [2, 3], version=5)
    put(top, [3], version=9)
    found, rows, steps, source = chain.fetch(np.array([3, 2, 1, 7]))
    assert found.tolist() == [True, True, True, False]
    assert source.tolist() == [0, 1, 2, -1]
    assert steps.tolist() == [12, 7, 1, 0]
    assert np.array_equal(rows[:3], np.concatenate([rows_of([3], 9), rows_of([2], 5),
                                                    rows_of([1])]))
    assert [t.stats().gets for t in chain.tiers] == [4, 3, 2]
    chain.delete(np.array([2, 3]))
    assert chain.fetch(np.array([2, 3]))[0].tolist() == [False, False]
    assert list(chain.stats()) == ["host", "middle", "store"]
    empty = chain.fetch(np.empty(0, np.int64))
    assert [a.shape for a in empty] == [(0,), (0, WIDTH), (0,), (0,)]


def test_flush_carries_dirty_rows_to_the_bottom():
    store = HostTier(WIDTH, name="store")
    middle = HostTier(WIDTH, capacity_rows=8, below=store, name="middle")
    top = HostTier(WIDTH, capacity_rows=8, below=middle)
    chain = TierChain([top, middle, store])
    chain.write_back(np.arange(5), rows_of(np.arange(5), 2), np.arange(5))
    chain.flush()
    found, rows, _ = store.get(np.arange(5))
    assert found.all() and np.array_equal(rows, rows_of(np.arange(5), 2))
    assert (middle.stats().written_down, store.stats().puts) == (5, 5)


def test_chains_are_checked():
    store = HostTier(WIDTH, name="store")
    with pytest.raises(ValueError, match="must write down to the store tier"):
        TierChain([HostTier(WIDTH), store])
    with pytest.raises(ValueError, match="must write down to nothing"):
        TierChain([HostTier(WIDTH, below=store)])
    with pytest.raises(ValueError, match="distinct"):
        TierChain([HostTier(WIDTH), HostTier(WIDTH)])
    with pytest.raises(ValueError, match="width 4 cannot sit above the store tier of width 3"):
        HostTier(4, below=store)
    with pytest.raises(ValueError, match=r"rows of shape \(2, 3\)"):
        store.put(np.array([1, 2]), np.zeros((2, 4), np.float32), np.zeros(2))
    store.close()
    with pytest.raises(TierError, match="store tier is closed"):
        store.get(np.array([1]))


def test_concurrent_fetches_see_whole_rows():
    top, store, chain = two_tiers(capacity=64)
    keys = np.arange(512)
    errors = []

    def write():
        rng = np.random.default_rng(1)
        for _ in range(200):
            batch = rng.choice(keys, 32, replace=False)
            chain.write_back(batch, rows_of(batch), batch)

    def read():
        rng = np.random.default_rng(2)
        for _ in range(200):
            batch = rng.choice(keys, 32, replace=False)
            found, rows, steps, _ = chain.fetch(batch)
            if not (np.array_equal(rows[found], rows_of(batch[found]))
                    and np.array_equal(steps[found], batch[found])):
                errors.append(batch)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_packed_row_bytes():
    codec = RowCodec(2)
    values = codec.pack(np.array([[1.5, -2.0], [0.0, 3.25]], np.float32), np.array([7, -1]))
    assert values[0] == struct.pack("<qff", 7, 1.5, -2.0)
    assert values[1] == struct.pack("<qff", -1, 0.0, 3.25)
    found, rows, steps = codec.unpack([values[1], None, values[0]])
    assert found.tolist() == [True, False, True]
    assert rows.tolist() == [[0.0, 3.25], [0.0, 0.0], [1.5, -2.0]]
    assert steps.tolist() == [-1, 0, 7]
    with pytest.raises(ValueError, match="a stored row is 12 bytes long, not 16"):
        codec.unpack([values[0], values[0][:12]])
