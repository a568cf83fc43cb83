"""numba kernels of :class:`mindrec.embedding.cache.slot_map.SlotMap`: an open-addressing
table (linear probing, tombstones) from int64 keys to the buckets' slots.

Buckets: ``keys`` (EMPTY, DELETED or a key) and ``slots``. Compiled code is cached on
disk by numba (``cache=True``); the markers come from
:mod:`mindrec.embedding.hash_layout` (touch this file if they change).
"""
from __future__ import annotations

import numba
import numpy as np

from mindrec.embedding.hash_layout import DELETED, EMPTY


@numba.njit(cache=True, inline="always")
def _bucket(key, mask):
    """A bucket from the key's bits (the 64-bit finaliser of MurmurHash3)."""
    x = np.uint64(key)
    x = (x ^ (x >> np.uint64(33))) * np.uint64(0xFF51AFD7ED558CCD)
    x = (x ^ (x >> np.uint64(33))) * np.uint64(0xC4CEB9FE1A85EC53)
    return np.int64((x ^ (x >> np.uint64(33))) & np.uint64(mask))


@numba.njit(cache=True, inline="always")
def _probe(keys, key):
    """The bucket holding ``key``, or ``-(bucket to insert it at) - 1``."""
    mask = len(keys) - 1
    pos = _bucket(key, mask)
    tombstone = -1
    while True:
        k = keys[pos]
        if k == key:
            return pos
        if k == EMPTY:
            return -(tombstone if tombstone >= 0 else pos) - 1
        if k == DELETED and tombstone < 0:
            tombstone = pos
        pos = (pos + 1) & mask


@numba.njit(cache=True)
def lookup(flat, out, keys, slots):
    for i in range(len(flat)):
        pos = _probe(keys, flat[i])
        out[i] = slots[pos] if pos >= 0 else -1


@numba.njit(cache=True)
def assign(flat, out, keys, slots, free, n_free, slot_key):
    """Give each absent key the next free slot (a key already held keeps its slot);
    returns how many empty (never used) buckets were filled."""
    filled = 0
    for i in range(len(flat)):
        key = flat[i]
        pos = _probe(keys, key)
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
        pos = _probe(keys, flat[i])
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
        pos = _bucket(key, mask)
        while keys[pos] != EMPTY:
            pos = (pos + 1) & mask
        keys[pos] = key
        slots[pos] = old_slots[i]
