"""numba kernels of :class:`mindrec.embedding.cache.slot_map.SlotMap`: an open-addressing
table (linear probing, tombstones) from int64 keys to the buckets' slots, probed as the
hash index probes (:func:`mindrec.embedding.hash_kernels.find`).

Buckets: ``keys`` (EMPTY, DELETED or a key) and ``slots``. Compiled code is cached on
disk by numba (``cache=True``); the markers come from
:mod:`mindrec.embedding.hash_layout` (touch this file if they change).
"""
from __future__ import annotations

import numba

from mindrec.embedding.hash_kernels import bucket, find
from mindrec.embedding.hash_layout import DELETED, EMPTY


@numba.njit(cache=True)
def lookup(flat, out, keys, slots):
    for i in range(len(flat)):
        pos = find(keys, flat[i])
        out[i] = slots[pos] if pos >= 0 else -1


@numba.njit(cache=True)
def assign(flat, out, keys, slots, free, n_free, slot_key):
    """Give each absent key the next free slot (a key already held keeps its slot);
    returns how many empty (never used) buckets were filled."""
    filled = 0
    for i in range(len(flat)):
        key = flat[i]
        pos = find(keys, key)
        if pos >= 0:
            out[i] = slots[pos]
            continue
        pos = -pos - 1
        if keys[pos] == EMPTY:
            filled += 1
        n_free[0] -= 1
        s = free[n_free[0]]
        keys[pos] = key
        slots[pos] = s
        slot_key[s] = key
        out[i] = s
    return filled


@numba.njit(cache=True)
def release(flat, out, keys, slots, free, n_free, slot_key):
    for i in range(len(flat)):
        pos = find(keys, flat[i])
        if pos < 0:
            out[i] = -1
            continue
        s = slots[pos]
        keys[pos] = DELETED
        free[n_free[0]] = s
        n_free[0] += 1
        slot_key[s] = EMPTY
        out[i] = s


@numba.njit(cache=True)
def rehash(old_keys, old_slots, keys, slots):
    mask = len(keys) - 1
    for i in range(len(old_keys)):
        key = old_keys[i]
        if key == EMPTY or key == DELETED:
            continue
        pos = bucket(key, mask)
        while keys[pos] != EMPTY:
            pos = (pos + 1) & mask
        keys[pos] = key
        slots[pos] = old_slots[i]
