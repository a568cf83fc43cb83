"""Convert a raw Criteo file into a dataset directory of packed MindRecord files.

Two streaming passes in bounded memory: pass 1 assigns each row to train or test, counts
the vocabulary and the dense statistics over train rows only, and hashes the source;
pass 2 encodes every row and writes ``train.mindrecord`` and ``test.mindrecord``. The
output appears atomically: it is built in a hidden sibling directory ``.NAME.tmp-PID``
that is renamed into place once ``meta.json`` (with the size and sha256 of every file) is
written, so a directory with ``meta.json`` is complete. A replaced dataset is first
renamed to ``.NAME.old-PID``. Such directories left by a killed conversion are removed by
the next conversion into the same target.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from mindrec.data.criteo import (DEFAULT_THRESHOLD, OUTLIER_FACTOR, OUTLIER_QUANTILE,
                                 CriteoFormatError, DenseOutlier, DenseTransform, OnBadRow,
                                 Vocabulary, VocabularyBuilder, check_dense_transform, encode,
                                 iter_chunks, splitmix64)
from mindrec.data.dataset import (DATA_FILES, FILES, META_FILE, META_SCHEMA, DatasetError,
                                  file_record, read_meta_json, schema_version)
from mindrec.data.mindrecord import PACK_SIZE, PackedWriter
from mindrec.metrics import log_loss, roc_auc

_BAD_LINES_KEPT = 20
_OVERWRITE_HINT = "--overwrite / overwrite=True replaces a dataset made by this tool"
_PROGRESS_SECONDS = 2.0
_U64 = np.uint64


def in_test_split(line_numbers: np.ndarray, seed: int, test_ratio: float) -> np.ndarray:
    """True for the rows of the test split.

    A row is in the test split when splitmix64(line_number ^ splitmix64(seed)) / 2**64
    < test_ratio: deterministic per line, independent of how the file is chunked.
    """
    key = splitmix64(np.array([seed & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64))
    hashed = splitmix64(np.asarray(line_numbers).astype(np.uint64) ^ key)
    return hashed < _U64(int(test_ratio * 2.0**64))


def truth_path(input_path: str | Path) -> Path:
    """Where the true click probabilities of a synthetic file are: ``<stem>.truth.npy``."""
    input_path = Path(input_path)
    name = input_path.name[:-3] if input_path.name.endswith(".gz") else input_path.name
    return input_path.with_name(Path(name).stem + ".truth.npy")


def convert(input_path: str | Path, out_dir: str | Path, *, threshold: int = DEFAULT_THRESHOLD,
            test_ratio: float = 0.1, seed: int = 0, on_bad_row: OnBadRow = "stop",
            dense_transform: DenseTransform = "max", chunk_rows: int = 100_000,
            overwrite: bool = False, progress: TextIO | None = sys.stderr) -> dict:
    """Convert a raw Criteo file (plain or .gz) into ``out_dir``; return its meta.

    Args:
        input_path: the raw file. A ``<stem>.truth.npy`` beside it (one true click
            probability per line) adds ``bayes_auc`` and ``bayes_logloss`` of the test
            split to the meta (None when the test split holds a single class).
        out_dir: the dataset directory to create (train/test MindRecord, vocabulary.npz,
            meta.json).
        threshold: tokens seen more than this many times in train rows get an id.
        test_ratio: fraction of rows (by line hash) in the test split, in [0, 1).
        seed: seed of the split.
        on_bad_row: "stop" fails at the first bad row; "skip" drops and counts them.
        dense_transform: "max" (x / max of the field over train rows, as the original
            MindRec) or "log1p" (log(1 + x) for x > 0, else 0). With "max", a field
            whose max is an outlier (above 1000x its 99.9th percentile of positive
            values) gets a warning on ``progress`` and in the meta's ``warnings``.
        chunk_rows: lines per chunk (bounds memory; does not change the output).
        overwrite: replace an existing dataset (only once the new one is complete):
            a directory whose ``meta.json`` has a mindrec-dataset schema and that holds
            nothing but the dataset's files. Anything else is refused, as is an
            ``out_dir`` that is or contains the current directory. An empty directory
            is used without it.
        progress: stream for progress lines and warnings, or None for silence.

    Raises:
        CriteoFormatError: bad input (see criteo.iter_chunks) or no valid row.
        FileExistsError: ``out_dir`` is not empty and may not be replaced (see overwrite).
        ValueError: ``out_dir`` is or contains the current directory; a bad argument.
    """
    input_path, out_dir = Path(input_path), Path(os.path.abspath(out_dir))
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in [0, 1), got {test_ratio}")
    check_dense_transform(dense_transform)
    if not input_path.is_file():
        raise FileNotFoundError(f"no input file at {input_path}")
    _check_out_dir(out_dir, overwrite)
    _remove_stale(out_dir, progress)

    tmp = _sibling(out_dir, "tmp", os.getpid())
    if tmp.exists():  # left by a dead process whose pid this one now has
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        options = _Options(threshold, test_ratio, seed, on_bad_row, dense_transform,
                           chunk_rows, progress)
        scan = _scan(input_path, options)
        vocab = scan.builder.build(threshold, dense_transform)
        vocab.save(tmp / FILES["vocabulary"])
        meta = _meta(input_path, scan, vocab, options)
        meta.update(_write_splits(input_path, tmp, vocab, scan, options))
        meta["integrity"] = {name: file_record(tmp / name) for name in DATA_FILES}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


@dataclass(frozen=True)
class _Options:
    threshold: int
    test_ratio: float
    seed: int
    on_bad_row: OnBadRow
    dense_transform: DenseTransform
    chunk_rows: int
    progress: TextIO | None


@dataclass
class _Scan:
    """What pass 1 learnt about the input."""

    builder: VocabularyBuilder = field(default_factory=VocabularyBuilder)
    sha256: str = ""
    lines: int = 0
    rows: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0, "bad": 0})
    positives: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    bad_lines: list[int] = field(default_factory=list)
    truth: np.ndarray | None = None
    warnings: list[dict] = field(default_factory=list)


def _scan(input_path: Path, options: _Options) -> _Scan:
    """Pass 1: split, count train vocabulary and dense statistics, count bad rows, hash."""
    scan = _Scan()
    digest = hashlib.sha256()
    meter = _Progress(options.progress, "pass 1/2")
    for chunk in iter_chunks(input_path, options.chunk_rows, options.on_bad_row, digest=digest):
        is_test = in_test_split(chunk.line_numbers, options.seed, options.test_ratio)
        scan.builder.update(chunk, mask=~is_test)
        for split, mask in (("train", ~is_test), ("test", is_test)):
            scan.rows[split] += int(mask.sum())
            scan.positives[split] += int(chunk.labels[mask].sum())
        scan.rows["bad"] += len(chunk.bad_lines)
        scan.bad_lines.extend(chunk.bad_lines[:_BAD_LINES_KEPT - len(scan.bad_lines)])
        scan.lines += len(chunk) + len(chunk.bad_lines)  # chunks cover every line
        meter.update(len(chunk) + len(chunk.bad_lines))
    meter.done()
    scan.sha256 = digest.hexdigest()
    if scan.rows["train"] + scan.rows["test"] == 0:
        raise CriteoFormatError(input_path, None, f"no valid rows ({scan.rows['bad']} bad)")
    if scan.rows["train"] == 0:
        raise ValueError(f"{input_path}: the split left no training rows (test_ratio "
                         f"{options.test_ratio}, {scan.rows['test']} test rows)")
    scan.truth = _load_truth(input_path, scan.lines)
    if options.dense_transform == "max":
        scan.warnings = [_outlier_warning(input_path, outlier)
                         for outlier in scan.builder.dense_outliers()]
    for warning in scan.warnings:
        _say(options.progress, f"warning: {warning['message']}")
    return scan


def _outlier_warning(input_path: Path, outlier: DenseOutlier) -> dict:
    """The meta entry (with its message) of a dense field whose max is an outlier."""
    name = outlier.field
    message = (f"{input_path}:{outlier.line}: field {name}: max {outlier.max:.6g} is "
               f"{outlier.max / outlier.percentile:.4g}x its {OUTLIER_QUANTILE * 100:g}th "
               f"percentile of positive values (about {outlier.percentile:.4g}; warned above "
               f"{OUTLIER_FACTOR:g}x): with the 'max' dense transform (v / max) nearly every "
               f"{name} value encodes as about 0. Consider --dense-transform log1p "
               "(dense_transform='log1p')")
    return {"kind": "dense_outlier", **dataclasses.asdict(outlier), "message": message}


def _load_truth(input_path: Path, lines: int) -> np.ndarray | None:
    """The true click probabilities beside a synthetic input, or None."""
    path = truth_path(input_path)
    if not path.exists():
        return None
    try:
        truth = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy file ({exc}): damaged") from exc
    if not isinstance(truth, np.ndarray):
        raise ValueError(f"{path}: an .npz archive, expected one .npy array")
    if truth.ndim != 1 or not np.issubdtype(truth.dtype, np.floating):
        raise ValueError(f"{path}: expected a 1-d float array, got {truth.dtype} {truth.shape}")
    if truth.shape[0] != lines:
        raise ValueError(f"{path}: holds {truth.shape[0]} probabilities but {input_path} has "
                         f"{lines} lines")
    return truth


def _write_splits(input_path: Path, out: Path, vocab: Vocabulary, scan: _Scan,
                  options: _Options) -> dict:
    """Pass 2: encode all rows into the train and test files; return Bayes metrics if known."""
    test_labels, test_lines = [], []
    meter = _Progress(options.progress, "pass 2/2")
    with (PackedWriter(out / FILES["train"]) as train,
          PackedWriter(out / FILES["test"]) as test):
        for chunk in iter_chunks(input_path, options.chunk_rows, options.on_bad_row):
            ids, vals, labels = encode(chunk, vocab)
            is_test = in_test_split(chunk.line_numbers, options.seed, options.test_ratio)
            train.add(ids[~is_test], vals[~is_test], labels[~is_test])
            test.add(ids[is_test], vals[is_test], labels[is_test])
            if scan.truth is not None:
                test_labels.append(labels[is_test])
                test_lines.append(chunk.line_numbers[is_test])
            meter.update(len(chunk) + len(chunk.bad_lines))
        meter.done()
        if (train.rows, test.rows) != (scan.rows["train"], scan.rows["test"]):
            raise RuntimeError(f"{input_path} changed during conversion: pass 1 counted "
                               f"{scan.rows['train']}/{scan.rows['test']} train/test rows, "
                               f"pass 2 {train.rows}/{test.rows}")
    if scan.truth is None:
        return {}
    labels = np.concatenate(test_labels)
    probabilities = np.asarray(scan.truth[np.concatenate(test_lines) - 1], dtype=np.float64)
    both_classes = 0 < labels.sum() < labels.size
    return {"bayes_auc": roc_auc(labels, probabilities) if both_classes else None,
            "bayes_logloss": log_loss(labels, probabilities) if labels.size else None}


def _meta(input_path: Path, scan: _Scan, vocab: Vocabulary, options: _Options) -> dict:
    return {
        "schema": META_SCHEMA,
        "source": {"path": str(input_path.resolve()), "size_bytes": input_path.stat().st_size,
                   "sha256": scan.sha256, "format": "criteo-raw"},
        "rows": dict(scan.rows),
        "bad_lines": list(scan.bad_lines),
        "threshold": options.threshold,
        "dense_transform": options.dense_transform,
        "warnings": scan.warnings,
        "test_ratio": options.test_ratio,
        "seed": options.seed,
        "vocab_size": vocab.size,
        "field_sizes": vocab.field_sizes,
        "pack_size": PACK_SIZE,
        "files": dict(FILES),
        "positive_rate": {split: scan.positives[split] / scan.rows[split] if scan.rows[split]
                          else None for split in ("train", "test")},
    }


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` (absolute) that this conversion may not create or replace."""
    if out_dir.is_symlink():
        raise FileExistsError(f"{out_dir} is a symbolic link: give --out (out_dir) the "
                              "directory itself")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    cwd = Path.cwd().resolve()
    if out_dir.resolve() == cwd or out_dir.resolve() in cwd.parents:
        raise ValueError(f"{out_dir} is the current directory or contains it: a dataset is "
                         "published by renaming a finished directory into place, which "
                         "cannot replace the directory you are in; give --out (out_dir) a "
                         "path outside it, such as ./dataset")
    entries = sorted(out_dir.iterdir()) if out_dir.is_dir() else []
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty ({_OVERWRITE_HINT})")
    reason = _not_a_dataset(out_dir, entries)
    if reason is not None:
        raise FileExistsError(f"{out_dir}: not replaced: {reason} ({_OVERWRITE_HINT}: a "
                              f"directory with its {META_FILE} and nothing but its files)")


