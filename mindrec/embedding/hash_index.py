"""Host-side key -> slot index of a dynamic hash embedding (no MindSpore here).

Semantics (the MapParameter ones, FACTS.md), with the training step counter ``step``:

* A key is *seen* at most once per step however often it occurs in the batch.
* Admission: a key gets a row (a *slot*) in the step it is seen for the
  ``permit_filter_value``-th time; before that it is a *candidate* and reads slot 0, the
  default row, which is never trained.
* Eviction: an entry (row or candidate) last seen at step ``s`` is removed once steps
  ``s+1 .. s+evict_filter_value`` have passed without a hit, i.e. it is gone for every
  operation from step ``s + evict_filter_value + 1`` on. ``None`` never evicts.
* ``erase`` removes keys at once; ``insert`` (behind ``put``) admits keys without
  counting and counts as a hit. A removed key starts again from zero hits.
* The keys -1 and -2 are reserved: they mark empty and deleted buckets.

Rows live in slots ``1..capacity``; freed slots are recycled. When every slot is taken
a key due for admission stays a candidate (counted in ``rejected_full``) and is
admitted at a later hit once a slot is free.

The index is an open-addressing table (linear probing) whose batch operations are
numba-compiled loops (:mod:`mindrec.embedding.hash_kernels`), so no Python runs per
key. Expired entries are dropped by a periodic sweep (every
``max(1, evict_filter_value // 4)`` steps) and also
recognised on sight, so the semantics are exact whenever the sweep runs. Changes since
the last :meth:`HashIndex.take_changes` (slots written, keys removed) are tracked for
incremental export: 1 byte per slot plus 8 bytes per removal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mindrec.embedding.hash_layout import (ADMITTED, DEFAULT_LOOKUPS, DELETED, EMPTY, ERASED,
                                           EVICTED, LIVE_ENTRIES, LOOKUPS, N_COUNTERS,
                                           REJECTED_FULL, REMOVED_LENGTH, RESERVED_KEYS,
                                           USED_BUCKETS)

_MAX_LOAD = 0.5
_NEVER = np.iinfo(np.int64).max


@dataclass
class IndexStats:
    """Counters of a :class:`HashIndex` since it was created."""

    live_rows: int  # keys holding a row now
    candidates: int  # keys seen but not yet admitted
    admitted: int
    evicted: int
    erased: int
    rejected_full: int  # admissions refused because every slot was taken
    lookups: int  # keys looked up in training
    default_lookups: int  # of those, answered with the default row
    index_bytes: int  # host memory of the index arrays


class HashIndex:
    """Maps arbitrary integer keys to row slots with admission and eviction.

    Args:
        capacity (int): rows available to admitted keys (slots ``1..capacity``).
        permit_filter_value (int): hits (steps) before a key gets a row; 1 admits on
            first sight.
        evict_filter_value (int | None): idle steps after which a key is removed.
        key_dtype: ``np.int32`` or ``np.int64``; keys are stored as int64.

    Example::

        >>> index = HashIndex(capacity=4, permit_filter_value=2)
        >>> index.train_lookup(np.array([7, 7, 9]))  # first sight: candidates
        (array([0, 0, 0], dtype=int32), array([], dtype=int32))
        >>> index.advance(); index.train_lookup(np.array([7]))[0]
        array([1], dtype=int32)
    """

    def __init__(self, capacity: int, permit_filter_value: int = 1,
                 evict_filter_value: int | None = None, key_dtype=np.int64):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        if permit_filter_value < 1:
            raise ValueError(f"permit_filter_value must be at least 1, got {permit_filter_value}")
        if evict_filter_value is not None and evict_filter_value < 1:
            raise ValueError(f"evict_filter_value must be at least 1 or None, "
                             f"got {evict_filter_value}")
        self.key_dtype = np.dtype(key_dtype)
        if self.key_dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
            raise ValueError(f"key_dtype must be int32 or int64, got {self.key_dtype}")
        self.capacity = int(capacity)
        self.permit = int(permit_filter_value)
        self.evict = evict_filter_value
        self._evict_after = _NEVER if evict_filter_value is None else int(evict_filter_value)
        self._sweep_every = None if evict_filter_value is None else max(1, evict_filter_value // 4)
        self.step = 0
        self._allocate_buckets(_bucket_count(min(self.capacity, 1 << 16)))
        # Free slots as a stack popped from the end: slots are handed out 1, 2, 3, ...
        self._free = np.arange(self.capacity, 0, -1, dtype=np.int32)
        self._n_free = np.array([self.capacity], np.int64)
        self._slot_key = np.full(self.capacity + 1, EMPTY, np.int64)
        self._dirty = np.zeros(self.capacity + 1, np.uint8)
        self._removed = np.empty(1024, np.int64)
        self._counters = np.zeros(N_COUNTERS, np.int64)  # named in hash_layout
        self._admit_listeners = []
        self.delta_sequence = 0  # deltas exported from (or applied to) this index

    def on_admit(self, listener) -> None:
        """Call ``listener(slots)`` whenever keys get new (or recycled) slots, before
        any caller reads them: tables initialise the rows and their optimizer state."""
        self._admit_listeners.append(listener)

    def _admitted(self, fresh: np.ndarray) -> np.ndarray:
        if len(fresh):
            for listener in self._admit_listeners:
                listener(fresh)
        return fresh

    # -- batch operations ---------------------------------------------------------------

    def train_lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record one step's hits; return the slot of every key and the newly admitted
        slots (whose rows must be initialised before they are read).

        Slots have the shape of ``keys``; 0 means "not admitted: read the default".
        """
        flat = self._check_keys(keys)
        self._reserve(len(flat))
        self._reserve_removed(len(flat))
        slots = np.empty(len(flat), np.int32)
        fresh = np.empty(len(flat), np.int32)
        n_fresh = _kernels().train_lookup(
            flat, slots, fresh, self._keys, self._slot, self._count, self._last,
            self._free, self._n_free, self._slot_key, self._dirty, self._removed,
            self._counters, self.step, self.permit, self._evict_after)
        return slots.reshape(np.shape(keys)), self._admitted(fresh[:n_fresh].copy())

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slots of ``keys`` without recording hits (inference); 0 for keys without a row."""
        flat = self._check_keys(keys)
        slots = np.empty(len(flat), np.int32)
        _kernels().lookup(flat, slots, self._keys, self._slot, self._last, self.step,
                          self._evict_after)
        return slots.reshape(np.shape(keys))

    def insert(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Give every key a row now (``put``): return their slots and the new ones.

        Keys for which no slot is free get slot 0 and are counted in ``rejected_full``.
        """
        flat = self._check_keys(keys)
        self._reserve(len(flat))
        self._reserve_removed(len(flat))
        slots = np.empty(len(flat), np.int32)
        fresh = np.empty(len(flat), np.int32)
        n_fresh = _kernels().insert(
            flat, slots, fresh, self._keys, self._slot, self._count, self._last,
            self._free, self._n_free, self._slot_key, self._dirty, self._removed,
            self._counters, self.step, self._evict_after)
        return slots, self._admitted(fresh[:n_fresh].copy())

    def peek(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(slots, counts, last_steps)`` of ``keys`` without recording anything:
        (0, 0, -1) for a key the index does not hold (or holds no longer: expired)."""
        flat = self._check_keys(keys)
        slots = np.empty(len(flat), np.int32)
        counts = np.empty(len(flat), np.int32)
        lasts = np.empty(len(flat), np.int64)
        _kernels().peek(flat, slots, counts, lasts, self._keys, self._slot, self._count,
                        self._last, self.step, self._evict_after)
        return slots, counts, lasts

    def place(self, keys: np.ndarray, last_steps: np.ndarray) -> np.ndarray:
        """Give admitted keys back a slot after a lower cache tier held them.

        A placement, not an admission: no ``on_admit`` listener runs (the caller writes
        the rows it fetched), no counter moves, nothing is recorded for export, and each
        key keeps its last-seen step ``last_steps``. Returns the slots (0 where no slot
        was free)."""
        flat = self._check_keys(keys)
        self._reserve(len(flat))
        slots = np.empty(len(flat), np.int32)
        fresh = np.empty(len(flat), np.int32)
        kept = self._counters.copy()
        _kernels().insert(flat, slots, fresh, self._keys, self._slot, self._count, self._last,
                          self._free, self._n_free, self._slot_key, self._dirty, self._removed,
                          self._counters, self.step, self._evict_after)
        for name in (ADMITTED, REJECTED_FULL):
            self._counters[name] = kept[name]
        self._dirty[slots] = 0
        _kernels().set_last(flat, np.asarray(last_steps, np.int64), self._keys, self._last)
        return slots

    def release(self, keys: np.ndarray) -> None:
        """Keys leave for a lower cache tier: their slots are freed. A placement, not a
        removal: no counter moves and nothing is recorded for export."""
        flat = self._check_keys(keys)
        self._reserve_removed(len(flat))
        kept = self._counters.copy()
        _kernels().erase(flat, self._keys, self._slot, self._last, self._free, self._n_free,
                         self._slot_key, self._dirty, self._removed, self._counters,
                         self.step, self._evict_after)
        for name in (ERASED, EVICTED, REMOVED_LENGTH):
            self._counters[name] = kept[name]

    def slot_keys(self, slots: np.ndarray) -> np.ndarray:
        """The key holding each of ``slots`` (EMPTY for a free slot)."""
        return self._slot_key[slots]

    def occupied(self) -> np.ndarray:
        """bool (capacity + 1,): the slots holding a key (slot 0, the default row, never)."""
        return self._slot_key != EMPTY

    def clear(self) -> None:
        """Remove every key (rows and candidates)."""
        self.erase(self._keys[self._held()])

    def slots_needed(self, keys: np.ndarray, removed: np.ndarray | None = None) -> int:
        """Free slots that giving every key a row would take beyond those it has now,
        after first removing ``removed`` (whose rows are freed): negative when it fits."""
        keys = np.unique(self._check_keys(keys))
        removed = np.unique(self._check_keys(np.empty(0, np.int64) if removed is None
                                             else removed))
        new = (self.lookup(keys) == 0) | np.isin(keys, removed)
        freed = int((self.lookup(removed) > 0).sum())
        return int(new.sum()) - int(self._n_free[0]) - freed

    def erase(self, keys: np.ndarray) -> None:
        """Remove ``keys`` (rows and candidates); absent keys are ignored."""
        flat = self._check_keys(keys)
        self._reserve_removed(len(flat))
        _kernels().erase(flat, self._keys, self._slot, self._last, self._free, self._n_free,
                         self._slot_key, self._dirty, self._removed, self._counters,
                         self.step, self._evict_after)

    def prefetch(self, batches):
        """``batches`` unchanged: an index fetches nothing ahead (a
        :class:`~mindrec.embedding.cache.device.DeviceCache` stages rows here)."""
        return batches

    def advance(self) -> None:
        """End the current step (call once after each training step)."""
        self.step += 1
        if self._sweep_every is not None and self.step % self._sweep_every == 0:
            self.sweep()

    def sweep(self) -> None:
        """Drop every entry idle for more than ``evict_filter_value`` steps now."""
        if self.evict is None:
            return
        self._reserve_removed(int(self._counters[LIVE_ENTRIES]))
        _kernels().sweep(self._keys, self._slot, self._last, self._free, self._n_free,
                         self._slot_key, self._dirty, self._removed, self._counters,
                         self.step, self._evict_after)

    # -- export ---------------------------------------------------------------------------

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, slots)`` of every key holding a row, in slot order."""
        self.sweep()
        slots = np.flatnonzero(self._slot_key != EMPTY).astype(np.int32)
        return self._slot_key[slots].astype(self.key_dtype), slots

    def take_changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Changes since the previous call, then forget them: ``(removed_keys,
        written_keys, written_slots)``. Apply removals first: a key removed and
        admitted again in between appears in both."""
        self.sweep()
        written = np.flatnonzero(self._dirty).astype(np.int32)
        n_removed = int(self._counters[REMOVED_LENGTH])
        removed = self._removed[:n_removed].astype(self.key_dtype)
        keys = self._slot_key[written].astype(self.key_dtype)
        self._dirty[:] = 0
        self._counters[REMOVED_LENGTH] = 0
        return removed, keys, written

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild this index (checkpoints): its entries with their
        slots, hit counts and last-hit steps, the free slots in order, the step, export
        sequence and counters, so a restored index continues exactly. Changes
        not yet exported are not part of it."""
        live = self._held()
        return {"keys": self._keys[live], "slots": self._slot[live],
                "counts": self._count[live], "last": self._last[live],
                "free": self._free[:int(self._n_free[0])].copy(),
                "header": np.array([self.capacity, self.step, self.delta_sequence], np.int64),
                "counters": self._counters.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore a :meth:`state` of an index with the same capacity."""
        capacity, step, sequence = (int(v) for v in state["header"])
        if capacity != self.capacity:
            raise ValueError(f"index state of capacity {capacity:,} does not fit an index "
                             f"of capacity {self.capacity:,}")
        keys, slots = state["keys"].astype(np.int64), state["slots"].astype(np.int32)
        self._allocate_buckets(_bucket_count(len(keys)))
        _kernels().rehash(keys, slots, state["counts"].astype(np.int32),
                          state["last"].astype(np.int64), self._keys, self._slot, self._count,
                          self._last)
        held = slots > 0
        self._slot_key[:] = EMPTY
        self._slot_key[slots[held]] = keys[held]
        free = state["free"].astype(np.int32)
        self._free[:len(free)] = free
        self._n_free[0] = len(free)
        self._dirty[:] = 0
        self._counters[:] = state["counters"]
        self._counters[USED_BUCKETS] = len(keys)
        self._counters[REMOVED_LENGTH] = 0
        self.step, self.delta_sequence = step, sequence

    def __len__(self) -> int:
        self.sweep()
        return self.capacity - int(self._n_free[0])

    def stats(self) -> IndexStats:
        """Counters and memory; exact after a sweep."""
        self.sweep()
        c = self._counters.tolist()
        live = self.capacity - int(self._n_free[0])
        arrays = (self._keys, self._slot, self._count, self._last, self._free,
                  self._slot_key, self._dirty, self._removed)
        return IndexStats(live_rows=live, candidates=c[LIVE_ENTRIES] - live,
                          admitted=c[ADMITTED], evicted=c[EVICTED], erased=c[ERASED],
                          rejected_full=c[REJECTED_FULL], lookups=c[LOOKUPS],
                          default_lookups=c[DEFAULT_LOOKUPS],
                          index_bytes=sum(a.nbytes for a in arrays))

    # -- internals ------------------------------------------------------------------------

    def _check_keys(self, keys) -> np.ndarray:
        keys = np.asarray(keys)
        if keys.dtype.kind not in "iu":
            raise TypeError(f"hash keys must be integers, got dtype {keys.dtype}")
        if self.key_dtype == np.int32 and keys.dtype.itemsize > 4 and keys.size and (
                keys.max() > np.iinfo(np.int32).max or keys.min() < np.iinfo(np.int32).min):
            raise ValueError("a key does not fit the table's key_dtype int32")
        flat = keys.reshape(-1).astype(np.int64, copy=False)
        if flat.size and _kernels().has_reserved(flat):
            raise ValueError(f"keys {' and '.join(map(str, RESERVED_KEYS))} are reserved "
                             f"(empty and deleted bucket markers) and cannot be used as hash keys")
        return flat

    def _held(self) -> np.ndarray:
        """Mask of the buckets holding a key (a row or a candidate)."""
        return (self._keys != EMPTY) & (self._keys != DELETED)

    def _allocate_buckets(self, n: int) -> None:
        self._keys = np.full(n, EMPTY, np.int64)
        self._slot = np.zeros(n, np.int32)
        self._count = np.zeros(n, np.int32)
        self._last = np.zeros(n, np.int64)

    def _reserve(self, incoming: int) -> None:
        """Rehash before a batch of ``incoming`` keys could push the load past 50%."""
        used, live = int(self._counters[USED_BUCKETS]), int(self._counters[LIVE_ENTRIES])
        if used + incoming <= _MAX_LOAD * len(self._keys):
            return
        old = (self._keys, self._slot, self._count, self._last)
        self._allocate_buckets(_bucket_count(live + incoming))
        _kernels().rehash(*old, self._keys, self._slot, self._count, self._last)
        self._counters[USED_BUCKETS] = live

    def _reserve_removed(self, incoming: int) -> None:
        need = int(self._counters[REMOVED_LENGTH]) + incoming
        if need > len(self._removed):
            grown = np.empty(max(need, 2 * len(self._removed)), np.int64)
            grown[:len(self._removed)] = self._removed
            self._removed = grown


def _bucket_count(entries: int) -> int:
    return max(1024, 1 << int(np.ceil(np.log2(max(1, entries) / _MAX_LOAD))))


def _kernels():
    """The numba kernels, imported on first use: runs without hash tables do not pay
    numba's import (measured: 34 MB and 0.8 s)."""
    from mindrec.embedding import hash_kernels
    return hash_kernels
