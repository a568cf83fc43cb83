"""Distinct int64 keys -> slots ``0..capacity-1``, with free slots recycled: the index of
the keys a host or remote tier holds.

:class:`~mindrec.embedding.hash_index.HashIndex` is not used here: it admits and expires
keys, logs every removal for incremental export (kept until exported) and has a fixed
capacity; a tier needs none of that, and an unbounded tier needs to grow. Batch
operations are numba loops (:mod:`mindrec.embedding.cache.slot_kernels`).

Example::

    >>> slots = SlotMap(capacity=None)
    >>> slots.assign(np.array([10, 20, 30]))
    array([0, 1, 2])
    >>> slots.release(np.array([20, 99]))
    array([ 1, -1])
    >>> slots.lookup(np.array([30, 20]))
    array([ 2, -1])
"""
from __future__ import annotations

import numpy as np

from mindrec.embedding.hash_layout import EMPTY, RESERVED_KEYS

_MAX_LOAD = 0.5
_INITIAL_SLOTS = 1024


class SlotMap:
    """Keys to slots; a bounded map has ``capacity`` slots, an unbounded one grows.

    Args:
        capacity (int | None): slots, or None to grow as keys come.
    """

    def __init__(self, capacity: int | None):
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 or None, got {capacity}")
        self.bounded = capacity is not None
        self.capacity = int(capacity) if self.bounded else _INITIAL_SLOTS
        self._free = np.arange(self.capacity - 1, -1, -1, dtype=np.int64)  # a stack
        self._n_free = np.array([self.capacity], np.int64)
        self._slot_key = np.full(self.capacity, EMPTY, np.int64)
        self._buckets(_bucket_count(min(self.capacity, 1 << 16)))
        self._used = 0  # buckets holding a key or a tombstone

    def __len__(self) -> int:
        return self.capacity - int(self._n_free[0])

    @property
    def free(self) -> int:
        """Slots free now (an unbounded map grows beyond them)."""
        return int(self._n_free[0])

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 where absent (int64)."""
        keys = check_keys(keys)
        out = np.empty(len(keys), np.int64)
        _kernels().lookup(keys, out, self._keys, self._slots)
        return out

    def assign(self, keys: np.ndarray) -> np.ndarray:
        """Slots for ``keys`` (distinct): a held key keeps its slot, the others take
        free ones. A bounded map must have a free slot for each key."""
        keys = check_keys(keys)
        if len(keys) > self.free:
            if self.bounded:
                raise ValueError(f"{len(keys):,} keys may need slots but only "
                                 f"{self.free:,} of {self.capacity:,} are free")
            self._grow(len(self) + len(keys))
        self._reserve(len(keys))
        out = np.empty(len(keys), np.int64)
        self._used += _kernels().assign(keys, out, self._keys, self._slots, self._free,
                                        self._n_free, self._slot_key)
        return out

    def release(self, keys: np.ndarray) -> np.ndarray:
        """Remove ``keys``; returns the slots they had, -1 where absent."""
        keys = check_keys(keys)
        out = np.empty(len(keys), np.int64)
        _kernels().release(keys, out, self._keys, self._slots, self._free, self._n_free,
                           self._slot_key)
        return out

    def keys_at(self, slots: np.ndarray) -> np.ndarray:
        """The key held in each of ``slots`` (EMPTY where none)."""
        return self._slot_key[slots]

    def occupied(self) -> np.ndarray:
        """bool[capacity]: slots holding a key."""
        return self._slot_key != EMPTY

    def _grow(self, slots: int) -> None:
        """Room for ``slots`` slots at least (doubling); new slots are handed out in
        ascending order."""
        new = max(slots, 2 * self.capacity)
        n_free = self.free
        free = np.empty(new, np.int64)
        free[:new - self.capacity] = np.arange(new - 1, self.capacity - 1, -1)
        free[new - self.capacity:new - self.capacity + n_free] = self._free[:n_free]
        self._free = free
        self._n_free[0] = new - self.capacity + n_free
        self._slot_key = np.concatenate([self._slot_key,
                                         np.full(new - self.capacity, EMPTY, np.int64)])
        self.capacity = new

    def _buckets(self, n: int) -> None:
        self._keys = np.full(n, EMPTY, np.int64)
        self._slots = np.zeros(n, np.int64)

    def _reserve(self, incoming: int) -> None:
        """Rehash before ``incoming`` more keys could push the load past 50%."""
        if self._used + incoming <= _MAX_LOAD * len(self._keys):
            return
        old_keys, old_slots = self._keys, self._slots
        self._buckets(_bucket_count(len(self) + incoming))
        _kernels().rehash(old_keys, old_slots, self._keys, self._slots)
        self._used = len(self)


def check_keys(keys) -> np.ndarray:
    """``keys`` as a flat int64 array; integers other than the reserved -1 and -2."""
    keys = np.asarray(keys)
    if keys.dtype.kind not in "iu":
        raise TypeError(f"cache keys must be integers, got dtype {keys.dtype}")
    flat = np.ascontiguousarray(keys.reshape(-1), np.int64)
    from mindrec.embedding.hash_kernels import has_reserved
    if flat.size and has_reserved(flat):
        raise ValueError(f"keys {' and '.join(map(str, RESERVED_KEYS))} are reserved "
                         f"and cannot be cache keys")
    return flat


def _bucket_count(entries: int) -> int:
    return max(1024, 1 << int(np.ceil(np.log2(max(1, entries) / _MAX_LOAD))))


def _kernels():
    """The numba kernels, imported on first use (numba's import is not free)."""
    from mindrec.embedding.cache import slot_kernels
    return slot_kernels
