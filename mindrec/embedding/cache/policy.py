"""Replacement policies over the slots ``0..n-1`` of a cache tier (numpy, vectorised).

A tier tells its policy which slots it used (:meth:`Policy.touch`, with a step: the
training step for the device, an operation counter for the tiers below) and which slots
it emptied (:meth:`Policy.clear`); :meth:`Policy.victims` then chooses the slots to empty
among those occupied and not pinned, in O(n) (a partition, no sort).

* :class:`LRU`: the least recent last use first.
* :class:`LFU`: the fewest uses since the slot was filled first, ties by the least
  recent last use.

Remaining ties go to the lowest slot, so the choice is deterministic.

Example::

    >>> policy = by_name("lru", 4)
    >>> policy.touch(np.array([0, 1, 2, 3]), step=1)
    >>> policy.touch(np.array([0, 2]), step=2)
    >>> policy.victims(2, pinned=None, occupied=np.ones(4, bool))
    array([1, 3])
"""
from __future__ import annotations

import numpy as np

from mindrec.embedding.cache.errors import CapacityError


class Policy:
    """The slots' last-use steps and the victim choice common to every policy.

    Args:
        n (int): slots of the tier.
    """

    name = ""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"a {self.name} policy needs at least one slot, got {n}")
        self.n = int(n)
        self.last = np.zeros(self.n, np.int64)  # step of each slot's last use

    def touch(self, slots: np.ndarray, step: int) -> None:
        """Record a use of each of ``slots`` (distinct) at ``step``."""
        self.last[slots] = step

    def clear(self, slots: np.ndarray) -> None:
        """Forget ``slots``: their keys left the tier."""
        self.last[slots] = 0

    def victims(self, count: int, pinned: np.ndarray | None,
                occupied: np.ndarray) -> np.ndarray:
        """The ``count`` slots to empty, ascending (int64).

        Args:
            count (int): victims wanted.
            pinned (bool[n] | None): slots that must stay.
            occupied (bool[n]): slots holding a key; only these can be victims.

        Raises:
            CapacityError: fewer than ``count`` slots are occupied and not pinned.
        """
        occupied = self._mask(occupied, "occupied")
        free = occupied if pinned is None else occupied & ~self._mask(pinned, "pinned")
        candidates = np.flatnonzero(free)
        if len(candidates) < count:
            held = int(occupied.sum())
            raise CapacityError(
                f"{self.name} policy: {count:,} victims wanted but only {len(candidates):,} "
                f"of {held:,} occupied slots are unpinned ({held - len(candidates):,} pinned)")
        if count <= 0:
            return np.empty(0, np.int64)
        return np.sort(self._choose(candidates, count)).astype(np.int64)

    def _choose(self, candidates: np.ndarray, count: int) -> np.ndarray:
        raise NotImplementedError

    def _mask(self, mask: np.ndarray, what: str) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != (self.n,) or mask.dtype != bool:
            raise ValueError(f"{self.name} policy: {what} must be a bool array of shape "
                             f"({self.n},), got {mask.dtype} {mask.shape}")
        return mask


def _smallest(candidates: np.ndarray, values: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` candidates of least value, ties to the earliest candidate
    (``candidates`` ascending): a partition finds the threshold value, every candidate
    below it is taken, then as many of those at it as are still needed."""
    if count >= len(candidates):
        return candidates
    if count == 0:
        return candidates[:0]
    threshold = np.partition(values, count - 1)[count - 1]
    below = candidates[values < threshold]
    at = candidates[values == threshold]
    return np.concatenate([below, at[:count - len(below)]])


class LRU(Policy):
    """Least recently used first."""

    name = "lru"

    def _choose(self, candidates: np.ndarray, count: int) -> np.ndarray:
        return _smallest(candidates, self.last[candidates], count)


class LFU(Policy):
    """Least frequently used first (uses since the slot was filled), ties by recency."""

    name = "lfu"

    def __init__(self, n: int):
        super().__init__(n)
        self.uses = np.zeros(self.n, np.int64)

    def touch(self, slots: np.ndarray, step: int) -> None:
        super().touch(slots, step)
        self.uses[slots] += 1

    def clear(self, slots: np.ndarray) -> None:
        super().clear(slots)
        self.uses[slots] = 0

    def _choose(self, candidates: np.ndarray, count: int) -> np.ndarray:
        uses = self.uses[candidates]
        if count >= len(candidates):
            return candidates
        threshold = np.partition(uses, count - 1)[count - 1]
        below = candidates[uses < threshold]
        at = candidates[uses == threshold]
        return np.concatenate([below, _smallest(at, self.last[at], count - len(below))])


POLICIES = {"lru": LRU, "lfu": LFU}


def by_name(name: str, n: int) -> Policy:
    """A new policy over ``n`` slots: ``"lru"`` or ``"lfu"``."""
    if name not in POLICIES:
        raise ValueError(f"unknown cache policy {name!r}: choose one of {sorted(POLICIES)}")
    return POLICIES[name](n)