def _not_a_dataset(out_dir: Path, entries: list[Path]) -> str | None:
    """Why the non-empty ``out_dir`` is not recognisably a dataset of ours, or None."""
    ours = {META_FILE, *DATA_FILES}
    foreign = [entry.name + ("/" if entry.is_dir() else "") for entry in entries
               if entry.name not in ours or entry.is_symlink() or not entry.is_file()]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5
                                          else "")
        return f"it holds {shown}, which this tool does not write"
    if not (out_dir / META_FILE).is_file():
        return f"it has no {META_FILE}"
    try:
        schema = read_meta_json(out_dir / META_FILE).get("schema")
    except DatasetError as exc:
        return str(exc)
    if schema_version(schema) is None:
        return f"its {META_FILE} has schema {schema!r}, not a mindrec dataset's"
    return None


def _sibling(out_dir: Path, kind: str, pid: int) -> Path:
    """The hidden directory ``.NAME.KIND-PID`` beside ``out_dir`` (kind: tmp or old)."""
    return out_dir.parent / f".{out_dir.name}.{kind}-{pid}"


def _remove_stale(out_dir: Path, progress: TextIO | None) -> None:
    """Remove the ``.NAME.tmp-PID`` and ``.NAME.old-PID`` directories beside ``out_dir``
    whose process is no longer running (left by a killed conversion)."""
    if not out_dir.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(?:tmp|old)-([0-9]+)")
    for entry in sorted(out_dir.parent.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None or entry.is_symlink() or not entry.is_dir():
            continue
        pid = int(match.group(1))
        if _process_alive(pid):
            continue
        shutil.rmtree(entry)
        _say(progress, f"removed {entry}: left by process {pid}, which is no longer running")


def _process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` directory to ``out_dir``, replacing an old dataset."""
    _check_out_dir(out_dir, overwrite)  # again: out_dir may have changed meanwhile
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = _sibling(out_dir, "old", os.getpid())
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old)


def _say(stream: TextIO | None, line: str) -> None:
    """Write one line to a progress stream (None: nowhere)."""
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


class _Progress:
    """Prints "LABEL: N rows (R rows/s)" lines at most every _PROGRESS_SECONDS, and at the end."""

    def __init__(self, stream: TextIO | None, label: str):
        self._stream = stream
        self._label = label
        self._rows = 0
        self._printed_rows = -1
        self._start = self._last = time.perf_counter()

    def update(self, rows: int) -> None:
        self._rows += rows
        if time.perf_counter() - self._last >= _PROGRESS_SECONDS:
            self._print()

    def done(self) -> None:
        if self._rows != self._printed_rows:
            self._print()

    def _print(self) -> None:
        self._last = time.perf_counter()
        self._printed_rows = self._rows
        rate = self._rows / max(self._last - self._start, 1e-9)
        _say(self._stream, f"{self._label}: {self._rows:,} rows ({rate:,.0f} rows/s)")
