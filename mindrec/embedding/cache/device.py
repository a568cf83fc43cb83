"""The device tier of the embedding cache: resident rows in the MindSpore tables, placed
by key before every step (docs/embedding-cache.md).

A :class:`DeviceCache` stands where the hash tables' :class:`HashIndex` stands for the
trainer (``train_lookup``, ``lookup``, ``advance``, ``stats``, ``prefetch``): it keeps the
index's admission and eviction semantics on the logical table and moves rows, with their
optimizer state, between the tables and the tiers below (a :class:`TierChain`).

Staging invariant: every key of a batch staged for a later step is pinned while it is
resident (when staged, or from the moment it becomes resident), so it is never evicted
before its step; a staged copy of a key that was not resident is therefore never older
than the tiers' copy when it is placed (if the key became resident meanwhile, the staged
copy is ignored).
"""
from __future__ import annotations

import queue
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mindspore import Tensor, ops

from mindrec.embedding.cache.errors import TierError
from mindrec.embedding.cache.policy import by_name
from mindrec.embedding.cache.tiers import TierChain
from mindrec.embedding.hash_index import HashIndex


# The file (or directory) a bottom tier's snapshot takes inside a cache snapshot.
SNAPSHOT_NAMES = {"host": "host.npz", "ssd": "ssd"}


class DeviceTierTooSmall(ValueError):
    """The device tier cannot hold the keys one step must have resident."""


@dataclass
class Stage:
    """One batch's distinct keys and the rows of those not resident when it was staged."""

    keys: np.ndarray  # distinct keys of the batch
    fetched: np.ndarray  # the keys not resident then, looked up below
    pinned: np.ndarray  # device slots pinned for this batch
    found: np.ndarray | None = None  # bool per fetched key: a tier below held it
    rows: np.ndarray | None = None
    steps: np.ndarray | None = None
    fetch_s: float = 0.0
    inline: bool = False  # fetched by the training thread itself


@dataclass
class CacheCounters:
    """What the device tier did, cumulative over the run."""

    steps: int = 0
    lookups: int = 0  # key occurrences looked up by training steps
    lookup_hits: int = 0  # ... found resident
    unique: int = 0  # distinct keys of training steps
    unique_hits: int = 0
    fetched: int = 0  # rows placed from a tier below
    created: int = 0  # rows admitted fresh (no tier had them)
    expired: int = 0  # rows found below but idle too long (logically evicted)
    victims: int = 0  # rows evicted from the device
    written_back: int = 0  # ... of them dirty, written below
    exposed_fetch_s: float = 0.0  # training waited for rows from below
    hidden_fetch_s: float = 0.0  # fetched by the prefetch thread meanwhile
    hit_curve: list = field(default_factory=list)  # per step: distinct-key hit rate


