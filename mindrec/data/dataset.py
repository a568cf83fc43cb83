"""A converted dataset directory: its file names, its ``meta.json`` and its checks.

Readers (the trainer, the harness) use this module; only the converter writes datasets.
``meta.json`` records the size and sha256 of every data file, so a truncated or replaced
file is named before MindSpore reads it: :func:`open_dataset` (what readers call) checks
the sizes, :func:`verify` with ``full=True`` also the hashes and the row counts.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

_SCHEMA_NAME = "mindrec-dataset"
META_SCHEMA = f"{_SCHEMA_NAME}/2"
META_FILE = "meta.json"
FILES = {"train": "train.mindrecord", "test": "test.mindrecord", "vocabulary": "vocabulary.npz"}
INDEX_SUFFIX = ".db"  # MindSpore writes X.mindrecord and its index X.mindrecord.db
DATA_FILES = tuple(sorted([FILES["vocabulary"], *(FILES[split] + suffix
                                                  for split in ("train", "test")
                                                  for suffix in ("", INDEX_SUFFIX))]))
"""Every file of a dataset besides ``meta.json``; ``meta.json`` records each one's size and hash."""


class DatasetError(ValueError):
    """A dataset directory or one of its files that is damaged, incomplete or out of date."""


def schema_version(schema: object) -> int | None:
    """The version N of a ``mindrec-dataset/N`` schema string, or None for anything else."""
    prefix = f"{_SCHEMA_NAME}/"
    if isinstance(schema, str) and schema.startswith(prefix) and schema[len(prefix):].isdigit():
        return int(schema[len(prefix):])
    return None


def read_meta_json(path: Path) -> dict:
    """Parse a ``meta.json`` file into a dict (any schema)."""
    try:
        meta = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise DatasetError(f"{path}: not valid JSON ({exc}): damaged") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: holds a JSON {type(meta).__name__}, not an object: damaged")
    return meta


def load_meta(data_dir: str | Path) -> dict:
    """Read ``meta.json`` of a converted dataset directory (no check of the data files).

    Raises:
        FileNotFoundError: no ``meta.json`` in ``data_dir``.
        DatasetError: ``meta.json`` is not JSON, or of another schema version.
    """
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir}: not a converted dataset (no {META_FILE})")
    meta = read_meta_json(path)
    schema = meta.get("schema")
    if schema == META_SCHEMA:
        return meta
    version = schema_version(schema)
    if version is None:
        raise DatasetError(f"{path}: schema {schema!r} is not a mindrec dataset's "
                           f"(expected {META_SCHEMA!r})")
    made_by = "an older" if version < schema_version(META_SCHEMA) else "a newer"
    raise DatasetError(f"{path}: this dataset ({schema}) was made by {made_by} version of "
                       f"mindrec-bench, which reads {META_SCHEMA}: convert the raw data again "
                       "(mindrec-bench data convert ... --overwrite)")


def file_record(path: Path) -> dict:
    """What ``meta.json`` records of a data file: its size in bytes and sha256."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"size_bytes": path.stat().st_size, "sha256": digest}


def open_dataset(data_dir: str | Path) -> dict:
    """The meta of a dataset about to be read, after the quick check (see :func:`verify`)."""
    return verify(data_dir, full=False)


def verify(data_dir: str | Path, full: bool) -> dict:
    """Check a dataset directory against its ``meta.json``; return the meta.

    Args:
        data_dir: a directory written by ``mindrec.data.convert.convert``.
        full: besides that every file exists with its recorded size (quick: a few
            ``stat`` calls), check every file's sha256 and the row counts of the splits
            (reads every byte).

    Raises:
        FileNotFoundError: no ``meta.json``.
        DatasetError: the first problem found, naming the file and what is wrong.
    """
    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    records = _file_records(meta, data_dir / META_FILE)
    for name in DATA_FILES:
        _check_size(data_dir / name, records[name]["size_bytes"])
    if full:
        for name in DATA_FILES:
            _check_sha256(data_dir / name, records[name]["sha256"])
        _check_rows(data_dir, meta)
    return meta


def _file_records(meta: dict, meta_path: Path) -> dict:
    """``meta["integrity"]``, checked to hold a size and a hash for every data file."""
    records = meta.get("integrity")
    if not isinstance(records, dict):
        raise DatasetError(f"{meta_path}: no 'integrity' object (sizes and hashes of the files)")
    for name in DATA_FILES:
        record = records.get(name)
        if not (isinstance(record, dict) and isinstance(record.get("size_bytes"), int)
                and isinstance(record.get("sha256"), str)):
            raise DatasetError(f"{meta_path}: integrity[{name!r}] should be "
                               f"{{'size_bytes': int, 'sha256': str}}, got {record!r}")
    return records


def _check_size(path: Path, expected: int) -> None:
    if not path.is_file():
        raise DatasetError(f"{path}: missing ({META_FILE} lists it)")
    size = path.stat().st_size
    if size != expected:
        change = "truncated" if size < expected else "grown"
        raise DatasetError(f"{path}: {size:,} bytes, {META_FILE} records {expected:,}: "
                           f"{change} or replaced")


def _check_sha256(path: Path, expected: str) -> None:
    actual = file_record(path)["sha256"]
    if actual != expected:
        raise DatasetError(f"{path}: sha256 {actual}, {META_FILE} records {expected}: "
                           "damaged or replaced")


def _check_rows(data_dir: Path, meta: dict) -> None:
    """Compare each split's rows with ``meta["rows"]`` (the files' hashes already matched)."""
    from mindrec.data.mindrecord import count_rows  # MindSpore, only for the full check
    for split in ("train", "test"):
        path = data_dir / FILES[split]
        rows, expected = count_rows(path), (meta.get("rows") or {}).get(split)
        if rows != expected:
            raise DatasetError(f"{path}: holds {rows:,} rows, {META_FILE} records {expected!r}")
