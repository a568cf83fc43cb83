"""The tiers below the device: their interface, the host tier and the chain of tiers.

Every tier stores *packed rows* (``width`` float32 values: a key's embedding values and
optimizer slots) with the key's last step seen (int64), under distinct int64 keys; see
docs/embedding-cache.md. A tier with a ``below`` tier is write-back: :meth:`Tier.put`
marks rows dirty, and only dirty rows are written down, when evicted or flushed. A tier
without a ``below`` is the store: it never evicts.

Example::

    >>> store = HostTier(width=2, name="store")
    >>> chain = TierChain([HostTier(width=2, capacity_rows=1, below=store), store])
    >>> chain.write_back(np.array([7, 8]), np.ones((2, 2), np.float32), np.array([3, 4]))
    >>> found, rows, steps, source = chain.fetch(np.array([8, 7, 9]))
    >>> found, steps, source  # 8 in the host tier, 7 evicted to the store, 9 nowhere
    (array([ True,  True, False]), array([4, 3, 0]), array([ 0,  1, -1], dtype=int8))
"""
from __future__ import annotations

import abc
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mindrec.embedding.cache.errors import CapacityError, TierError
from mindrec.embedding.cache.policy import by_name
from mindrec.embedding.cache.slot_map import SlotMap, check_keys
from mindrec.npz import load_npz, save_npz

_FLUSH_CHUNK_ROWS = 1 << 16


@dataclass
class TierStats:
    """Counters of one tier since it was opened (rows and bytes are packed rows)."""

    name: str
    rows_held: int  # ssd: RocksDB's estimate (exact once compacted)
    bytes_held: int  # host, remote: packed bytes of the rows held; ssd: files on disk
    capacity_rows: int | None  # None: unbounded
    gets: int  # keys asked
    hits: int  # of those, found
    puts: int  # rows written by put
    bytes_read: int  # packed bytes read (hits, and dirty rows read to be written down)
    bytes_written: int  # packed bytes written
    evictions: int  # rows evicted for room
    written_down: int  # dirty rows written to the tier below (evicted or flushed)


@dataclass
class TierCounters:
    """The counters a tier updates (:class:`TierStats` less what it holds)."""

    gets: int = 0
    hits: int = 0
    puts: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    evictions: int = 0
    written_down: int = 0