class DeviceCache:
    """Resident rows of the hash tables sharing ``index``, backed by ``chain``.

    Args:
        index (HashIndex): the device index (capacity = device rows), with the run's
            permit and evict filters.
        make_chain (callable): ``make_chain(width, snapshot) -> TierChain``, the tiers
            behind the device for packed rows of ``width`` floats, the bottom one a copy
            of ``snapshot`` (a directory of :meth:`snapshot`) unless it is None; called at
            the first step (the width is known once the tables' optimizer states are
            bound) and after a :meth:`restore`.
        policy (str): "lru" or "lfu", over the device slots.
        lookahead (int): batches the prefetch thread stages ahead (0: fetch inline).
        initial_rows (int): rows of keys ``0 .. initial_rows - 1`` bulk-loaded into the
            bottom tier (an SSD tier) when the tiers are made, drawn as new rows are
            (from generators seeded by ``seed``): a large table that exists before
            training, never passing through the device.

    Tables register themselves (:meth:`add_table`); their optimizer states must be bound
    (``HashEmbedding.bind_optimizer_states``) before the first step.
    """

    def __init__(self, index: HashIndex, make_chain, policy: str = "lru", lookahead: int = 1,
                 initial_rows: int = 0, seed: int = 0):
        self.index = index
        self.initial_rows = initial_rows
        self.seed = seed
        self.bulk_load_s: float | None = None  # loading the initial rows took
        self._make_chain = make_chain
        self._chain: TierChain | None = None
        self._snapshot: Path | None = None  # the bottom tier starts from it
        self.lookahead = lookahead
        slots = index.capacity + 1
        self.policy = by_name(policy, slots)
        self.dirty = np.zeros(slots, bool)
        self.pins = np.zeros(slots, np.int32)
        self.tables = []
        self.counters = CacheCounters()
        self.trace: list[np.ndarray] | None = None  # distinct keys per step, when recorded
        self._pending: deque[Stage] = deque()  # staged batches, oldest first
        self._lock = threading.RLock()

    @property
    def chain(self) -> TierChain:
        """The tiers behind the device (made at first use)."""
        if self._chain is None:
            with self._lock:
                if self._chain is None:
                    self._chain = self._make_chain(self.width, self._snapshot)
                    if self.initial_rows and self._snapshot is None:
                        start = time.perf_counter()
                        self._bulk_load(self._chain.tiers[-1])
                        self.bulk_load_s = time.perf_counter() - start
        return self._chain

    # -- the tables ---------------------------------------------------------------------

    def add_table(self, table) -> None:
        """Register a :class:`HashEmbedding` on this cache's index."""
        self.tables.append(table)

    def _params(self) -> list:
        """Every parameter a packed row spans, in layout order: per table its values,
        then its optimizer states."""
        params = []
        for table in self.tables:
            params.append(table.table)
            params.extend(state for state, _ in table.optimizer_states)
        return params

    @property
    def width(self) -> int:
        """Floats per packed row."""
        return sum(int(p.shape[1]) for p in self._params())

    def fresh_rows(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` packed rows as new keys get them: each table's initial value (its
        default, or N(0, init_std^2)) and its optimizer states' initial values."""
        parts = []
        for table in self.tables:
            if table.fill is None:
                parts.append(rng.normal(0.0, table.init_std, (count, table.dim)))
            else:
                parts.append(np.full((count, table.dim), table.fill))
            parts.extend(np.broadcast_to(initial, (count, table.dim))
                         for _, initial in table.optimizer_states)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _bulk_load(self, bottom, chunk_rows: int = 1 << 18) -> None:
        """Keys ``0 .. initial_rows - 1`` with fresh rows, straight into ``bottom``."""
        if not hasattr(bottom, "bulk_load_chunks"):
            raise TierError(f"{bottom.name} tier: initial rows are bulk-loaded into an SSD "
                            f"tier at the bottom; this cache's bottom tier cannot take them")

        def chunks():
            for number, start in enumerate(range(0, self.initial_rows, chunk_rows)):
                keys = np.arange(start, min(self.initial_rows, start + chunk_rows))
                rng = np.random.default_rng([self.seed, number])
                yield keys, self.fresh_rows(len(keys), rng), np.zeros(len(keys), np.int64)
        bottom.bulk_load_chunks(chunks())

    def _gather(self, slots: np.ndarray) -> np.ndarray:
        index = Tensor(slots.astype(np.int32))
        return np.concatenate([ops.gather(p, index, 0).asnumpy() for p in self._params()],
                              axis=1)

    def _scatter(self, slots: np.ndarray, rows: np.ndarray) -> None:
        index = Tensor(slots.astype(np.int32))
        start = 0
        for param in self._params():
            width = int(param.shape[1])
            ops.scatter_update(param, index, Tensor(np.ascontiguousarray(
                rows[:, start:start + width], np.float32)))
            start += width

    # -- the trainer's surface (as HashIndex) ---------------------------------------------

    @property
    def capacity(self) -> int:
        return self.index.capacity

    @property
    def step(self) -> int:
        return self.index.step

    def train_lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Place the batch's rows, then record its hits as the index does; returns
        ``(slots, newly admitted slots)``. Every slot the step reads becomes dirty."""
        flat = np.asarray(keys).reshape(-1)
        stage = self._take_stage(flat)
        with self._lock:
            unique, counts = np.unique(flat, return_counts=True)
            if self.trace is not None:
                self.trace.append(unique)
            resident = self.index.peek(unique)[0] > 0
            self._count_hits(resident, counts)
            placed = self._place(stage, unique[~resident])
            slots, fresh = self.index.train_lookup(keys)
            self.counters.created += len(fresh)
            used = np.unique(slots[slots > 0])
            self.dirty[used] = True
            self.policy.touch(used, self.index.step)
            self._unpin(stage)
            self._pin_for_pending(np.concatenate([placed, self.index.slot_keys(fresh)]))
        return slots, fresh

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slots of ``keys`` for inference: their rows are placed (fetched from below if
        needed) without recording hits; 0 for keys without a row."""
        flat = np.asarray(keys).reshape(-1)
        with self._lock:
            stage = self._stage(flat)
            self._fetch(stage)
            self._pending.remove(stage)
            self._place(stage, np.empty(0, np.int64))
            slots = self.index.lookup(keys)
            self.policy.touch(np.unique(slots[slots > 0]), self.index.step)
            self._unpin(stage)
        return slots

    def record_trace(self) -> None:
        """Keep each training step's distinct keys in :attr:`trace` (for offline replay:
        :mod:`mindrec.embedding.cache.analysis`)."""
        self.trace = []

    def advance(self) -> None:
        """End the current step."""
        self.index.advance()
        self.counters.steps += 1

    def stats(self):
        """The index's counters (logical admissions and evictions of resident rows)."""
        return self.index.stats()

    def state(self) -> dict[str, np.ndarray]:
        """The index's state (checkpoints; the rows are in :meth:`snapshot`)."""
        return self.index.state()

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the index's state (then :meth:`restore` the rows)."""
        self.index.load_state(state)

    def prefetch(self, batches):
        """``batches`` (tuples whose first item is the keys), while a background thread
        stages the rows of the next ``lookahead`` ones. The tiers are made (and their
        initial rows loaded) now, before the first batch is waited for."""
        _ = self.chain
        if self.lookahead == 0:
            return batches
        return iter(_Prefetcher(self, batches, self.lookahead))

    # -- staging --------------------------------------------------------------------------

    def _stage(self, keys: np.ndarray) -> Stage:
        """Pin the resident keys of a batch and queue it; its fetch is :meth:`_fetch`."""
        unique = np.unique(keys)
        with self._lock:
            slots = self.index.peek(unique)[0]
            stage = Stage(unique, unique[slots == 0], slots[slots > 0])
            self.pins[stage.pinned] += 1
            self._pending.append(stage)
        return stage

    def _fetch(self, stage: Stage) -> None:
        """Look the stage's non-resident keys up in the tiers below."""
        start = time.perf_counter()
        stage.found, stage.rows, stage.steps, _ = self.chain.fetch(stage.fetched)
        stage.fetch_s = time.perf_counter() - start

    def _take_stage(self, keys: np.ndarray) -> Stage:
        """The stage of this training batch: the prefetch thread's, or made now."""
        if not self._pending:
            stage = self._stage(keys)
            stage.inline = True
            self._fetch(stage)
        with self._lock:
            stage = self._pending.popleft()
        if not np.array_equal(stage.keys, np.unique(keys)):
            raise RuntimeError("the staged batch is not the batch being trained: batches "
                               "must come from DeviceCache.prefetch, in order")
        if stage.inline:
            self.counters.exposed_fetch_s += stage.fetch_s
        else:
            self.counters.hidden_fetch_s += stage.fetch_s
        return stage

    def _unpin(self, stage: Stage) -> None:
        self.pins[stage.pinned] -= 1
        stage.pinned = stage.pinned[:0]

    def _pin_for_pending(self, keys: np.ndarray) -> None:
        """Keys that just became resident are pinned for the staged batches holding them."""
        if not len(keys):
            return
        for stage in self._pending:
            mine = keys[np.isin(keys, stage.fetched)]
            if len(mine):
                slots = self.index.peek(mine)[0]
                slots = slots[slots > 0]
                self.pins[slots] += 1
                stage.pinned = np.concatenate([stage.pinned, slots])

    def discard_pending(self) -> None:
        """Forget staged batches that will not be trained (unpinning their rows)."""
        with self._lock:
            while self._pending:
                self._unpin(self._pending.popleft())

    # -- placement ------------------------------------------------------------------------

    def _count_hits(self, resident: np.ndarray, counts: np.ndarray) -> None:
        c = self.counters
        c.unique += len(resident)
        c.unique_hits += int(resident.sum())
        c.lookups += int(counts.sum())
        c.lookup_hits += int(counts[resident].sum())
        c.hit_curve.append(float(resident.mean()) if len(resident) else 1.0)

    def _place(self, stage: Stage, absent: np.ndarray) -> np.ndarray:
        """Make room for the stage's rows found below and for the keys of ``absent``
        (not resident, not below) the index admits this step; place the found rows.
        Returns the keys placed."""
        waiting = (self.index.peek(stage.fetched)[0] == 0) & stage.found
        live = waiting & ~self._expired(stage.steps)
        expired = waiting & ~live
        if expired.any():
            self.chain.delete(stage.fetched[expired])
            self.counters.expired += int(expired.sum())
        keys, rows, steps = stage.fetched[live], stage.rows[live], stage.steps[live]
        self._make_room(len(keys) + self._admissions(np.setdiff1d(absent, keys)), stage)
        if len(keys):
            slots = self.index.place(keys, steps)
            self._scatter(slots, rows)
            self.dirty[slots] = False
            self.counters.fetched += len(keys)
        return keys

    def _admissions(self, keys: np.ndarray) -> int:
        """How many of ``keys`` (distinct, holding no row) the index admits this step."""
        if not len(keys):
            return 0
        _, counts, lasts = self.index.peek(keys)
        seen_before = (lasts != self.index.step).astype(np.int64)
        return int((counts + seen_before >= self.index.permit).sum())

    def _expired(self, steps: np.ndarray) -> np.ndarray:
        evict = self.index.evict
        if evict is None:
            return np.zeros(len(steps), bool)
        return self.index.step - steps > evict

    def _make_room(self, needed: int, stage: Stage) -> None:
        """Free ``needed`` device slots, evicting unpinned rows by the policy; dirty
        victims are written to the tier below."""
        self.index.sweep()  # rows idle too long leave first, as the logical table says
        short = needed - (self.index.capacity - len(self.index))
        if short <= 0:
            return
        occupied = self.index.occupied()
        pinned = self.pins > 0
        pinned[self.index.peek(stage.keys)[0]] = True
        available = int((occupied & ~pinned).sum())
        if available < short:
            raise DeviceTierTooSmall(
                f"device tier of {self.index.capacity:,} rows: a step needs {needed:,} "
                f"free rows and only {available:,} rows are neither free nor pinned (by "
                f"this batch and the {len(self._pending)} staged); make cache.device_rows "
                f"larger than the distinct keys of {self.lookahead + 1} batches")
        victims = self.policy.victims(short, pinned=pinned, occupied=occupied)
        keys = self.index.slot_keys(victims)
        dirty = self.dirty[victims]
        if dirty.any():
            lasts = self.index.peek(keys[dirty])[2]
            self.chain.write_back(keys[dirty], self._gather(victims[dirty]), lasts)
        self.index.release(keys)
        self.dirty[victims] = False
        self.policy.clear(victims)
        self.counters.victims += len(victims)
        self.counters.written_back += int(dirty.sum())

    # -- checkpoints ----------------------------------------------------------------------

    def flush(self) -> None:
        """Write every dirty row down to the bottom tier (device rows stay resident,
        now clean): the tiers then hold every row as of this step."""
        with self._lock:
            slots = np.flatnonzero(self.dirty)
            if len(slots):
                keys = self.index.slot_keys(slots)
                self.chain.write_back(keys, self._gather(slots), self.index.peek(keys)[2])
                self.dirty[slots] = False
            self.chain.flush()

    def snapshot(self, directory: str | Path) -> Path:
        """Flush, then copy the bottom tier's rows (every key's, as of this step) into
        ``directory``, which must not exist; it appears whole or not at all."""
        directory = Path(directory)
        partial = directory.with_name(directory.name + ".partial")
        with self._lock:
            self.flush()
            bottom = self.chain.tiers[-1]
            if not hasattr(bottom, "snapshot"):
                raise TierError(f"{bottom.name} tier: the bottom tier of this cache cannot be "
                                f"snapshotted; put host or ssd at the bottom to checkpoint")
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            bottom.snapshot(partial / SNAPSHOT_NAMES[bottom.name])
            partial.rename(directory)
        return directory

    def restore(self, directory: str | Path) -> None:
        """Start again from a :meth:`snapshot`: the device tier empty (the index keeps
        its logical state), the bottom tier a copy of the snapshot, the tiers between
        them empty (a remote one in a new namespace)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such cache snapshot")
        with self._lock:
            if self._chain is not None:
                self._chain.close()
                self._chain = None
            self._snapshot = directory
            self.index.release(self.index.items()[0])
            self.dirty[:] = False
            self.pins[:] = 0
            self._pending.clear()
            self.policy = by_name(self.policy.name, len(self.dirty))

    def rows(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, packed rows)`` of ``keys`` wherever they are, without moving them."""
        keys = np.asarray(keys, np.int64)
        with self._lock:
            slots = self.index.peek(keys)[0]
            resident = slots > 0
            rows = np.zeros((len(keys), self.width), np.float32)
            if resident.any():
                rows[resident] = self._gather(slots[resident])
            found, below, _, _ = self.chain.fetch(keys[~resident])
            rows[~resident] = below
            present = resident.copy()
            present[~resident] = found
        return present, rows


class _Prefetcher:
    """Iterates over batches while a thread stages the rows of the next ``lookahead``."""

    def __init__(self, cache: DeviceCache, batches, lookahead: int):
        self.cache = cache
        self.queue: queue.Queue = queue.Queue(maxsize=lookahead)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(iter(batches),),
                                       name="cache-prefetch", daemon=True)

    def _run(self, batches) -> None:
        try:
            for batch in batches:
                if self.stop.is_set():
                    return
                stage = self.cache._stage(np.asarray(batch[0]).reshape(-1))
                self.cache._fetch(stage)
                self._put(batch)
        except BaseException as exc:  # raised again in the trainer's thread
            self.error = exc
        finally:
            self._put(None)

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:  # the trainer is behind: wait for a free place
                continue

    def __iter__(self):
        self.thread.start()
        try:
            while True:
                start = time.perf_counter()
                batch = self.queue.get()
                self.cache.counters.exposed_fetch_s += time.perf_counter() - start
                if batch is None:
                    if self.error is not None:
                        raise self.error
                    return
                yield batch
        finally:
            self.stop.set()
            self.thread.join()
            self.cache.discard_pending()
