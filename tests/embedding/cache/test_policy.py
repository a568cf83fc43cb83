"""LRU and LFU against a plain-Python reference, over random sequences of uses,
clears and victim choices (ties included: several slots share a step)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindrec.embedding.cache.errors import CapacityError
from mindrec.embedding.cache.policy import LFU, LRU, by_name


class Reference:
    """The policies as written in the docs: sort by (uses,) last use, then slot."""

    def __init__(self, name: str, n: int):
        self.name, self.last, self.uses = name, [0] * n, [0] * n

    def touch(self, slots, step):
        for s in slots:
            self.last[s] = step
            self.uses[s] += 1

    def clear(self, slots):
        for s in slots:
            self.last[s], self.uses[s] = 0, 0

    def victims(self, count, pinned, occupied):
        candidates = [s for s in range(len(self.last)) if occupied[s] and not pinned[s]]
        if len(candidates) < count:
            return None
        if self.name == "lru":
            order = sorted(candidates, key=lambda s: (self.last[s], s))
        else:
            order = sorted(candidates, key=lambda s: (self.uses[s], self.last[s], s))
        return sorted(order[:count])


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 12))
    subsets = st.lists(st.integers(0, n - 1), unique=True)
    ops = draw(st.lists(st.one_of(
        st.tuples(st.just("touch"), subsets, st.integers(0, 2)),
        st.tuples(st.just("clear"), subsets),
        st.tuples(st.just("victims"), st.integers(0, n + 1),
                  st.lists(st.booleans(), min_size=n, max_size=n),
                  st.lists(st.booleans(), min_size=n, max_size=n))), max_size=40))
    return n, ops


@pytest.mark.parametrize("name", ["lru", "lfu"])
@settings(max_examples=300, deadline=None)
@given(scenario=scenarios())
def test_policy_matches_the_reference(name, scenario):
    n, ops = scenario
    policy, reference = by_name(name, n), Reference(name, n)
    step = 0
    for op in ops:
        if op[0] == "touch":
            step += op[2]  # 0: the same step again, a tie
            policy.touch(np.array(op[1], np.int64), step)
            reference.touch(op[1], step)
        elif op[0] == "clear":
            policy.clear(np.array(op[1], np.int64))
            reference.clear(op[1])
        else:
            count, pinned, occupied = op[1], np.array(op[2]), np.array(op[3])
            expected = reference.victims(count, pinned, occupied)
            if expected is None:
                with pytest.raises(CapacityError):
                    policy.victims(count, pinned=pinned, occupied=occupied)
            else:
                got = policy.victims(count, pinned=pinned, occupied=occupied)
                assert got.dtype == np.int64
                assert got.tolist() == expected


def test_lfu_prefers_rarely_used_then_least_recent():
    policy = LFU(4)
    policy.touch(np.array([0, 1, 2, 3]), 1)
    policy.touch(np.array([0, 1]), 2)
    policy.touch(np.array([3]), 3)  # 3: two uses, recent; 2: one use
    assert policy.victims(1, None, np.ones(4, bool)).tolist() == [2]
    policy.clear(np.array([0]))  # refilled: its count starts again
    policy.touch(np.array([0]), 4)
    assert policy.victims(2, None, np.ones(4, bool)).tolist() == [0, 2]


def test_too_few_unpinned_slots_is_an_error_naming_the_pinned():
    policy = LRU(5)
    occupied = np.array([True, True, True, False, True])
    pinned = np.array([True, False, True, False, False])
    with pytest.raises(CapacityError, match=r"3 victims wanted but only 2 of 4 occupied "
                                            r"slots are unpinned \(2 pinned\)"):
        policy.victims(3, pinned=pinned, occupied=occupied)
    assert policy.victims(0, pinned=pinned, occupied=occupied).size == 0


def test_masks_and_names_are_checked():
    with pytest.raises(ValueError, match="shape"):
        LRU(3).victims(1, None, np.ones(4, bool))
    with pytest.raises(ValueError, match="unknown cache policy 'fifo'"):
        by_name("fifo", 3)
    with pytest.raises(ValueError, match="at least one slot"):
        LRU(0)
