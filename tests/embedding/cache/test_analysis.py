"""Offline trace analysis against references: Belady's MIN (flat and step-pinned) against
an exhaustive search over every feasible schedule, the LRU miss-ratio curves against
simulation at every size, LRU and LFU against plain-Python caches, and hand cases."""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from functools import lru_cache
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindrec.embedding.cache.analysis import (KeyTrace, belady_hits, belady_step_hits,
                                              lru_miss_ratio_curve, lru_step_miss_ratio_curve,
                                              simulate, simulate_steps, summary)

CLASSIC = np.array([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5])  # OPT(3) faults 7, LRU(3) 10, LRU(4) 8


# -- references ------------------------------------------------------------------------------


def optimum(steps, capacity: int) -> int:
    """Most hits over every schedule: the cache after step t is any set holding the step's
    keys, drawn from the cache before it and the step, of at most ``capacity`` keys."""
    steps = [frozenset(s) for s in steps]

    @lru_cache(maxsize=None)
    def best(t: int, cache: frozenset) -> int:
        if t == len(steps):
            return 0
        need = steps[t]
        optional = sorted(cache - need)
        room = min(capacity - len(need), len(optional))
        return len(need & cache) + max(best(t + 1, need | frozenset(keep))
                                       for r in range(room + 1)
                                       for keep in combinations(optional, r))
    return best(0, frozenset())


def reference_lru(accesses, capacity: int) -> int:
    cache, hits = OrderedDict(), 0
    for key in accesses:
        if key in cache:
            hits += 1
            cache.move_to_end(key)
            continue
        if len(cache) == capacity:
            cache.popitem(last=False)
        cache[key] = None
    return hits


def reference_lfu(accesses, capacity: int) -> int:
    """Uses since entering, ties by last use; an evicted key starts again from zero."""
    uses, last, hits = {}, {}, 0
    for time, key in enumerate(accesses):
        if key in uses:
            hits += 1
        elif len(uses) == capacity:
            victim = min(uses, key=lambda k: (uses[k], last[k]))
            del uses[victim], last[victim]
        uses[key] = uses.get(key, 0) + 1
        last[key] = time
    return hits


def reference_steps(policy: str, steps, capacity: int) -> int:
    """A cache that makes each step's keys (ascending) resident together, evicting by
    (uses,) last use among keys not in the step."""
    cache, hits, time = {}, 0, 0  # key -> (uses since entering, last use)
    for step in steps:
        keys = sorted(set(step))
        hits += sum(key in cache for key in keys)
        fresh = [key for key in keys if key not in cache]
        while len(cache) + len(fresh) > capacity:
            others = [key for key in cache if key not in keys]
            del cache[min(others, key=lambda k: cache[k] if policy == "lfu" else cache[k][1])]
        for key in keys:
            cache[key] = (cache[key][0] + 1 if key in cache else 1, time)
            time += 1
    return hits


# -- strategies ------------------------------------------------------------------------------


@st.composite
def tiny_flat(draw):
    """Capacities 1-4, 3-6 distinct keys, length up to 12."""
    n_keys = draw(st.integers(3, 6))
    return draw(st.lists(st.integers(0, n_keys - 1), max_size=12)), draw(st.integers(1, 4))


@st.composite
def tiny_steps(draw):
    """Steps of up to ``capacity`` distinct keys (with repeats), 3-6 keys, at most 12."""
    capacity, n_keys = draw(st.integers(1, 4)), draw(st.integers(3, 6))
    steps, length = [], 0
    for _ in range(draw(st.integers(0, 8))):
        keys = draw(st.lists(st.integers(0, n_keys - 1), unique=True, max_size=capacity))
        step = keys + draw(st.lists(st.sampled_from(keys), max_size=2)) if keys else []
        if length + len(step) > 12:
            break
        steps.append(draw(st.permutations(step)))
        length += len(step)
    return steps, capacity


@st.composite
def steps_and_capacity(draw, n_keys: int = 12, max_steps: int = 30):
    steps = draw(st.lists(st.lists(st.integers(0, n_keys - 1), max_size=6), max_size=max_steps))
    largest = max((len(set(s)) for s in steps), default=0)
    return steps, max(1, largest) + draw(st.integers(0, 4))


def trace_of(steps) -> KeyTrace:
    return KeyTrace.from_steps([np.array(s, np.int64) for s in steps])


def flat(steps) -> np.ndarray:
    return np.array([k for s in steps for k in s], np.int64)


# -- Belady ----------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(case=tiny_flat())
def test_belady_is_the_exhaustive_optimum(case):
    accesses, capacity = case
    assert belady_hits(np.array(accesses, np.int64), capacity) == optimum(
        [[k] for k in accesses], capacity)


