"""numba kernels of :class:`mindrec.embedding.hash_index.HashIndex`: one compiled loop
per batch operation over the bucket arrays.

Buckets: ``keys`` (EMPTY, DELETED or a key), ``slot`` (0 = candidate), ``count`` (steps
seen), ``last`` (last step seen). ``counters`` indexed by the names of
:mod:`mindrec.embedding.hash_layout`.
Compiled code is cached on disk by numba (``cache=True``).
"""
from __future__ import annotations

import numba
import numpy as np

from mindrec.embedding.hash_layout import (ADMITTED, DEFAULT_LOOKUPS, DELETED, EMPTY, ERASED,
                                           EVICTED, LIVE_ENTRIES, LOOKUPS, REJECTED_FULL,
                                           REMOVED_LENGTH, USED_BUCKETS)


@numba.njit(cache=True, inline="always")
def bucket(key, mask):
    """The home bucket of ``key`` in a table of ``mask + 1`` buckets (the 64-bit
    finaliser of MurmurHash3)."""
    x = np.uint64(key)
    x = (x ^ (x >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
    x = (x ^ (x >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
    return np.int64((x ^ (x >> np.uint64(33))) & np.uint64(mask))


@numba.njit(cache=True, inline="always")
def find(keys, key):
    """Bucket of ``key``, or ``-(insert position) - 1`` when absent."""
    mask = len(keys) - 1
    pos = bucket(key, mask)
    first_deleted = -1
    while True:
        k = keys[pos]
        if k == key:
            return pos
        if k == EMPTY:
            return -(first_deleted if first_deleted >= 0 else pos) - 1
        if k == DELETED and first_deleted < 0:
            first_deleted = pos
        pos = (pos + 1) & mask


@numba.njit(cache=True)
def has_reserved(flat):
    for k in flat:
        if k == EMPTY or k == DELETED:
            return True
    return False


@numba.njit(cache=True)
def _remove(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters):
    """Delete bucket ``pos``; free its row and log the key if it had one."""
    s = slot[pos]
    if s > 0:
        free[n_free[0]] = s
        n_free[0] += 1
        slot_key[s] = EMPTY
        dirty[s] = 0
        removed[counters[REMOVED_LENGTH]] = keys[pos]
        counters[REMOVED_LENGTH] += 1
    keys[pos] = DELETED
    slot[pos] = 0
    counters[LIVE_ENTRIES] -= 1


@numba.njit(cache=True)
def _evict(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters):
    """Remove an idle bucket, counting it as an eviction if it held a row."""
    if slot[pos] > 0:
        counters[EVICTED] += 1
    _remove(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters)


@numba.njit(cache=True)
def _admit(pos, keys, slot, free, n_free, slot_key, dirty, counters):
    """Give bucket ``pos`` a free slot; return it, or 0 when none is free."""
    if n_free[0] == 0:
        counters[REJECTED_FULL] += 1
        return 0
    n_free[0] -= 1
    s = free[n_free[0]]
    slot[pos] = s
    slot_key[s] = keys[pos]
    dirty[s] = 1
    counters[ADMITTED] += 1
    return s


# train_lookup and insert share their first steps (find, evict if idle, create) written
# out in each loop: moving them into one helper (inlined or not) measured 4x slower in
# bench/micro/bench_hash.py (train_lookup 1.6 -> 7-10 ms, insert 126 -> 325-550 ms).
@numba.njit(cache=True)
def train_lookup(flat, out, fresh, keys, slot, count, last, free, n_free, slot_key, dirty,
                  removed, counters, step, permit, evict_after):
    n_fresh = 0
    for i in range(len(flat)):
        key = flat[i]
        pos = find(keys, key)
        if pos >= 0 and step - last[pos] > evict_after:
            _evict(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters)
            pos = find(keys, key)
        if pos < 0:
            pos = -pos - 1
            if keys[pos] == EMPTY:
                counters[USED_BUCKETS] += 1
            keys[pos] = key
            slot[pos] = 0
            count[pos] = 1
            last[pos] = step
            counters[LIVE_ENTRIES] += 1
        elif last[pos] != step:
            if count[pos] < permit:
                count[pos] += 1
            last[pos] = step
        s = slot[pos]
        if s == 0 and count[pos] >= permit:
            s = _admit(pos, keys, slot, free, n_free, slot_key, dirty, counters)
            if s > 0:
                fresh[n_fresh] = s
                n_fresh += 1
        if s > 0:
            dirty[s] = 1
        else:
            counters[DEFAULT_LOOKUPS] += 1
        out[i] = s
    counters[LOOKUPS] += len(flat)
    return n_fresh


@numba.njit(cache=True)
def lookup(flat, out, keys, slot, last, step, evict_after):
    for i in range(len(flat)):
        pos = find(keys, flat[i])
        out[i] = slot[pos] if pos >= 0 and step - last[pos] <= evict_after else 0


@numba.njit(cache=True)
def insert(flat, out, fresh, keys, slot, count, last, free, n_free, slot_key, dirty,
            removed, counters, step, evict_after):
    n_fresh = 0
    for i in range(len(flat)):
        key = flat[i]
        pos = find(keys, key)
        if pos >= 0 and step - last[pos] > evict_after:
            _evict(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters)
            pos = find(keys, key)
        if pos < 0:
            pos = -pos - 1
            if keys[pos] == EMPTY:
                counters[USED_BUCKETS] += 1
            keys[pos] = key
            slot[pos] = 0
            count[pos] = 0
            counters[LIVE_ENTRIES] += 1
        last[pos] = step
        s = slot[pos]
        if s == 0:
            s = _admit(pos, keys, slot, free, n_free, slot_key, dirty, counters)
            if s > 0:
                fresh[n_fresh] = s
                n_fresh += 1
        else:
            dirty[s] = 1
        out[i] = s
    return n_fresh


@numba.njit(cache=True)
def erase(flat, keys, slot, last, free, n_free, slot_key, dirty, removed, counters, step,
           evict_after):
    for key in flat:
        pos = find(keys, key)
        if pos >= 0 and step - last[pos] > evict_after:
            _evict(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters)
        elif pos >= 0:
            if slot[pos] > 0:
                counters[ERASED] += 1
            _remove(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters)


@numba.njit(cache=True)
def sweep(keys, slot, last, free, n_free, slot_key, dirty, removed, counters, step,
           evict_after):
    for pos in range(len(keys)):
        if keys[pos] >= 0 or keys[pos] < DELETED:
            if step - last[pos] > evict_after:
                _evict(pos, keys, slot, free, n_free, slot_key, dirty, removed, counters)


@numba.njit(cache=True)
def rehash(old_keys, old_slot, old_count, old_last, keys, slot, count, last):
    mask = len(keys) - 1
    for i in range(len(old_keys)):
        key = old_keys[i]
        if key == EMPTY or key == DELETED:
            continue
        pos = bucket(key, mask)
        while keys[pos] != EMPTY:
            pos = (pos + 1) & mask
        keys[pos] = key
        slot[pos] = old_slot[i]
        count[pos] = old_count[i]
        last[pos] = old_last[i]


@numba.njit(cache=True)
def peek(flat, out_slot, out_count, out_last, keys, slot, count, last, step, evict_after):
    """Slot, hit count and last step of each key (0, 0, -1 when absent or expired)."""
    for i in range(len(flat)):
        pos = find(keys, flat[i])
        if pos >= 0 and step - last[pos] <= evict_after:
            out_slot[i] = slot[pos]
            out_count[i] = count[pos]
            out_last[i] = last[pos]
        else:
            out_slot[i] = 0
            out_count[i] = 0
            out_last[i] = -1


@numba.njit(cache=True)
def set_last(flat, values, keys, last):
    """Set the last step of keys the index holds."""
    for i in range(len(flat)):
        pos = find(keys, flat[i])
        if pos >= 0:
            last[pos] = values[i]
