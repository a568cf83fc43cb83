"""SlotMap against a dict, bounded and growing, through enough keys to rehash."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindrec.embedding.cache.slot_map import SlotMap, check_keys


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.booleans(), st.lists(st.integers(-50, 50).filter(
    lambda k: k not in (-1, -2)), unique=True)), max_size=30))
def test_slot_map_matches_a_dict(ops):
    slots, reference = SlotMap(None), {}
    for assign, keys in ops:
        keys = np.array(keys, np.int64)
        if assign:
            got = slots.assign(keys)
            for key, slot in zip(keys.tolist(), got.tolist()):
                assert reference.setdefault(key, slot) == slot
        else:
            got = slots.release(keys)
            assert got.tolist() == [reference.pop(k, -1) for k in keys.tolist()]
        assert len(slots) == len(reference)
        assert len(set(reference.values())) == len(reference)  # distinct slots
    probe = np.arange(-50, 51)
    probe = probe[(probe != -1) & (probe != -2)]
    assert slots.lookup(probe).tolist() == [reference.get(k, -1) for k in probe.tolist()]
    held = sorted(reference.values())
    assert np.flatnonzero(slots.occupied()).tolist() == held
    assert slots.keys_at(np.array(held, np.int64)).tolist() == sorted(
        reference, key=reference.get)


def test_growth_and_rehash_keep_every_slot():
    rng = np.random.default_rng(0)
    keys = rng.choice(1 << 40, 20_000, replace=False).astype(np.int64) - (1 << 39)
    keys = keys[(keys != -1) & (keys != -2)]
    slots = SlotMap(None)
    first = np.concatenate([slots.assign(part) for part in np.array_split(keys, 7)])
    assert sorted(first.tolist()) == list(range(len(keys)))  # handed out densely
    slots.release(keys[::2])
    assert (slots.lookup(keys[::2]) == -1).all()
    assert (slots.lookup(keys[1::2]) == first[1::2]).all()
    again = slots.assign(keys[::2])  # recycled slots first
    assert sorted(again.tolist()) == sorted(first[::2].tolist())


def test_bounded_map_refuses_more_keys_than_free_slots():
    slots = SlotMap(3)
    slots.assign(np.array([1, 2]))
    with pytest.raises(ValueError, match="2 keys may need slots but only 1 of 3 are free"):
        slots.assign(np.array([3, 4]))


def test_reserved_and_non_integer_keys_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        check_keys(np.array([5, -2]))
    with pytest.raises(TypeError, match="integers"):
        check_keys(np.array([1.5]))