@settings(max_examples=400, deadline=None)
@given(case=tiny_steps())
def test_step_belady_is_the_exhaustive_optimum_with_pinning(case):
    steps, capacity = case
    assert belady_step_hits(trace_of(steps), capacity) == optimum(steps, capacity)


def test_pinning_lowers_the_optimum_below_flat_min():
    steps = [[1], [2, 3, 3], [1]]
    assert belady_hits(np.array([1, 2, 3, 1]), 2) == 1
    assert belady_step_hits(trace_of(steps), 2) == optimum(steps, 2) == 0


def test_belady_known_cases():
    assert belady_hits(CLASSIC, 3) == 12 - 7
    assert belady_hits(CLASSIC, 4) == 12 - 6
    assert belady_hits(CLASSIC, 5) == 12 - 5  # only first uses miss
    assert belady_hits(np.array([7, 7, 7]), 1) == 2
    assert belady_hits(np.empty(0, np.int64), 3) == 0


@settings(max_examples=150, deadline=None)
@given(case=steps_and_capacity())
def test_lru_and_lfu_never_beat_belady(case):
    steps, capacity = case
    trace, accesses = trace_of(steps), flat(steps)
    for policy in ("lru", "lfu"):
        assert simulate(policy, accesses, capacity) <= belady_hits(accesses, capacity)
        assert simulate_steps(policy, trace, capacity) <= belady_step_hits(trace, capacity)


# -- LRU and LFU -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(accesses=st.lists(st.integers(0, 15), max_size=80), capacity=st.integers(1, 8))
def test_flat_lru_and_lfu_match_the_references(accesses, capacity):
    keys = np.array(accesses, np.int64)
    assert simulate("lru", keys, capacity) == reference_lru(accesses, capacity)
    assert simulate("lfu", keys, capacity) == reference_lfu(accesses, capacity)


@settings(max_examples=200, deadline=None)
@given(case=steps_and_capacity())
def test_step_lru_and_lfu_match_the_reference(case):
    steps, capacity = case
    for policy in ("lru", "lfu"):
        assert simulate_steps(policy, trace_of(steps), capacity) == reference_steps(
            policy, steps, capacity)


def test_lfu_counts_reset_on_eviction():
    # With counts kept across evictions, key 2 (a 3rd use) would outrank 3 at the 11th
    # access and 3 would miss at the end: 5 hits instead of 6.
    accesses = [1, 1, 1, 2, 3, 3, 3, 3, 2, 1, 2, 3]
    assert simulate("lfu", np.array(accesses), 2) == reference_lfu(accesses, 2) == 6


def test_known_lru_and_lfu_cases():
    assert simulate("lru", CLASSIC, 3) == 12 - 10
    assert simulate("lru", CLASSIC, 4) == 12 - 8
    accesses = np.array([1, 1, 2, 3, 1])  # LRU evicts 1 for 3, LFU evicts 2
    assert (simulate("lru", accesses, 2), simulate("lfu", accesses, 2)) == (1, 2)


def test_step_victims_are_never_keys_of_the_step():
    # At step 2, key 5 is the least recent, but the step uses it: 7 goes instead.
    steps = [[5], [7], [3, 5], [5]]
    assert simulate_steps("lru", trace_of(steps), 2) == 2
    assert simulate("lru", flat(steps), 2) == 1  # one access at a time, 3 evicts 5
    # LFU: at step 3, 4 (2 uses) is below 9 (3 uses) but pinned: 9 goes for 6.
    steps = [[9], [9], [9, 4], [4, 4, 6], [4]]
    assert simulate_steps("lfu", trace_of(steps), 2) == 4
    assert simulate("lfu", np.array([9, 9, 9, 4, 4, 6, 4]), 2) == 3  # 6 evicts 4