class RowCodec:
    """Packed rows as bytes: a little-endian int64 step, then ``width`` little-endian
    float32 values (``8 + 4 * width`` bytes, no padding).

    Args:
        width (int): floats per row.
    """

    def __init__(self, width: int):
        self.width = width
        self.dtype = np.dtype([("step", "<i8"), ("row", "<f4", (width,))])
        self.size = self.dtype.itemsize

    def pack(self, rows: np.ndarray, steps: np.ndarray) -> list[bytes]:
        """One bytes value per row."""
        packed = np.empty(len(rows), self.dtype)
        packed["step"] = steps
        packed["row"] = rows
        buffer, size = packed.tobytes(), self.size
        return [buffer[i:i + size] for i in range(0, len(buffer), size)]

    def unpack(self, values: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(found, rows, steps)`` of values read back (None: absent; zeros then).

        Raises:
            ValueError: a value is not ``8 + 4 * width`` bytes long.
        """
        found = np.fromiter((v is not None for v in values), bool, len(values))
        present = [v for v in values if v is not None]
        rows = np.zeros((len(values), self.width), np.float32)
        steps = np.zeros(len(values), np.int64)
        buffer = b"".join(present)
        if len(buffer) != len(present) * self.size:
            bad = next(len(v) for v in present if len(v) != self.size)
            raise ValueError(f"a stored row is {bad} bytes long, not {self.size} (a step "
                             f"and {self.width} float32): written with another width?")
        packed = np.frombuffer(buffer, self.dtype)
        rows[found] = packed["row"]
        steps[found] = packed["step"]
        return found, rows, steps


class Tier(abc.ABC):
    """A store of packed rows. All methods are thread-safe.

    Attributes:
        name (str): "host", "remote" or "ssd".
        width (int): floats per packed row.
        below (Tier | None): where dirty rows go; None for the bottom tier.
    """

    name: str
    width: int
    below: Tier | None = None

    @abc.abstractmethod
    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(found bool[n], rows float32[n, width], steps int64[n])`` of distinct keys;
        rows and steps of keys not found are zeros. Rows are not copied up from below."""

    @abc.abstractmethod
    def put(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray) -> None:
        """Insert or overwrite the rows of distinct keys (dirty where a tier is below)."""

    @abc.abstractmethod
    def delete(self, keys: np.ndarray) -> None:
        """Remove keys from this tier only; absent keys are ignored."""

    @abc.abstractmethod
    def stats(self) -> TierStats:
        """Counters since the tier was opened."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the tier's resources (dirty rows are not written down: flush first)."""

    def flush(self) -> None:
        """Write every dirty row to the tier below; a bottom tier has none."""

    def _check(self, keys, rows, steps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """keys int64[n], rows float32[n, width], steps int64[n], or a ValueError."""
        keys = check_keys(keys)
        rows = np.ascontiguousarray(rows, np.float32)
        steps = np.ascontiguousarray(steps, np.int64).reshape(-1)
        if rows.shape != (len(keys), self.width) or steps.shape != (len(keys),):
            raise ValueError(f"{self.name} tier: {len(keys)} keys need rows of shape "
                             f"({len(keys)}, {self.width}) and steps of shape "
                             f"({len(keys)},), got {rows.shape} and {steps.shape}")
        return keys, rows, steps


class IndexedTier(Tier):
    """A tier that indexes the keys it holds in host memory (a :class:`SlotMap`), with
    their dirty bits and the policy over their slots; subclasses store the rows.

    With a capacity, putting new keys into a full tier evicts rows by the policy,
    writing the dirty ones to ``below`` (an error without one); a put of more rows than
    the capacity goes in chunks. Without a capacity nothing is evicted.
    Subclasses call :meth:`_setup` and implement :meth:`_load`, :meth:`_store`,
    :meth:`_drop`; ``where`` names the tier in errors.
    """

    where: str

    def _setup(self, name: str, width: int, capacity_rows: int | None, policy: str,
               below: Tier | None) -> None:
        if below is not None and below.width != width:
            raise ValueError(f"{name} tier of width {width} cannot sit above the "
                             f"{below.name} tier of width {below.width}")
        self.name, self.width, self.below = name, width, below
        self.capacity_rows = capacity_rows
        self._policy_name = policy
        self._row_bytes = RowCodec(width).size
        self._counters = TierCounters()
        self._lock = threading.RLock()
        self._closed = False
        self._reset_index()

    # -- what subclasses store ------------------------------------------------------------

    def _load(self, keys: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
        """``(found, rows, steps)`` of held keys (at their slots)."""
        raise NotImplementedError

    def _store(self, keys: np.ndarray, slots: np.ndarray, rows: np.ndarray,
               steps: np.ndarray) -> None:
        """Write rows of keys (at their slots, assigned)."""
        raise NotImplementedError

    def _drop(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Remove the rows of held keys (before their slots are released)."""
        raise NotImplementedError

    def _grow(self, slots: int) -> None:
        """The index now has ``slots`` slots (an unbounded tier grew)."""

    # -- the Tier interface ---------------------------------------------------------------

    def get(self, keys):
        keys = check_keys(keys)
        found = np.zeros(len(keys), bool)
        rows = np.zeros((len(keys), self.width), np.float32)
        steps = np.zeros(len(keys), np.int64)
        with self._lock:
            self._check_open()
            slots = self._slots.lookup(keys)
            held = np.flatnonzero(slots >= 0)
            hit, rows[held], steps[held] = self._load(keys[held], slots[held])
            found[held] = hit
            self._touch(slots[held][hit])
            self._counters.gets += len(keys)
            self._counters.hits += int(hit.sum())
            self._counters.bytes_read += int(hit.sum()) * self._row_bytes
        return found, rows, steps

    def put(self, keys, rows, steps):
        keys, rows, steps = self._check(keys, rows, steps)
        with self._lock:
            self._check_open()
            if self.below is None or self.capacity_rows is None or len(keys) <= self.capacity_rows:
                self._put(keys, rows, steps)  # without a tier below, it all fits or fails
                return
            for start in range(0, len(keys), self.capacity_rows):
                end = start + self.capacity_rows
                self._put(keys[start:end], rows[start:end], steps[start:end])

    def delete(self, keys):
        keys = check_keys(keys)
        with self._lock:
            self._check_open()
            slots = self._slots.lookup(keys)
            held = slots >= 0
            self._drop(keys[held], slots[held])
            self._forget(keys[held])

    def flush(self):
        with self._lock:
            self._check_open()
            if self.below is None:
                return
            dirty = np.flatnonzero(self._dirty)
            for start in range(0, len(dirty), _FLUSH_CHUNK_ROWS):
                self._write_down(dirty[start:start + _FLUSH_CHUNK_ROWS])

    def stats(self):
        with self._lock:
            held = len(self._slots)
            return TierStats(name=self.name, rows_held=held, bytes_held=held * self._row_bytes,
                             capacity_rows=self.capacity_rows, **asdict(self._counters))

    def close(self):
        with self._lock:
            self._closed = True

    # -- internals ------------------------------------------------------------------------

    def _put(self, keys, rows, steps) -> None:
        """Put at most ``capacity_rows`` rows."""
        slots = self._slots.lookup(keys)
        new = slots < 0
        short = int(new.sum()) - self._slots.free
        if self._slots.bounded and short > 0:
            if self.below is None:
                raise CapacityError(
                    f"{self.where} is full ({self.capacity_rows:,} rows) and has no tier "
                    f"below to evict to: {short:,} more rows do not fit")
            self._evict(short, pinned=slots[~new])
        slots[new] = self._slots.assign(keys[new])
        if self._slots.capacity > len(self._dirty):
            self._dirty = np.concatenate(
                [self._dirty, np.zeros(self._slots.capacity - len(self._dirty), bool)])
            self._grow(self._slots.capacity)
        try:
            self._store(keys, slots, rows, steps)
        except BaseException:  # held rows may be half overwritten: not clean any more
            self._dirty[slots[~new]] = self.below is not None
            self._forget(keys[new])
            raise
        self._dirty[slots] = self.below is not None
        self._touch(slots)
        self._counters.puts += len(keys)
        self._counters.bytes_written += len(keys) * self._row_bytes

    def _evict(self, count: int, pinned: np.ndarray) -> None:
        """Empty ``count`` slots other than ``pinned``: dirty victims are written down
        first, then every victim is dropped."""
        mask = np.zeros(self._slots.capacity, bool)
        mask[pinned] = True
        try:
            victims = self.policy.victims(count, pinned=mask, occupied=self._slots.occupied())
        except CapacityError as error:
            raise CapacityError(f"{self.where}: {error}") from error
        dirty = victims[self._dirty[victims]]
        for start in range(0, len(dirty), _FLUSH_CHUNK_ROWS):
            self._write_down(dirty[start:start + _FLUSH_CHUNK_ROWS])
        keys = self._slots.keys_at(victims)
        self._drop(keys, victims)
        self._forget(keys)
        self._counters.evictions += len(victims)

    def _write_down(self, slots: np.ndarray) -> None:
        """Copy the rows of ``slots`` to the tier below; they are clean then."""
        keys = self._slots.keys_at(slots)
        _, rows, steps = self._load(keys, slots)
        self.below.put(keys, rows, steps)
        self._dirty[slots] = False
        self._counters.written_down += len(slots)
        self._counters.bytes_read += len(slots) * self._row_bytes

    def _forget(self, keys: np.ndarray) -> None:
        """Release the slots of ``keys`` (those held)."""
        slots = self._slots.release(keys)
        slots = slots[slots >= 0]
        self._dirty[slots] = False
        if self.policy is not None:
            self.policy.clear(slots)

    def _reset_index(self) -> None:
        """An empty index."""
        self._slots = SlotMap(self.capacity_rows)
        self._dirty = np.zeros(self._slots.capacity, bool)
        self.policy = (None if self.capacity_rows is None
                       else by_name(self._policy_name, self.capacity_rows))
        self._clock = 0  # operations so far: the policy's steps
        self._grow(self._slots.capacity)

    def _touch(self, slots: np.ndarray) -> None:
        self._clock += 1
        if self.policy is not None:
            self.policy.touch(slots, self._clock)

    def _check_open(self) -> None:
        if self._closed:
            raise TierError(f"{self.where} is closed")


class HostTier(IndexedTier):
    """Packed rows in host memory: a numpy arena indexed by a :class:`SlotMap`. Evicts
    by ``policy`` when it has a capacity, else grows.

    Args:
        width (int): floats per packed row.
        capacity_rows (int | None): rows held at most; None: unbounded.
        policy (str): "lru" or "lfu" (with a capacity).
        below (Tier | None): the next tier down, of the same width.
        name (str): the tier's name in errors and stats.
    """

    def __init__(self, width: int, capacity_rows: int | None = None, policy: str = "lru",
                 below: Tier | None = None, name: str = "host"):
        self.where = f"{name} tier"
        self._rows = np.zeros((0, width), np.float32)
        self._steps = np.zeros(0, np.int64)
        self._setup(name, width, capacity_rows, policy, below)

    def snapshot(self, path: str | Path) -> Path:
        """Every row held, written to the ``.npz`` file ``path`` (``keys``, ``rows``,
        ``steps``) through a temporary file, so ``path`` is whole or absent."""
        path = Path(path)
        with self._lock:
            self._check_open()
            slots = np.flatnonzero(self._slots.occupied())
            save_npz(path, {"keys": self._slots.keys_at(slots), "rows": self._rows[slots],
                            "steps": self._steps[slots]})
        return path

    @classmethod
    def from_snapshot(cls, path: str | Path, capacity_rows: int | None = None,
                      policy: str = "lru", below: Tier | None = None,
                      name: str = "host") -> HostTier:
        """A tier holding the rows of a :meth:`snapshot` (dirty if a tier is below)."""
        saved = load_npz(path, "host tier snapshot", ("keys", "rows", "steps"))
        keys, rows, steps = saved["keys"], saved["rows"], saved["steps"]
        tier = cls(rows.shape[1], capacity_rows, policy, below, name)
        tier.put(keys, rows, steps)
        return tier

    def close(self):
        with self._lock:
            super().close()
            self._rows = self._rows[:0]  # the memory goes now

    def _load(self, keys, slots):
        return np.ones(len(slots), bool), self._rows[slots], self._steps[slots]

    def _store(self, keys, slots, rows, steps):
        self._rows[slots] = rows
        self._steps[slots] = steps

    def _drop(self, keys, slots):
        """The arena keeps the bytes until the slot is reused."""

    def _grow(self, slots):
        grow = slots - len(self._steps)
        self._rows = np.concatenate([self._rows, np.zeros((grow, self.width), np.float32)])
        self._steps = np.concatenate([self._steps, np.zeros(grow, np.int64)])


class TierChain:
    """The tiers below the device, top to bottom; each one's ``below`` is the next.

    Args:
        tiers (Sequence[Tier]): top first; the last is the store (no ``below``).
    """

    def __init__(self, tiers: Sequence[Tier]):
        tiers = list(tiers)
        if not tiers:
            raise ValueError("a tier chain needs at least one tier")
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be distinct, got {names}")
        for upper, lower in zip(tiers, tiers[1:] + [None]):
            if upper.below is not lower:
                expected = "nothing" if lower is None else f"the {lower.name} tier"
                raise ValueError(f"the {upper.name} tier must write down to {expected}, "
                                 f"the next in the chain {names}")
            if lower is not None and lower.width != upper.width:
                raise ValueError(f"tier widths differ: {upper.name} {upper.width}, "
                                 f"{lower.name} {lower.width}")
        self.tiers = tiers
        self.width = tiers[0].width
        self._lock = threading.RLock()

    def fetch(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rows of distinct ``keys`` from the highest tier holding each; each tier is
        asked only for the keys the tiers above it lacked. Nothing is copied up.

        Returns:
            ``(found bool[n], rows float32[n, width], steps int64[n], source int8[n])``:
            source is the index of the tier that answered, -1 where none did.
        """
        keys = check_keys(keys)
        found = np.zeros(len(keys), bool)
        rows = np.zeros((len(keys), self.width), np.float32)
        steps = np.zeros(len(keys), np.int64)
        source = np.full(len(keys), -1, np.int8)
        missing = np.arange(len(keys))
        with self._lock:
            for index, tier in enumerate(self.tiers):
                if not len(missing):
                    break
                hit, tier_rows, tier_steps = tier.get(keys[missing])
                where = missing[hit]
                found[where], source[where] = True, index
                rows[where], steps[where] = tier_rows[hit], tier_steps[hit]
                missing = missing[~hit]
        return found, rows, steps, source

    def write_back(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray) -> None:
        """Put dirty rows (from the device) into the first tier."""
        with self._lock:
            self.tiers[0].put(keys, rows, steps)

    def delete(self, keys: np.ndarray) -> None:
        """Remove keys from every tier (a logical eviction)."""
        with self._lock:
            for tier in self.tiers:
                tier.delete(keys)

    def flush(self) -> None:
        """Write every dirty row down to the bottom tier, top tier first."""
        with self._lock:
            for tier in self.tiers:
                tier.flush()

    def stats(self) -> dict[str, TierStats]:
        """Each tier's counters, top to bottom."""
        with self._lock:
            return {tier.name: tier.stats() for tier in self.tiers}

    def close(self) -> None:
        """Close every tier (without flushing)."""
        with self._lock:
            for tier in self.tiers:
                tier.close()
