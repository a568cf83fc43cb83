"""Layout of the hash index's arrays, shared by :mod:`~mindrec.embedding.hash_index` and
its numba kernels (:mod:`~mindrec.embedding.hash_kernels`). Imports nothing.

Bucket markers: a bucket's key is EMPTY (never used), DELETED (a tombstone) or a key,
so these two values cannot be keys.

Counters: one int64 array of ``N_COUNTERS`` values, indexed by the names below. numba
compiles the names as constants. Two cautions:

* The order is part of the checkpoint format (``HashIndex.state()`` saves the array):
  append new counters, never reorder.
* numba's on-disk cache is keyed by ``hash_kernels.py`` alone: after changing a value
  here, touch that file so the kernels are compiled again.
"""

EMPTY = -1
DELETED = -2
RESERVED_KEYS = (EMPTY, DELETED)

USED_BUCKETS = 0  # buckets holding a key or a tombstone (the load that forces a rehash)
LIVE_ENTRIES = 1  # keys held: rows and candidates
ADMITTED = 2  # keys given a row
EVICTED = 3  # rows removed for being idle
ERASED = 4  # rows removed by erase()
REJECTED_FULL = 5  # admissions refused because every slot was taken
LOOKUPS = 6  # keys looked up in training
DEFAULT_LOOKUPS = 7  # of those, answered with the default row
REMOVED_LENGTH = 8  # keys logged in the removed-keys buffer since the last export
N_COUNTERS = 9
