"""Packed MindRecord files: 1000 encoded samples per record, as the original MindRec.

A record holds ``feat_ids`` (int32, n*39), ``feat_vals`` (float32, n*39) and ``label``
(float32, n), flattened; every record but the last of a file holds PACK_SIZE samples.
Packing is what makes MindRecord fast: reading works per record, never per row.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import mindspore.dataset as ds
import numpy as np
from mindspore.mindrecord import FileWriter

from mindrec.data.criteo import NUM_FIELDS
from mindrec.data.dataset import INDEX_SUFFIX, DatasetError

PACK_SIZE = 1000
SCHEMA = {
    "feat_ids": {"type": "int32", "shape": [-1]},
    "feat_vals": {"type": "float32", "shape": [-1]},
    "label": {"type": "float32", "shape": [-1]},
}
_COLUMNS = ["feat_ids", "feat_vals", "label"]
_RECORDS_PER_WRITE = 32  # records handed to FileWriter.write_raw_data at once
_SHUFFLE_RECORDS = 8  # records whose rows are shuffled together

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


class PackedWriter:
    """Write encoded rows to one MindRecord file, PACK_SIZE rows per record.

    MindSpore writes ``path`` and its index ``path.db``; an existing pair is replaced.

    Example::

        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> ids = np.zeros((2500, NUM_FIELDS), np.int32)
        >>> vals = np.ones((2500, NUM_FIELDS), np.float32)
        >>> with PackedWriter(out / "train.mindrecord") as writer:
        ...     writer.add(ids, vals, np.zeros(2500, np.float32))
        >>> count_rows(out / "train.mindrecord")  # 3 records: 1000 + 1000 + 500 rows
        2500
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._writer = FileWriter(str(self.path), shard_num=1, overwrite=True)
        self._writer.add_schema(SCHEMA, "mindrec packed samples")
        self._pending: list[Batch] = []
        self._pending_rows = 0
        self._rows = 0
        self._closed = False

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return self._rows

    def add(self, ids: np.ndarray, vals: np.ndarray, labels: np.ndarray) -> None:
        """Buffer rows: ids (n, 39), vals (n, 39), labels (n,) or (n, 1)."""
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        ids = np.asarray(ids, dtype=np.int32)
        vals = np.asarray(vals, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.float32).reshape(-1)
        n = labels.shape[0]
        if ids.shape != (n, NUM_FIELDS) or vals.shape != (n, NUM_FIELDS):
            raise ValueError(f"expected ids and vals of shape ({n}, {NUM_FIELDS}), "
                             f"got {ids.shape} and {vals.shape}")
        self._pending.append((ids, vals, labels))
        self._pending_rows += n
        self._rows += n
        if self._pending_rows >= PACK_SIZE * _RECORDS_PER_WRITE:
            self._write(final=False)

    def _write(self, final: bool) -> None:
        """Write the buffered full records (and the partial one too if ``final``)."""
        ids, vals, labels = _concat(self._pending)
        n_out = self._pending_rows if final else self._pending_rows // PACK_SIZE * PACK_SIZE
        records = [{"feat_ids": ids[i:i + PACK_SIZE].reshape(-1),
                    "feat_vals": vals[i:i + PACK_SIZE].reshape(-1),
                    "label": labels[i:i + PACK_SIZE]} for i in range(0, n_out, PACK_SIZE)]
        for i in range(0, len(records), _RECORDS_PER_WRITE):
            self._writer.write_raw_data(records[i:i + _RECORDS_PER_WRITE])
        self._pending_rows -= n_out
        self._pending = [(ids[n_out:], vals[n_out:], labels[n_out:])] if self._pending_rows else []

    def close(self) -> None:
        """Write the last (possibly partial) record and commit the file."""
        if self._closed:
            return
        if self._pending_rows:
            self._write(final=True)
        self._writer.commit()
        self._closed = True

    def __enter__(self) -> PackedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # leave the file uncommitted: it is incomplete
            self._closed = True


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(column) for column in zip(*parts))


@contextmanager
def _reading(path: str | Path):
    """Turn MindSpore's error for an unreadable file (a RuntimeError carrying a C++ call
    stack) into a DatasetError naming the file, with MindSpore's reason."""
    try:
        yield
    except RuntimeError as exc:
        raise DatasetError(f"{path}: MindSpore cannot read this MindRecord file or its "
                           f"{INDEX_SUFFIX} index ({_mindspore_reason(exc)}): damaged or "
                           "incomplete (`mindrec-bench data verify DIR` checks a dataset)") from exc