# -- miss-ratio curves -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(accesses=st.lists(st.integers(0, 12), min_size=1, max_size=80))
def test_miss_ratio_curve_matches_lru_at_every_size(accesses):
    keys = np.array(accesses, np.int64)
    sizes = np.arange(1, len(set(accesses)) + 3)
    expected = [1 - simulate("lru", keys, s) / len(keys) for s in sizes]
    np.testing.assert_allclose(lru_miss_ratio_curve(keys, sizes), expected, rtol=0, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(case=steps_and_capacity())
def test_step_miss_ratio_curve_matches_step_lru_at_every_size(case):
    steps, smallest = case
    trace = trace_of(steps)
    n = sum(len(set(s)) for s in steps)
    if n == 0:
        return
    sizes = np.arange(smallest, len(set(flat(steps))) + 3)
    expected = [1 - simulate_steps("lru", trace, s) / n for s in sizes]
    np.testing.assert_allclose(lru_step_miss_ratio_curve(trace, sizes), expected, rtol=0,
                               atol=1e-12)


def test_known_miss_ratio_curve():
    np.testing.assert_allclose(lru_miss_ratio_curve(CLASSIC, [1, 3, 4, 5, 100]),
                               [1.0, 10 / 12, 8 / 12, 5 / 12, 5 / 12])


# -- arguments ------------------------------------------------------------------------------


def test_sizes_too_small_for_a_step_name_the_step():
    trace = trace_of([[1], [2, 3, 2, 4]])
    for call in (lambda: simulate_steps("lru", trace, 2), lambda: belady_step_hits(trace, 2),
                 lambda: lru_step_miss_ratio_curve(trace, [3, 2])):
        with pytest.raises(ValueError, match="3 distinct keys of step 1"):
            call()
    with pytest.raises(ValueError, match="capacity 0 is too small: a cache must hold 1 key"):
        simulate("lru", np.array([1]), 0)
    with pytest.raises(ValueError, match="unknown cache policy 'fifo'"):
        simulate("fifo", np.array([1]), 1)
    with pytest.raises(ValueError, match="no accesses"):
        lru_miss_ratio_curve(np.empty(0, np.int64), [1])


# -- summary ---------------------------------------------------------------------------------


def test_summary_gathers_the_replays():
    rng = np.random.default_rng(5)
    steps = [rng.zipf(1.5, 40) % 200 for _ in range(30)]
    trace, accesses = trace_of(steps), flat(steps)
    report = json.loads(json.dumps(summary(trace, 45, [45, 100])))
    n_step_keys = sum(len(set(s)) for s in steps)
    assert (report["lookups"], report["step_keys"]) == (len(accesses), n_step_keys)
    assert report["per_lookup"]["belady"] == belady_hits(accesses, 45) / len(accesses)
    assert report["per_step_key"]["lfu"] == simulate_steps("lfu", trace, 45) / n_step_keys
    for rates in (report["per_lookup"], report["per_step_key"]):
        assert rates["lru_of_belady"] == pytest.approx(rates["lru"] / rates["belady"])
        assert 0 < rates["lru_of_belady"] <= 1 and 0 < rates["lfu_of_belady"] <= 1
    assert report["lru_miss_ratio"]["per_step_key"] == lru_step_miss_ratio_curve(
        trace, [45, 100]).tolist()


def test_summary_without_belady_hits_rates_every_policy_optimal():
    rates = summary(trace_of([[1, 2], [3, 4]]), 2, [2])["per_step_key"]
    assert (rates["belady"], rates["lru_of_belady"], rates["lfu_of_belady"]) == (0, 1.0, 1.0)
    with pytest.raises(ValueError, match="no lookups"):
        summary(trace_of([]), 2, [2])


# -- traces ----------------------------------------------------------------------------------


def test_trace_round_trip(tmp_path):
    trace = KeyTrace.from_steps([np.array([[3, 3], [1 << 40, -5]]), np.array([], np.int64),
                                 np.array([7])])
    trace.save(tmp_path / "trace.npz")
    loaded = KeyTrace.load(tmp_path / "trace.npz")
    np.testing.assert_array_equal(loaded.keys, [3, 3, 1 << 40, -5, 7])
    np.testing.assert_array_equal(loaded.offsets, [0, 4, 4, 5])
    assert (loaded.n_steps, len(loaded.step(1)), loaded.step(2).tolist()) == (3, 0, [7])
    assert [p.name for p in tmp_path.iterdir()] == ["trace.npz"]  # no temporary left


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing_offsets", "bad_offsets"])
def test_damaged_trace_names_the_file(tmp_path, damage):
    path = tmp_path / "trace.npz"
    trace_of([[1, 2, 3]] * 50).save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "garbage":
        path.write_bytes(b"not a trace at all" * 20)
    elif damage == "missing_offsets":
        np.savez(path, keys=np.arange(3))
    else:
        np.savez(path, keys=np.arange(3), offsets=np.array([0, 2]))
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable key trace")):
        KeyTrace.load(path)


def test_trace_offsets_are_checked():
    with pytest.raises(ValueError, match="decreasing"):
        KeyTrace(np.arange(4), np.array([0, 3, 2, 4]))
    with pytest.raises(ValueError, match="from 0 to the 4 keys"):
        KeyTrace(np.arange(4), np.array([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        KeyTrace(np.ones(2), np.array([0, 2]))
