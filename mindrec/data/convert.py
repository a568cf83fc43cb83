"""Convert a raw Criteo file into a dataset directory of packed MindRecord files.

Two streaming passes in bounded memory: pass 1 assigns each row to train or test, counts
the vocabulary and the dense maxima over train rows only, and hashes the source; pass 2
encodes every row and writes ``train.mindrecord`` and ``test.mindrecord``. The output
appears atomically: it is built in a hidden sibling directory that is renamed into
place once ``meta.json`` is written, so a directory with ``meta.json`` is complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from mindrec.data.criteo import (CriteoFormatError, OnBadRow, Vocabulary, VocabularyBuilder,
                                 encode, iter_chunks)
from mindrec.data.dataset import FILES, META_FILE, META_SCHEMA
from mindrec.data.mindrecord import PACK_SIZE, PackedWriter
from mindrec.metrics import log_loss, roc_auc

DEFAULT_THRESHOLD = 2
"""Default count threshold: a token is admitted when seen more than this many times.

Suits the synthetic data (about 300k rows). The original MindRec uses 100 for the 45M-row
Kaggle set (6 for Criteo 1TB): pass ``threshold=100`` (``--threshold 100``) for real data.
"""

_BAD_LINES_KEPT = 20
_PROGRESS_SECONDS = 2.0
_U64 = np.uint64


def in_test_split(line_numbers: np.ndarray, seed: int, test_ratio: float) -> np.ndarray:
    """True for the rows of the test split.

    A row is in the test split when splitmix64(line_number ^ splitmix64(seed)) / 2**64
    < test_ratio: deterministic per line, independent of how the file is chunked.
    """
    key = _splitmix64(np.array([seed & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64))
    hashed = _splitmix64(np.asarray(line_numbers).astype(np.uint64) ^ key)
    return hashed < _U64(int(test_ratio * 2.0**64))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def truth_path(input_path: str | Path) -> Path:
    """Where the true click probabilities of a synthetic file are: ``<stem>.truth.npy``."""
    input_path = Path(input_path)
    name = input_path.name[:-3] if input_path.name.endswith(".gz") else input_path.name
    return input_path.with_name(Path(name).stem + ".truth.npy")


def convert(input_path: str | Path, out_dir: str | Path, *, threshold: int = DEFAULT_THRESHOLD,
            test_ratio: float = 0.1, seed: int = 0, on_bad_row: OnBadRow = "stop",
            chunk_rows: int = 100_000, overwrite: bool = False,
            progress: TextIO | None = sys.stderr) -> dict:
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
        chunk_rows: lines per chunk (bounds memory; does not change the output).
        overwrite: replace a non-empty ``out_dir`` (only once the new one is complete).
        progress: stream for progress lines, or None for silence.

    Raises:
        CriteoFormatError: bad input (see criteo.iter_chunks) or no valid row.
        FileExistsError: ``out_dir`` is not empty and overwrite is False.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"test_ratio must be in [0, 1), got {test_ratio}")
    if not input_path.is_file():
        raise FileNotFoundError(f"no input file at {input_path}")
    _check_out_dir(out_dir, overwrite)

    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        options = _Options(threshold, test_ratio, seed, on_bad_row, chunk_rows, progress)
        scan = _scan(input_path, options)
        vocab = scan.builder.build(threshold)
        vocab.save(tmp / FILES["vocabulary"])
        meta = _meta(input_path, scan, vocab, options)
        meta.update(_write_splits(input_path, tmp, vocab, scan, options))
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


def _scan(input_path: Path, options: _Options) -> _Scan:
    """Pass 1: split, count train vocabulary and dense maxima, count bad rows, hash."""
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
    return scan


def _load_truth(input_path: Path, lines: int) -> np.ndarray | None:
    """The true click probabilities beside a synthetic input, or None."""
    path = truth_path(input_path)
    if not path.exists():
        return None
    truth = np.load(path, allow_pickle=False, mmap_mode="r")
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
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty (pass overwrite=True to replace it)")


def _publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` directory to ``out_dir``, replacing an old one."""
    _check_out_dir(out_dir, overwrite)
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old)


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
        if self._stream is None:
            return
        rate = self._rows / max(self._last - self._start, 1e-9)
        self._stream.write(f"{self._label}: {self._rows:,} rows ({rate:,.0f} rows/s)\n")
        self._stream.flush()
