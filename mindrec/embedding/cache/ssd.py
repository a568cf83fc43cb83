"""The SSD tier: packed rows in RocksDB (``rocksdict`` in raw mode), the bottom store.

Layout: key = the int64 key with its sign bit flipped, 8 bytes big-endian (byte order =
numeric order, so iteration and SST files are sorted); value = the packed row
(:class:`~mindrec.embedding.cache.tiers.RowCodec`). One more key, ``mindrec.ssd-tier``
(16 bytes, so never a row's), holds ``{"format": 1, "width": W}``: a directory without
it, or with another width, is refused.

Writes go through the write-ahead log as one ``WriteBatch`` per put of up to
``batch_rows`` rows, which RocksDB applies atomically: a process killed at any moment
leaves each batch wholly written or not at all (a power loss needs ``sync_writes``).

Example::

    >>> import tempfile
    >>> ssd = SSDTier(tempfile.mkdtemp() + "/table", width=2)
    >>> ssd.put(np.array([-5, 9]), np.ones((2, 2), np.float32), np.array([1, 2]))
    >>> ssd.get(np.array([9, 4]))[0]
    array([ True, False])
    >>> ssd.close()
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import numpy as np
import rocksdict

from mindrec.embedding.cache.errors import TierError, tier_error
from mindrec.embedding.cache.slot_map import check_keys
from mindrec.embedding.cache.tiers import RowCodec, Tier, TierCounters, TierStats

FORMAT_VERSION = 1
_META_KEY = b"mindrec.ssd-tier"
_SIGN = np.uint64(1 << 63)
_MIN_KEYS_PER_THREAD = 512
Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]  # keys, rows, steps


def encode_keys(keys: np.ndarray) -> list[bytes]:
    """RocksDB keys of int64 keys: sign bit flipped, big-endian, so bytes sort as numbers."""
    raw = (np.ascontiguousarray(keys, np.int64).view(np.uint64) ^ _SIGN).astype(">u8").tobytes()
    return [raw[i:i + 8] for i in range(0, len(raw), 8)]


class SSDTier(Tier):
    """Packed rows in a RocksDB directory; the bottom tier (no ``below``, no eviction).

    Args:
        path (str | Path): the database directory (created if absent; an existing one
            must be an SSD tier of this width).
        width (int): floats per packed row.
        sync_writes (bool): fsync the log at each write (survives a power loss).
        batch_rows (int): rows per atomic write batch.
        block_cache_mb (int): RocksDB's cache of uncompressed blocks.
        read_threads (int): threads that read one get's keys (disk reads overlap).
        name (str): the tier's name in errors and stats.

    Raises:
        TierError: naming the path, when it is not writable, is locked by another
            process (or another open SSDTier), is not an SSD tier's database, or holds
            rows of another width or format.
    """

    def __init__(self, path: str | Path, width: int, *, sync_writes: bool = False,
                 batch_rows: int = 1 << 16, block_cache_mb: int = 256, read_threads: int = 16,
                 name: str = "ssd"):
        self.name, self.width, self.below = name, width, None
        self.path = Path(path)
        self.batch_rows = batch_rows
        self.read_threads = read_threads
        self._codec = RowCodec(width)
        self._options = _options(block_cache_mb)
        self._db = self._open()
        if sync_writes:
            write = rocksdict.WriteOptions()
            write.sync = True
            self._db.set_write_options(write)
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix=f"{name}-read")
        self._counters = TierCounters()
        self._lock = threading.RLock()

    # -- the Tier interface ---------------------------------------------------------------

    def get(self, keys):
        keys = check_keys(keys)
        order = np.argsort(keys)  # neighbours share blocks: read in key order
        with self._lock:
            values = self._call("reading rows", self._read, encode_keys(keys[order]))
            try:
                found, rows, steps = self._codec.unpack(values)
            except ValueError as error:
                raise tier_error(self.name, self.path, error) from error
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            found, rows, steps = found[inverse], rows[inverse], steps[inverse]
            hits = int(found.sum())
            self._counters.gets += len(keys)
            self._counters.hits += hits
            self._counters.bytes_read += hits * self._codec.size
        return found, rows, steps

    def put(self, keys, rows, steps):
        keys, rows, steps = self._check(keys, rows, steps)
        with self._lock:
            for start in range(0, len(keys), self.batch_rows):
                end = start + self.batch_rows
                batch = rocksdict.WriteBatch(raw_mode=True)
                for key, value in zip(encode_keys(keys[start:end]),
                                      self._codec.pack(rows[start:end], steps[start:end])):
                    batch.put(key, value)
                self._call("writing rows", self._db.write, batch)
            self._counters.puts += len(keys)
            self._counters.bytes_written += len(keys) * self._codec.size

    def delete(self, keys):
        keys = check_keys(keys)
        with self._lock:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key in encode_keys(keys):
                batch.delete(key)
            self._call("deleting rows", self._db.write, batch)

    def stats(self):
        with self._lock:
            keys = self._property("rocksdb.estimate-num-keys")
            disk = (self._property("rocksdb.total-sst-files-size")
                    + self._property("rocksdb.cur-size-all-mem-tables"))
            return TierStats(name=self.name, rows_held=max(0, keys - 1), bytes_held=disk,
                             capacity_rows=None, **asdict(self._counters))

    def close(self):
        with self._lock:
            self._readers.shutdown()
            self._call("closing", self._db.close)

    # -- bulk load and snapshots ----------------------------------------------------------

    def bulk_load(self, keys: np.ndarray, rows: np.ndarray, steps: np.ndarray,
                  chunk_rows: int = 1_000_000) -> int:
        """Insert or overwrite rows of distinct keys through sorted SST files (one per
        ``chunk_rows`` rows) ingested into the database: no write-ahead log, no
        memtable. Returns the rows loaded."""
        keys, rows, steps = self._check(keys, rows, steps)
        order = np.argsort(keys, kind="stable")

        def chunks():
            for start in range(0, len(order), chunk_rows):
                part = order[start:start + chunk_rows]
                yield keys[part], rows[part], steps[part]
        return self.bulk_load_chunks(chunks())

    def bulk_load_chunks(self, chunks: Iterable[Chunk]) -> int:
        """:meth:`bulk_load` of ``(keys, rows, steps)`` chunks, each sorted by key and
        ingested as one SST file, so memory stays that of one chunk. Chunks may overlap:
        a later one overwrites an earlier one. Returns the rows loaded."""
        staging = self.path / "bulk-load"
        staging.mkdir(exist_ok=True)
        loaded = 0
        options = rocksdict.IngestExternalFileOptions()
        options.set_move_files(True)
        try:
            for keys, rows, steps in chunks:
                keys, rows, steps = self._check(keys, rows, steps)
                if not len(keys):
                    continue
                if (keys[1:] <= keys[:-1]).any():
                    raise ValueError(f"{self.name} tier: a bulk-load chunk's keys must be "
                                     f"distinct and ascending")
                file = staging / f"{uuid.uuid4().hex}.sst"
                with self._lock:
                    self._call("writing an SST file", self._write_sst, file, keys, rows, steps)
                    self._call("ingesting an SST file", self._db.ingest_external_file,
                               [str(file)], options)
                    file.unlink(missing_ok=True)
                    self._counters.puts += len(keys)
                    self._counters.bytes_written += len(keys) * self._codec.size
                loaded += len(keys)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return loaded

    def snapshot(self, directory: str | Path) -> Path:
        """A consistent copy of the database in ``directory`` (which must not exist),
        made of hard links to its immutable files (RocksDB's checkpoint)."""
        directory = Path(directory)
        with self._lock:
            checkpoint = rocksdict.Checkpoint(self._db)
            self._call(f"writing a snapshot to {directory}", checkpoint.create_checkpoint,
                       str(directory))
        return directory

    @classmethod
    def from_snapshot(cls, snapshot: str | Path, path: str | Path, width: int,
                      **kwargs) -> SSDTier:
        """Open a copy of a :meth:`snapshot` at ``path`` (absent or empty), leaving the
        snapshot as it is: its SST files are hard-linked (copied across file systems),
        the rest copied. ``kwargs`` go to :class:`SSDTier`."""
        snapshot, path = Path(snapshot), Path(path)
        name = kwargs.get("name", "ssd")
        if not (snapshot / "CURRENT").is_file():
            raise tier_error(name, snapshot, "not a snapshot (no RocksDB CURRENT file)")
        if path.exists() and any(path.iterdir()):
            raise tier_error(name, path, "a snapshot is restored into an absent or empty "
                             "directory only")
        path.mkdir(parents=True, exist_ok=True)
        for file in snapshot.iterdir():
            _link_or_copy(file, path / file.name)
        return cls(path, width, **kwargs)

    # -- internals ------------------------------------------------------------------------

    def _open(self) -> rocksdict.Rdict:
        """The database at ``self.path``, created if absent, its metadata checked."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise tier_error(self.name, path, "not a directory")
        existing = (path / "CURRENT").is_file()
        if not existing and path.is_dir() and any(path.iterdir()):
            raise tier_error(self.name, path, "a directory that is not empty and is not a "
                             "RocksDB database (no CURRENT file); refusing to write into it")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise tier_error(self.name, path, f"cannot create it: {error.strerror}") from error
        if not os.access(path, os.W_OK):
            raise tier_error(self.name, path, "not writable")
        self._options.create_if_missing(not existing)
        db = self._call("opening", rocksdict.Rdict, str(path), self._options)
        try:
            meta = db.get(_META_KEY)
            if not existing:
                db.put(_META_KEY, json.dumps({"format": FORMAT_VERSION,
                                              "width": self.width}).encode())
            else:
                self._check_meta(meta)
        except BaseException:
            db.close()
            raise
        return db

    def _check_meta(self, meta: bytes | None) -> None:
        if meta is None:
            raise tier_error(self.name, self.path, f"a RocksDB database not written by the "
                             f"SSD tier (no {_META_KEY.decode()} key)")
        stored = json.loads(meta)
        if stored.get("format") != FORMAT_VERSION:
            raise tier_error(self.name, self.path, f"format {stored.get('format')} is not "
                             f"this version's format {FORMAT_VERSION}")
        if stored.get("width") != self.width:
            raise tier_error(self.name, self.path, f"holds rows of width {stored.get('width')}, "
                             f"not {self.width}")

    def _write_sst(self, file: Path, keys, rows, steps) -> None:
        writer = rocksdict.SstFileWriter(options=self._options)
        writer.open(str(file))
        for key, value in zip(encode_keys(keys), self._codec.pack(rows, steps)):
            writer[key] = value
        writer.finish()

    def _read(self, names: list[bytes]) -> list[bytes | None]:
        """Values of ``names`` (sorted), by up to ``read_threads`` threads reading
        neighbouring ranges: a cold read waits on the disk, and RocksDB lets several
        wait at once (the GIL is released meanwhile)."""
        parts = min(self.read_threads, len(names) // _MIN_KEYS_PER_THREAD)
        if parts < 2:
            return self._db.get(names)
        bounds = np.linspace(0, len(names), parts + 1).astype(int).tolist()
        ranges = [names[a:b] for a, b in zip(bounds, bounds[1:])]
        return [v for part in self._readers.map(self._db.get, ranges) for v in part]

    def _property(self, name: str) -> int:
        return int(self._call(f"reading {name}", self._db.property_int_value, name) or 0)

    def _call(self, what: str, function, *args):
        """``function(*args)``; RocksDB's errors (plain ``Exception``) as a
        :class:`TierError` naming the tier, the path and the cause."""
        try:
            return function(*args)
        except TierError:
            raise
        except Exception as error:  # rocksdict raises bare Exception for RocksDB statuses
            raise tier_error(self.name, self.path, f"{what}: {_cause(error)}") from error


def _cause(error: Exception) -> str:
    """RocksDB's message, led by what it means when the meaning is known."""
    text = str(error)
    lower = text.lower()
    if "lock" in lower:
        return f"locked: another process (or another SSDTier in this one) has it open ({text})"
    if "no space left" in lower:
        return f"disk full ({text})"
    if "read-only file system" in lower or "permission denied" in lower:
        return f"not writable ({text})"
    return text


def _options(block_cache_mb: int) -> rocksdict.Options:
    """Raw mode; a block cache, and Bloom filters so that a key is looked for only in
    the files that may hold it."""
    table = rocksdict.BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(rocksdict.Cache(block_cache_mb << 20))
    options = rocksdict.Options(raw_mode=True)
    options.set_block_based_table_factory(table)
    options.set_max_background_jobs(2)
    return options


def _link_or_copy(source: Path, target: Path) -> None:
    """SST files are immutable: a hard link shares them; other files are copied."""
    if source.suffix == ".sst":
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another file system: copy instead
    shutil.copy2(source, target)
