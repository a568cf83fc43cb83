"""The CPU hash embedding against a plain-Python model on random operation sequences:
admission after exactly N hits, eviction after exactly N idle steps, erase,
re-admission, full tables, int64 keys beyond 2^31, export/import round trips."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hash_model import ModelTable
from mindrec.embedding.hash import HashEmbedding, TableDelta
from mindrec.embedding.hash_index import HashIndex

ms.set_device("CPU")

DIM = 2
FILL = 0.5
# Small and large keys, negative ones, and int64 keys beyond 2^31.
KEYS = [0, 1, 2, 3, 7, -7, 2**31 + 5, 2**40 + 1, 2**62 + 3, -(2**50)]

keys_st = st.lists(st.sampled_from(KEYS), min_size=0, max_size=8)
op_st = st.one_of(
    st.tuples(st.just("hit"), keys_st),
    st.tuples(st.just("advance")),
    st.tuples(st.just("put"), keys_st),
    st.tuples(st.just("erase"), keys_st),
    st.tuples(st.just("export")),
)


def table_of(capacity, permit, evict) -> HashEmbedding:
    return HashEmbedding(HashIndex(capacity, permit, evict), DIM, default_value=FILL)


def assert_same(table: HashEmbedding, model: ModelTable) -> None:
    live = model.live()
    assert len(table) == len(live)
    assert sorted(table.keys().tolist()) == sorted(live)
    got = dict(zip(table.keys().tolist(), map(tuple, table.values().tolist())))
    assert got == live  # rows are float32 values on both sides: exact
    pool = np.array(KEYS, np.int64)
    np.testing.assert_allclose(table.get(pool), [model.get(k) for k in KEYS])
    stats = table.index.stats()
    assert (stats.admitted, stats.evicted, stats.erased, stats.rejected_full, stats.candidates) == (
        model.admitted, model.evicted, model.erased, model.rejected_full, model.candidates)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity=st.integers(1, 5), permit=st.integers(1, 3),
       evict=st.one_of(st.none(), st.integers(1, 3)),
       ops=st.lists(op_st, max_size=30), seed=st.integers(0, 2**16))
def test_random_operations_match_the_model(tmp_path_factory, capacity, permit, evict, ops, seed):
    rng = np.random.default_rng(seed)
    table, model = table_of(capacity, permit, evict), ModelTable(capacity, permit, evict, FILL, DIM)
    replica = table_of(capacity, permit, evict)
    delta_path = tmp_path_factory.mktemp("delta") / "delta.npz"
    for op, *args in ops:
        if op == "hit":
            slots, _ = table.index.train_lookup(np.array(args[0], np.int64))
            assert (slots > 0).tolist() == model.hit(args[0])
        elif op == "advance":
            table.index.advance()
            model.advance()
        elif op == "put":
            keys = list(dict.fromkeys(args[0]))
            if model.free_slots_needed(keys) > capacity - len(model.live()):
                continue  # a put that overflows is an error (tested apart)
            rows = rng.normal(size=(len(keys), DIM)).astype(np.float32)
            table.put(np.array(keys, np.int64), rows)
            model.put(keys, [tuple(r) for r in rows.tolist()])
        elif op == "erase":
            table.erase(np.array(args[0], np.int64))
            model.erase(args[0])
        else:
            table.export_delta().save(delta_path)
            replica.apply_delta(TableDelta.load(delta_path))
            assert dict(zip(replica.keys().tolist(), map(tuple, replica.values().tolist()))) == \
                model.live()
        assert_same(table, model)


def test_admission_after_exactly_permit_hits_in_distinct_steps():
    index = HashIndex(capacity=10, permit_filter_value=3)
    for step in range(3):
        slots, fresh = index.train_lookup(np.array([42, 42, 42]))  # one hit per step
        assert (slots > 0).all() == (step == 2)
        assert len(fresh) == (1 if step == 2 else 0)
        index.advance()


def test_eviction_after_exactly_evict_idle_steps():
    index = HashIndex(capacity=10, evict_filter_value=2)
    index.train_lookup(np.array([5]))
    for _ in range(3):  # hit at step 0; steps 1 and 2 idle; gone from step 3
        assert len(index) == 1
        index.advance()
    assert len(index) == 0 and index.lookup(np.array([5]))[0] == 0
    assert index.stats().evicted == 1


def test_recycled_slot_starts_from_a_fresh_row():
    table = HashEmbedding(HashIndex(1, 1, 1), DIM, default_value="zeros")
    table.put(np.array([1]), np.full((1, DIM), 9.0, np.float32))
    table.index.advance(); table.index.advance()  # key 1 evicted
    slots, _ = table.index.train_lookup(np.array([2]))
    assert slots[0] == 1  # the same slot, reused
    np.testing.assert_array_equal(table.get(np.array([2])), np.zeros((1, DIM)))


@pytest.mark.parametrize("key", [-1, -2])
def test_reserved_keys_are_rejected(key):
    table = table_of(4, 1, None)
    for call in (lambda k: table.index.train_lookup(k), table.get, table.erase,
                 lambda k: table.put(k, np.zeros((len(k), DIM)))):
        with pytest.raises(ValueError, match="reserved"):
            call(np.array([3, key]))


def test_int32_tables_reject_keys_that_do_not_fit():
    index = HashIndex(4, key_dtype=np.int32)
    with pytest.raises(ValueError, match="int32"):
        index.train_lookup(np.array([2**31], np.int64))
    index.train_lookup(np.array([2**31 - 1, -(2**31)], np.int64))
    assert index.items()[0].dtype == np.int32 and len(index) == 2


def test_bad_puts_are_errors_that_change_nothing():
    table = table_of(2, 1, None)
    table.put(np.array([1]), np.ones((1, DIM)))
    for keys, rows, error, match in (
            ([2, 3], np.zeros((2, DIM)), RuntimeError, "full"),
            ([2], np.zeros((2, DIM)), ValueError, "1 keys but 2 rows"),
            ([2, 2], np.zeros((2, DIM)), ValueError, "repeat")):
        with pytest.raises(error, match=match):
            table.put(np.array(keys), rows)
        assert table.keys().tolist() == [1] and len(table.index.items()[0]) == 1
    table.put(np.array([1, 2]), np.full((2, DIM), 3.0))  # an update and one new row fit
    np.testing.assert_array_equal(table.get(np.array([1, 2])), np.full((2, DIM), 3.0))


def test_clear_removes_rows_and_candidates():
    table = table_of(4, 2, None)
    table.put(np.array([1]), np.ones((1, DIM)))
    table.index.train_lookup(np.array([5]))  # a candidate with one hit
    table.index.clear()
    assert len(table) == 0 and table.index.stats().candidates == 0


@pytest.mark.parametrize("value, expected", [("zeros", 0.0), ("ones", 1.0), (2.5, 2.5),
                                             ("normal", 0.0)])
def test_keys_without_a_row_read_the_default(value, expected):
    table = HashEmbedding(HashIndex(4, permit_filter_value=2), DIM, default_value=value)
    table.index.train_lookup(np.array([8]))  # a candidate, not admitted
    np.testing.assert_array_equal(table.get(np.array([8, 9])), np.full((2, DIM), expected))


def test_normal_rows_are_drawn_with_init_std():
    table = HashEmbedding(HashIndex(4000), 16, default_value="normal", init_std=0.05)
    table.index.train_lookup(np.arange(4000))
    assert table.values().std() == pytest.approx(0.05, rel=0.05)


def test_bad_default_value_is_named():
    with pytest.raises(ValueError, match="default_value 'uniform'"):
        table_of(4, 1, None).__class__(HashIndex(4), DIM, default_value="uniform")


def test_full_delta_rebuilds_a_table_and_gaps_are_refused(tmp_path):
    source = table_of(8, 1, None)
    source.put(np.array([1, 2, 3]), np.arange(3 * DIM, dtype=np.float32).reshape(3, DIM))
    first = source.export_delta()
    source.erase(np.array([2]))
    source.put(np.array([4]), np.ones((1, DIM), np.float32))
    second = source.export_delta()
    assert second.removed_keys.tolist() == [2] and second.keys.tolist() == [4]

    late = table_of(8, 1, None)
    with pytest.raises(ValueError, match="does not follow"):
        late.apply_delta(second)
    full = source.export_delta(full=True)
    late.put(np.array([99]), np.zeros((1, DIM)))  # replaced by the full delta
    late.apply_delta(full)
    assert sorted(late.keys().tolist()) == [1, 3, 4]
    np.testing.assert_array_equal(late.get(np.array([1, 3, 4])), source.get(np.array([1, 3, 4])))
    assert first.sequence == 1 and full.sequence == 3


def test_damaged_delta_file_is_named(tmp_path):
    path = tmp_path / "delta.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="delta.npz"):
        TableDelta.load(path)


def test_index_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    a = HashIndex(50, permit_filter_value=2, evict_filter_value=3)
    for _ in range(6):
        a.train_lookup(rng.integers(0, 80, 30)); a.advance()
    b = HashIndex(50, permit_filter_value=2, evict_filter_value=3)
    b.load_state(a.state())
    for _ in range(6):  # both continue from the same state the same way
        keys = rng.integers(0, 80, 30)
        np.testing.assert_array_equal(a.train_lookup(keys)[0], b.train_lookup(keys)[0])
        a.advance(); b.advance()
    assert a.stats() == b.stats()
    with pytest.raises(ValueError, match="capacity"):
        HashIndex(10).load_state(a.state())


def test_deltas_bring_a_table_in_another_process_to_the_same_state(tmp_path):
    import subprocess
    import sys
    source = table_of(64, 1, 2)
    rng = np.random.default_rng(5)
    paths = []
    for step in range(6):  # admissions, updates, evictions between exports
        source.index.train_lookup(rng.integers(0, 30, 6))
        source.put(np.array([100 + step]), rng.normal(size=(1, DIM)).astype(np.float32))
        source.index.advance()
        if step % 2:
            paths.append(tmp_path / f"delta-{step}.npz")
            source.export_delta().save(paths[-1])
    assert source.index.stats().evicted > 0
    out = tmp_path / "replica.npz"
    script = (
        "import sys, numpy as np, mindspore as ms\n"
        "ms.set_device('CPU')\n"
        "from mindrec.embedding.hash import HashEmbedding, TableDelta\n"
        "from mindrec.embedding.hash_index import HashIndex\n"
        f"table = HashEmbedding(HashIndex(64), {DIM}, default_value={FILL})\n"
        "for path in sys.argv[2:]:\n"
        "    table.apply_delta(TableDelta.load(path))\n"
        "np.savez(sys.argv[1], keys=table.keys(), values=table.values())\n")
    subprocess.run([sys.executable, "-c", script, str(out), *map(str, paths)], check=True,
                   timeout=120, capture_output=True)
    replica = np.load(out)
    assert dict(zip(replica["keys"].tolist(), map(tuple, replica["values"].tolist()))) == \
        dict(zip(source.keys().tolist(), map(tuple, source.values().tolist())))


def test_a_delta_that_does_not_fit_changes_nothing():
    source = table_of(8, 1, None)
    source.put(np.array([1, 2, 3]), np.ones((3, DIM)))
    delta = source.export_delta()
    small = table_of(2, 1, None)
    small.put(np.array([9]), np.zeros((1, DIM)))
    with pytest.raises(RuntimeError, match="full"):
        small.apply_delta(delta)
    assert small.keys().tolist() == [9] and small.index.delta_sequence == 0