def _mindspore_reason(exc: RuntimeError) -> str:
    """The line of a MindSpore error that says what is wrong (its ``[ERROR]`` line, else
    the first), without the C++ call stack that follows."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [repr(exc)]
    reason = next((line for line in lines if line.startswith("[ERROR]")), lines[0])
    return reason.removeprefix("[ERROR]").strip()


def _num_records(path: str | Path) -> int:
    with _reading(path):
        return ds.MindDataset(str(path), columns_list=["label"], shuffle=False).get_dataset_size()


def count_rows(path: str | Path) -> int:
    """Rows in a file written by PackedWriter (reads only its last record)."""
    n_records = _num_records(path)
    if n_records == 0:
        return 0
    with _reading(path):
        last = ds.MindDataset(str(path), columns_list=["label"],
                              sampler=ds.SubsetSampler([n_records - 1]))
        (label,) = next(last.create_tuple_iterator(output_numpy=True, num_epochs=1))
    return (n_records - 1) * PACK_SIZE + len(label)


def _iter_records(path: str | Path, order: list[int] | None) -> Iterator[Batch]:
    """Records as (ids (n, 39), vals (n, 39), labels (n, 1)), in file order or ``order``."""
    with _reading(path):
        if order is None:
            dataset = ds.MindDataset(str(path), columns_list=_COLUMNS, shuffle=False)
        else:
            dataset = ds.MindDataset(str(path), columns_list=_COLUMNS,
                                     sampler=ds.SubsetSampler(order))
        for ids, vals, labels in dataset.create_tuple_iterator(output_numpy=True, num_epochs=1):
            yield ids.reshape(-1, NUM_FIELDS), vals.reshape(-1, NUM_FIELDS), labels.reshape(-1, 1)


def _shuffle_rows(records: Iterable[Batch], rng: np.random.Generator) -> Iterator[Batch]:
    """Shuffle rows within consecutive groups of _SHUFFLE_RECORDS records."""
    group: list[Batch] = []
    for record in records:
        group.append(record)
        if len(group) == _SHUFFLE_RECORDS:
            yield _permuted(_concat(group), rng)
            group = []
    if group:
        yield _permuted(_concat(group), rng)


def _permuted(batch: Batch, rng: np.random.Generator) -> Batch:
    order = rng.permutation(len(batch[2]))
    return tuple(column[order] for column in batch)


def _rebatch(blocks: Iterable[Batch], batch_size: int, drop_remainder: bool) -> Iterator[Batch]:
    """Cut a stream of row blocks into batches of exactly ``batch_size`` rows."""
    pending: list[Batch] = []
    pending_rows = 0
    for block in blocks:
        pending.append(block)
        pending_rows += len(block[2])
        if pending_rows < batch_size:
            continue
        ids, vals, labels = _concat(pending)
        n_full = pending_rows // batch_size * batch_size
        for i in range(0, n_full, batch_size):
            yield ids[i:i + batch_size], vals[i:i + batch_size], labels[i:i + batch_size]
        pending_rows -= n_full
        pending = [(ids[n_full:], vals[n_full:], labels[n_full:])] if pending_rows else []
    if pending_rows and not drop_remainder:
        yield _concat(pending)


def iter_batches(path: str | Path, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_remainder: bool = False) -> Iterator[Batch]:
    """Read a packed MindRecord file in batches of exactly ``batch_size`` rows.

    Args:
        path: a file written by PackedWriter.
        batch_size: rows per batch; the last batch may be smaller unless drop_remainder.
        shuffle: visit records in a random order and shuffle rows within groups of a
            few records (seeded by ``seed``; memory stays bounded).
        seed: seed of the shuffle.
        drop_remainder: drop a final batch smaller than batch_size.

    Yields:
        ids int32 (B, 39), vals float32 (B, 39), labels float32 (B, 1).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no MindRecord file at {path}")
    if not shuffle:
        yield from _rebatch(_iter_records(path, None), batch_size, drop_remainder)
        return
    rng = np.random.default_rng(seed)
    n_records = _num_records(path)
    if n_records == 0:
        return
    records = _iter_records(path, rng.permutation(n_records).tolist())
    yield from _rebatch(_shuffle_rows(records, rng), batch_size, drop_remainder)
