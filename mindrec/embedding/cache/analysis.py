"""Offline analysis of recorded key traces for the embedding cache (docs/embedding-cache.md).

A :class:`KeyTrace` holds the keys each training step looked up, repeats included. It is
replayed at two granularities:

* **per lookup**: the flat sequence of every key occurrence, in order; the cache serves
  one access at a time (:func:`belady_hits`, :func:`simulate`, :func:`lru_miss_ratio_curve`).
* **per distinct key of a step**: each step's distinct keys, all resident together while
  the step runs, as the device tier pins them (:func:`belady_step_hits`,
  :func:`simulate_steps`, :func:`lru_step_miss_ratio_curve`). Inside a step, keys are
  taken in ascending order; that order only breaks LRU and LFU ties.

Every cache here starts empty and works on demand: a missed key is always loaded (no
bypass) and nothing else is, so misses = loads. No admission or idle-eviction filter:
every key is admitted at its first use.

**Policies.** LRU evicts the least recent last use (per lookup: position in the
sequence; per step: the step, then the position in it). LFU evicts the fewest uses since
the key entered the cache (a use is a lookup, or a step), ties by LRU; the count resets
when the key leaves, as in :mod:`mindrec.embedding.cache.policy`. Per step, victims are
chosen among keys not in the step, as the device tier does.

**The step optimum.** Steps ``S_1..S_T`` (sets of keys) and a capacity ``k >= max |S_t|``.
A schedule is a sequence of cache contents ``C_0 = {}``, ``S_t <= C_t <= C_{t-1} | S_t``,
``|C_t| <= k``; step ``t`` hits ``|S_t & C_{t-1}|``. LRU, LFU and the device tier (which
pins at least the step in flight) all follow such schedules. :func:`belady_step_hits` is
MIN over steps: at step ``t`` it evicts only as many keys as the misses need, those of
``C_{t-1} - S_t`` whose next step of use is farthest. It is the maximum over all
schedules, hence an upper bound for every cache that pins at least the current step
(pinning prefetched steps too only removes schedules).

Proof (Belady's exchange argument, per step): let ``A`` be optimal and equal to MIN before
step ``t``; making it lazy (evict only when needed) costs nothing, so both evict ``r``
keys of ``C_{t-1} - S_t``. If ``A`` evicts ``e`` and keeps ``f`` where MIN does the
reverse, ``next(e) <= next(f)``. ``B`` evicts ``f`` instead of ``e``, then copies ``A``
(which holds ``f`` where ``B`` holds ``e``) until ``A`` evicts ``f`` (``B`` evicts ``e``:
equal again) or ``e`` is requested, no later than ``f``: ``B`` hits where ``A`` misses;
if ``f`` is in that step, ``B`` loads it and equals ``A``, otherwise ``B`` holds ``A``'s
keys but ``f`` and pays for ``f`` at most once later. ``B`` is never worse than ``A``;
repeated swaps make step ``t`` MIN's, and induction on ``t`` ends the proof.

This optimum is *not* MIN on the flattened distinct keys: that may evict a key of the
step already used, which pinning forbids (steps ``{a}, {b, c}, {a}`` at ``k = 2``: one
hit flat, none with pinning). The per-lookup MIN (:func:`belady_hits`) is the classic one.

All replays are numba loops over dense key ids: an indexed binary heap of the resident
keys (O(log k) per use) and, for the LRU miss-ratio curves, a Fenwick tree over positions
(Mattson's stack distances, O(n log n)).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

from mindrec.npz import load_npz, save_npz

POLICIES = ("lru", "lfu")
_LRU, _LFU, _MIN = 0, 1, 2
_CODES = {"lru": _LRU, "lfu": _LFU}


class KeyTrace:
    """The keys looked up by each training step, concatenated.

    Args:
        keys (int[n]): every lookup, step after step (stored as int64).
        offsets (int[steps + 1]): step ``t`` looked up ``keys[offsets[t]:offsets[t + 1]]``.

    Example::

        >>> trace = KeyTrace.from_steps([np.array([[3, 3], [5, 9]]), np.array([5])])
        >>> trace.n_steps, trace.n_lookups, trace.step(0)
        (2, 5, array([3, 3, 5, 9]))
    """

    def __init__(self, keys: np.ndarray, offsets: np.ndarray):
        keys, offsets = np.asarray(keys), np.asarray(offsets)
        if keys.ndim != 1 or keys.dtype.kind not in "iu":
            raise ValueError(f"trace keys must be a 1-D integer array, got {keys.dtype} "
                             f"{keys.shape}")
        if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) == 0:
            raise ValueError(f"trace offsets must be a non-empty 1-D integer array, got "
                             f"{offsets.dtype} {offsets.shape}")
        falling = bool((np.diff(offsets) < 0).any())
        if offsets[0] != 0 or offsets[-1] != len(keys) or falling:
            raise ValueError(f"trace offsets must rise from 0 to the {len(keys):,} keys, "
                             f"got {offsets[0]} .. {offsets[-1]}"
                             + (", decreasing" if falling else ""))
        self.keys = keys.astype(np.int64, copy=False)
        self.offsets = offsets.astype(np.int64, copy=False)

    @classmethod
    def from_steps(cls, steps) -> KeyTrace:
        """A trace of ``steps``: one integer array of keys per step (any shape)."""
        flat = [np.ravel(s) for s in steps]
        offsets = np.zeros(len(flat) + 1, np.int64)
        offsets[1:] = np.cumsum([len(s) for s in flat])
        return cls(np.concatenate(flat) if flat else np.empty(0, np.int64), offsets)

    @property
    def n_steps(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_lookups(self) -> int:
        return len(self.keys)

    def step(self, t: int) -> np.ndarray:
        """The keys step ``t`` looked up."""
        return self.keys[self.offsets[t]:self.offsets[t + 1]]

    def save(self, path: str | Path) -> None:
        """Write one ``.npz`` (keys, offsets) atomically: a reader never sees half a trace."""
        save_npz(path, {"keys": self.keys, "offsets": self.offsets})

    @classmethod
    def load(cls, path: str | Path) -> KeyTrace:
        """Read a trace written by :meth:`save`; a damaged file is an error naming it."""
        arrays = load_npz(path, "key trace", ("keys", "offsets"))
        try:
            return cls(arrays["keys"], arrays["offsets"])
        except ValueError as exc:
            raise ValueError(f"{path}: not a readable key trace ({exc})") from exc


# -- public replays ------------------------------------------------------------------------


def belady_hits(accesses: np.ndarray, capacity: int) -> int:
    """Hits of Belady's MIN (evict the key used again farthest in the future) on a flat
    access sequence: the most hits any demand cache of ``capacity`` keys can have.

    Args:
        accesses (int[n]): keys in the order they are looked up.
        capacity (int): keys the cache holds, at least 1.

    Example::

        >>> belady_hits(np.array([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]), capacity=3)
        5
    """
    return _hits(_flat_stream(accesses), capacity, _MIN)


def belady_step_hits(trace: KeyTrace, capacity: int) -> int:
    """Hits of MIN over steps whose distinct keys are pinned together (the module
    docstring defines it and proves it optimal): the most distinct-key hits any cache of
    ``capacity`` keys that pins the step in flight can have.

    Args:
        trace (KeyTrace): the steps.
        capacity (int): keys the cache holds, at least the distinct keys of every step.

    Example::

        >>> steps = KeyTrace.from_steps([np.array([1]), np.array([2, 3, 3]), np.array([1])])
        >>> belady_step_hits(steps, capacity=2), belady_hits(np.array([1, 2, 3, 1]), 2)
        (0, 1)
    """
    return _hits(_step_stream(trace), capacity, _MIN)


def simulate(policy: str, accesses: np.ndarray, capacity: int) -> int:
    """Hits of an LRU or LFU cache of ``capacity`` keys on a flat access sequence.

    Args:
        policy (str): "lru" or "lfu" (LFU counts reset when a key is evicted).
        accesses (int[n]): keys in the order they are looked up.
        capacity (int): keys the cache holds, at least 1.

    Example::

        >>> accesses = np.array([1, 1, 2, 3, 1])
        >>> simulate("lru", accesses, 2), simulate("lfu", accesses, 2)
        (1, 2)
    """
    return _hits(_flat_stream(accesses), capacity, _policy_code(policy))


def simulate_steps(policy: str, trace: KeyTrace, capacity: int) -> int:
    """Distinct-key hits of an LRU or LFU cache that makes each step's keys resident
    together, choosing victims among keys not in the step (the online device tier).

    Args:
        policy (str): "lru" (by last step, then position in it) or "lfu" (steps used
            since the key entered, ties by LRU).
        trace (KeyTrace): the steps.
        capacity (int): keys the cache holds, at least the distinct keys of every step.

    Example::

        >>> steps = KeyTrace.from_steps([np.array([5]), np.array([7]), np.array([3, 5]),
        ...                              np.array([5])])
        >>> simulate_steps("lru", steps, 2), simulate("lru", np.array([5, 7, 3, 5, 5]), 2)
        (2, 1)
    """
    return _hits(_step_stream(trace), capacity, _policy_code(policy))


def lru_miss_ratio_curve(accesses: np.ndarray, sizes) -> np.ndarray:
    """LRU miss ratio at every size of ``sizes``, from one pass of stack distances;
    a key's first access is a miss at every size.

    Args:
        accesses (int[n]): keys in the order they are looked up (at least one).
        sizes (int[m]): cache sizes, each at least 1.

    Returns:
        float64[m]: misses / accesses of an LRU cache of each size.

    Example::

        >>> lru_miss_ratio_curve(np.array([1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]), [3, 4, 5])
        array([0.83333333, 0.66666667, 0.41666667])
    """
    return _miss_ratios(_flat_stream(accesses), sizes)


def lru_step_miss_ratio_curve(trace: KeyTrace, sizes) -> np.ndarray:
    """Distinct-key miss ratio of the step-pinning LRU cache (:func:`simulate_steps`) at
    every size of ``sizes``: that cache always holds the most recent keys, so one pass of
    stack distances taken at each step's start gives every size.

    Args:
        trace (KeyTrace): the steps (at least one lookup).
        sizes (int[m]): cache sizes, each at least the distinct keys of every step.

    Example::

        >>> steps = KeyTrace.from_steps([np.array([5]), np.array([7]), np.array([3, 5])])
        >>> lru_step_miss_ratio_curve(steps, [2, 3])
        array([0.75, 0.75])
    """
    return _miss_ratios(_step_stream(trace), sizes)


def summary(trace: KeyTrace, capacity: int, sizes) -> dict:
    """Hit rates of LRU, LFU and Belady at ``capacity``, per lookup and per distinct key
    of a step, each policy's as a fraction of Belady's (1.0 when Belady has no hit), and
    the LRU miss-ratio curves over ``sizes``. Plain ints, floats and lists (JSON-ready).

    Args:
        trace (KeyTrace): the steps (at least one lookup).
        capacity (int): keys the cache holds, at least the distinct keys of every step.
        sizes (int[m]): sizes of the miss-ratio curves, as for :func:`lru_step_miss_ratio_curve`.

    Returns:
        ``{"capacity", "steps", "lookups", "step_keys", "keys", "per_lookup",
        "per_step_key", "lru_miss_ratio"}``: the counts of the trace; per granularity
        ``{"lru", "lfu", "belady", "lru_of_belady", "lfu_of_belady"}``; and
        ``{"sizes", "per_lookup", "per_step_key"}``, a miss ratio per size.

    Example::

        >>> trace = KeyTrace.from_steps([np.array([1, 2, 1]), np.array([3]), np.array([1])])
        >>> report = summary(trace, capacity=2, sizes=[2, 3])
        >>> report["per_lookup"]["belady"], report["per_step_key"]["belady"]
        (0.4, 0.25)
        >>> report["per_step_key"]["lru_of_belady"]  # for 3, LRU evicts 1 and MIN evicts 2
        0.0
    """
    if trace.n_lookups == 0:
        raise ValueError("the trace has no lookups: hit rates are undefined")
    flat, steps = _flat_stream(trace.keys), _step_stream(trace)
    return {"capacity": int(capacity), "steps": trace.n_steps, "lookups": trace.n_lookups,
            "step_keys": len(steps.ids), "keys": steps.n_keys,
            "per_lookup": _rates(flat, capacity), "per_step_key": _rates(steps, capacity),
            "lru_miss_ratio": {"sizes": [int(s) for s in sizes],
                               "per_lookup": _miss_ratios(flat, sizes).tolist(),
                               "per_step_key": _miss_ratios(steps, sizes).tolist()}}


# -- streams: dense key ids in steps -------------------------------------------------------


class _Stream(NamedTuple):
    """Dense key ids (0..n_keys-1), distinct within each step ``offsets[t]:offsets[t+1]``."""

    ids: np.ndarray
    offsets: np.ndarray
    n_keys: int


def _flat_stream(accesses: np.ndarray) -> _Stream:
    """Every access as a step of its own."""
    accesses = np.asarray(accesses)
    if accesses.dtype.kind not in "iu":
        raise ValueError(f"accesses must be integer keys, got dtype {accesses.dtype}")
    keys, ids = np.unique(accesses.ravel(), return_inverse=True)
    return _Stream(ids.astype(np.int64), np.arange(len(ids) + 1, dtype=np.int64), len(keys))


def _step_stream(trace: KeyTrace) -> _Stream:
    """Each step's distinct keys, ascending."""
    keys, ids = np.unique(trace.keys, return_inverse=True)
    n_keys = max(len(keys), 1)
    if trace.n_steps * n_keys >= 2 ** 63:
        raise ValueError(f"{trace.n_steps:,} steps x {n_keys:,} keys overflow int64 pairs")
    step_of = np.repeat(np.arange(trace.n_steps, dtype=np.int64), np.diff(trace.offsets))
    pairs = np.unique(step_of * n_keys + ids)
    offsets = np.searchsorted(pairs // n_keys, np.arange(trace.n_steps + 1)).astype(np.int64)
    return _Stream(pairs % n_keys, offsets, len(keys))


def _check_size(size, stream: _Stream, what: str) -> int:
    """``size`` as an int, if a cache of that many keys can hold every step at once."""
    steps = np.diff(stream.offsets)
    t = int(np.argmax(steps)) if len(steps) else 0
    largest = int(steps[t]) if len(steps) else 0
    if int(size) != size or size < max(1, largest):
        need = (f"the {largest:,} distinct keys of step {t}, resident together"
                if largest > 1 else "1 key")
        raise ValueError(f"{what} {size!r} is too small: a cache must hold {need}")
    return int(size)


def _policy_code(policy: str) -> int:
    if policy not in _CODES:
        raise ValueError(f"unknown cache policy {policy!r}: choose one of {list(POLICIES)}")
    return _CODES[policy]


def _hits(stream: _Stream, capacity: int, code: int) -> int:
    """Hits of the policy ``code`` replaying ``stream`` at ``capacity`` keys."""
    capacity = min(_check_size(capacity, stream, "capacity"), max(stream.n_keys, 1))
    next_step = (_next_steps(stream.ids, stream.offsets, stream.n_keys) if code == _MIN
                 else np.empty(0, np.int64))
    return int(_replay(stream.ids, stream.offsets, stream.n_keys, capacity, code, next_step))


def _rates(stream: _Stream, capacity: int) -> dict:
    """Hit rates of every policy and Belady's, and each policy's fraction of Belady's."""
    hits = {name: _hits(stream, capacity, code) for name, code in (*_CODES.items(),
                                                                   ("belady", _MIN))}
    rates = {name: h / len(stream.ids) for name, h in hits.items()}
    for name in POLICIES:
        rates[f"{name}_of_belady"] = hits[name] / hits["belady"] if hits["belady"] else 1.0
    return rates


def _miss_ratios(stream: _Stream, sizes) -> np.ndarray:
    """LRU miss ratio at each of ``sizes`` from the stack distances of ``stream``."""
    if len(stream.ids) == 0:
        raise ValueError("no accesses: miss ratios are undefined")
    sizes = np.array([_check_size(s, stream, "size") for s in np.ravel(sizes)], np.int64)
    distances = _stack_distances(stream.ids, stream.offsets, stream.n_keys)
    within = np.cumsum(np.bincount(distances, minlength=stream.n_keys + 1))
    hits = within[np.minimum(sizes, stream.n_keys)] - within[0]  # distance 0: first use
    return 1.0 - hits / len(stream.ids)


# -- kernels -------------------------------------------------------------------------------


@numba.njit(cache=True)
def _next_steps(ids, offsets, n_keys):
    """For each stream entry, the next step using its key (the number of steps if none)."""
    n_steps = len(offsets) - 1
    upcoming = np.full(n_keys, n_steps, np.int64)
    out = np.empty(len(ids), np.int64)
    for t in range(n_steps - 1, -1, -1):
        for i in range(offsets[t], offsets[t + 1]):
            out[i] = upcoming[ids[i]]
            upcoming[ids[i]] = t
    return out


@numba.njit(cache=True)
def _replay(ids, offsets, n_keys, capacity, policy, next_step):
    """Hits of a cache of ``capacity`` keys making each step's keys resident together.

    The resident keys form a binary min-heap of rows ``(p1, p2, key)``: ``p2`` is the
    stream position of the key's last use; ``p1`` is 0 (LRU), the uses since the key
    entered (LFU) or minus the next step using it (MIN). Victims are popped skipping the
    keys of the step, which are put back.
    """
    heap = np.empty((capacity, 3), np.int64)
    pos = np.full(n_keys, -1, np.int64)  # row of a resident key, else -1
    in_step = np.full(n_keys, -1, np.int64)  # last step using the key
    hit = np.zeros(capacity, np.bool_)  # per key of the current step
    stash = np.empty((capacity, 3), np.int64)
    size = 0
    hits = 0
    for t in range(len(offsets) - 1):
        start, end = offsets[t], offsets[t + 1]
        misses = 0
        for i in range(start, end):
            x = ids[i]
            in_step[x] = t
            hit[i - start] = pos[x] >= 0
            if hit[i - start]:
                row = pos[x]
                heap[row, 0] = _priority(policy, heap[row, 0], i, next_step)
                heap[row, 1] = i
                _sift_down(heap, pos, _sift_up(heap, pos, row), size)
            else:
                misses += 1
        hits += end - start - misses
        size = _evict(size + misses - capacity, t, in_step, heap, pos, size, stash)
        for i in range(start, end):
            if not hit[i - start]:
                size = _push(heap, pos, size, _priority(policy, 0, i, next_step), i, ids[i])
    return hits


@numba.njit(cache=True, inline="always")
def _priority(policy, p1, i, next_step):
    """``p1`` of a key used at stream position ``i``, given its previous one (0: new)."""
    if policy == _LFU:
        return p1 + 1
    if policy == _MIN:
        return -next_step[i]
    return 0


@numba.njit(cache=True)
def _evict(count, step, in_step, heap, pos, size, stash):
    """Remove ``count`` keys not used by ``step``, least first; returns the new size."""
    kept = 0
    while count > 0:
        stash[kept] = heap[0]
        size = _pop(heap, pos, size)
        if in_step[stash[kept, 2]] == step:
            kept += 1
        else:
            count -= 1
    for j in range(kept):
        size = _push(heap, pos, size, stash[j, 0], stash[j, 1], stash[j, 2])
    return size


@numba.njit(cache=True, inline="always")
def _before(a1, a2, b1, b2):
    """Whether priority ``(a1, a2)`` comes before ``(b1, b2)``."""
    return a1 < b1 or (a1 == b1 and a2 < b2)


@numba.njit(cache=True, inline="always")
def _put(heap, pos, j, p1, p2, x):
    heap[j, 0] = p1
    heap[j, 1] = p2
    heap[j, 2] = x
    pos[x] = j


@numba.njit(cache=True)
def _sift_up(heap, pos, j):
    """Move row ``j`` up to its place; returns where it lands."""
    p1, p2, x = heap[j, 0], heap[j, 1], heap[j, 2]
    while j > 0:
        parent = (j - 1) >> 1
        if not _before(p1, p2, heap[parent, 0], heap[parent, 1]):
            break
        _put(heap, pos, j, heap[parent, 0], heap[parent, 1], heap[parent, 2])
        j = parent
    _put(heap, pos, j, p1, p2, x)
    return j


@numba.njit(cache=True)
def _sift_down(heap, pos, j, size):
    p1, p2, x = heap[j, 0], heap[j, 1], heap[j, 2]
    while True:
        child = 2 * j + 1
        if child >= size:
            break
        if child + 1 < size and _before(heap[child + 1, 0], heap[child + 1, 1],
                                        heap[child, 0], heap[child, 1]):
            child += 1
        if not _before(heap[child, 0], heap[child, 1], p1, p2):
            break
        _put(heap, pos, j, heap[child, 0], heap[child, 1], heap[child, 2])
        j = child
    _put(heap, pos, j, p1, p2, x)


@numba.njit(cache=True)
def _push(heap, pos, size, p1, p2, x):
    _put(heap, pos, size, p1, p2, x)
    _sift_up(heap, pos, size)
    return size + 1


@numba.njit(cache=True)
def _pop(heap, pos, size):
    """Remove the least row; returns the new size."""
    pos[heap[0, 2]] = -1
    size -= 1
    if size > 0:
        _put(heap, pos, 0, heap[size, 0], heap[size, 1], heap[size, 2])
        _sift_down(heap, pos, 0, size)
    return size


@numba.njit(cache=True)
def _stack_distances(ids, offsets, n_keys):
    """LRU stack distance of each stream entry at its step's start: 1 + the distinct keys
    used since its key's last use (later in the stream); 0 for a key's first use.

    A Fenwick tree over stream positions holds a 1 at each key's last use; a step's own
    uses are entered after all of its distances are taken.
    """
    tree = np.zeros(len(ids) + 1, np.int64)
    last = np.full(n_keys, -1, np.int64)
    out = np.zeros(len(ids), np.int64)
    seen = 0
    for t in range(len(offsets) - 1):
        start, end = offsets[t], offsets[t + 1]
        for i in range(start, end):
            p = last[ids[i]]
            if p >= 0:
                out[i] = seen - _prefix(tree, p) + 1
        for i in range(start, end):
            x = ids[i]
            if last[x] >= 0:
                _add(tree, last[x], -1)
            else:
                seen += 1
            _add(tree, i, 1)
            last[x] = i
    return out


@numba.njit(cache=True, inline="always")
def _add(tree, i, value):
    i += 1
    while i < len(tree):
        tree[i] += value
        i += i & -i


@numba.njit(cache=True, inline="always")
def _prefix(tree, i):
    """Sum over positions ``0..i``."""
    i += 1
    total = 0
    while i > 0:
        total += tree[i]
        i -= i & -i
    return total
