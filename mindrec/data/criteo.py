"""Criteo raw format: streaming parser, vocabulary and the MindRec feature encoding.

A raw line is tab-separated: a 0/1 label, 13 integer fields (may be negative) and 26
categorical hex tokens; an empty field is missing. Lines end in LF or CRLF, and a UTF-8
byte order mark at the start of the file is skipped. Files are plain text or gzip (by the
``.gz`` suffix). Parsing works on whole chunks of bytes with numpy: no Python code runs
per row or per token, except to word the error for a bad row.
"""
from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property, reduce
from itertools import islice
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mindrec.data.dataset import DatasetError

NUM_DENSE = 13
NUM_CATEGORICAL = 26
NUM_FIELDS = NUM_DENSE + NUM_CATEGORICAL
NUM_COLUMNS = 1 + NUM_FIELDS

OnBadRow = Literal["stop", "skip"]

DEFAULT_THRESHOLD = 2
"""Default count threshold: a token is admitted when seen more than this many times.

Suits the synthetic data (about 300k rows). The original MindRec uses 100 for the 45M-row
Kaggle set (6 for Criteo 1TB): pass ``threshold=100`` (``--threshold 100``) for real data.
"""
DenseTransform = Literal["max", "log1p"]
DENSE_TRANSFORMS = ("max", "log1p")
"""How a dense value x is encoded: "max" is x / max(field), as the original MindRec (and
the published figures); "log1p" is log(1 + x) for x > 0, else 0."""
OUTLIER_FACTOR = 1000.0
OUTLIER_QUANTILE = 0.999
"""A dense field's max is an outlier when above OUTLIER_FACTOR x the field's
OUTLIER_QUANTILE quantile of positive values (see VocabularyBuilder.dense_outliers)."""

_MAX_INT_CHARS = 20  # sign + 19 digits
_MAX_HEX_CHARS = 16
_BINS_PER_OCTAVE = 16  # log-scale histogram of dense values: bin width 2**(1/16), 4.4%
_OCTAVES = 68  # 2**68 > 10**20, above any integer of _MAX_INT_CHARS characters
_PADDING = 24  # bytes after a chunk, so 24-byte windows may start at any token
_LOW_BYTES = np.array([(1 << (8 * j)) - 1 for j in range(9)], dtype=np.uint64)
_TAB, _NEWLINE, _RETURN, _MINUS = 9, 10, 13, 45
_BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark
_VOCAB_SCHEMA = "mindrec-vocabulary/1"
_INTEGER = re.compile(rb"-?[0-9]+")
_HEX_TOKEN = re.compile(rb"[0-9a-fA-F]+")

# Byte -> hex digit value; 255 marks a byte that is not a hex digit; 0 (padding) -> 0.
_HEX_VALUE = np.full(256, 255, dtype=np.uint8)
_HEX_VALUE[0] = 0
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_VALUE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_VALUE[_c] = 10 + _i


def check_dense_transform(value: object) -> None:
    """Raise ValueError unless ``value`` is one of DENSE_TRANSFORMS."""
    if value not in DENSE_TRANSFORMS:
        raise ValueError(f"dense_transform must be one of {', '.join(DENSE_TRANSFORMS)}, "
                         f"got {value!r}")


def field_name(index: int) -> str:
    """Name of feature field ``index`` (0..38) as Criteo documents it: I1..I13, C1..C26."""
    return f"I{index + 1}" if index < NUM_DENSE else f"C{index - NUM_DENSE + 1}"


class CriteoFormatError(ValueError):
    """A raw Criteo file that cannot be read; the message is ``PATH:LINE: reason``."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {reason}")


@dataclass
class RawChunk:
    """The good rows of one chunk of a raw file, decoded.

    Attributes:
        line_numbers: int64 (n,), 1-based line number of each row in the file.
        labels: int8 (n,), 0 or 1.
        dense: float64 (n, 13), NaN where missing.
        categorical: int64 (n, 26), the hex token's value, -1 where missing.
        bad_lines: line numbers of the bad rows skipped in this chunk.
    """

    line_numbers: np.ndarray
    labels: np.ndarray
    dense: np.ndarray
    categorical: np.ndarray
    bad_lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def iter_chunks(path: str | Path, chunk_rows: int = 100_000, on_bad_row: OnBadRow = "stop",
                digest=None) -> Iterator[RawChunk]:
    """Stream a raw Criteo file as decoded chunks of at most ``chunk_rows`` lines.

    Args:
        path: plain text file, or gzip when the name ends in ``.gz``.
        chunk_rows: lines per chunk; memory is bounded by it.
        on_bad_row: "stop" raises CriteoFormatError at the first bad row; "skip" drops
            bad rows and lists their line numbers in ``RawChunk.bad_lines``.
        digest: optional hashlib object updated with every byte of the file as stored.

    Raises:
        CriteoFormatError: a bad row (with "stop"), a file without any line, or a
            truncated or corrupt gzip stream.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if on_bad_row not in ("stop", "skip"):
        raise ValueError(f"on_bad_row must be 'stop' or 'skip', got {on_bad_row!r}")
    path = Path(path)
    first_line = 1
    with _open_lines(path, digest) as (stored, lines_in):
        for lines in _line_lists(path, lines_in, chunk_rows):
            yield _parse_chunk(path, lines, first_line, on_bad_row)
            first_line += len(lines)
        if digest is not None:
            while stored.read(1 << 20):  # hash whatever the line reader left unread
                pass
    if first_line == 1:
        raise CriteoFormatError(path, None, "file is empty (no rows)")


def iter_raw_lines(path: str | Path, chunk_rows: int = 10_000) -> Iterator[list[bytes]]:
    """The lines of a raw Criteo file (plain or ``.gz``) as stored, without their line
    ends, in lists of at most ``chunk_rows`` (a stream's producer replays them).

    Raises:
        CriteoFormatError: a truncated or corrupt gzip stream, naming the file.
    """
    path = Path(path)
    with _open_lines(path, None) as (_, lines_in):
        for lines in _line_lists(path, lines_in, chunk_rows):
            yield [line.rstrip(b"\r\n") for line in lines]


def _line_lists(path: Path, lines_in, chunk_rows: int) -> Iterator[list[bytes]]:
    """The lines of an open file in lists of at most ``chunk_rows``, the byte order mark
    taken off the first; a broken gzip stream is a CriteoFormatError naming ``path``."""
    first = True
    while True:
        try:
            lines = list(islice(lines_in, chunk_rows))
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise CriteoFormatError(path, None, f"truncated or corrupt gzip stream: {exc}") \
                from exc
        if not lines:
            return
        if first:
            lines[0] = lines[0].removeprefix(_BOM)
            first = False
        yield lines


class _HashingReader(io.RawIOBase):
    """A raw binary reader that feeds every byte it reads into a hashlib object."""

    def __init__(self, file: BinaryIO, digest):
        self._file = file
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._file.readinto(buffer)
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return n


@contextmanager
def _open_lines(path: Path, digest):
    """Yield (byte reader of the file as stored, iterator over its decompressed lines)."""
    with ExitStack() as stack:
        raw = stack.enter_context(open(path, "rb", buffering=0))
        if digest is not None:
            raw = stack.enter_context(_HashingReader(raw, digest))
        stored = stack.enter_context(io.BufferedReader(raw, buffer_size=1 << 20))
        if path.suffix == ".gz":
            yield stored, stack.enter_context(gzip.GzipFile(fileobj=stored, mode="rb"))
        else:
            yield stored, stored


def _parse_chunk(path: Path, lines: list[bytes], first_line: int,
                 on_bad_row: OnBadRow) -> RawChunk:
    """Decode a list of raw lines (newline-terminated, except possibly the last)."""
    if not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    # Zero padding lets fixed-width windows start at any token (see _token_bytes).
    buf = np.frombuffer(b"".join(lines) + bytes(_PADDING), dtype=np.uint8)
    n_lines = len(lines)

    well_formed, starts, lengths, line_ends = _split_tokens(buf)

    label_char = buf[starts[:, 0]]
    label_ok = (lengths[:, 0] == 1) & ((label_char == ord("0")) | (label_char == ord("1")))
    labels = (label_char == ord("1")).astype(np.int8)
    dense_columns = slice(1, 1 + NUM_DENSE)
    dense, dense_ok = _parse_ints(buf, np.ascontiguousarray(starts[:, dense_columns]),
                                  np.ascontiguousarray(lengths[:, dense_columns]))
    categorical, cat_ok = _parse_hex(buf, np.ascontiguousarray(starts[:, 1 + NUM_DENSE:]),
                                     np.ascontiguousarray(lengths[:, 1 + NUM_DENSE:]))

    good = np.zeros(n_lines, dtype=bool)
    good[well_formed] = label_ok & dense_ok.all(axis=1) & cat_ok.all(axis=1)
    nul_at = np.flatnonzero(buf[:-_PADDING] == 0)  # the parsers read zero bytes as padding
    good[np.searchsorted(line_ends, nul_at)] = False
    line_numbers = first_line + np.arange(n_lines, dtype=np.int64)
    if good.all():
        return RawChunk(line_numbers, labels, dense, categorical)

    first_bad = int(np.argmin(good))
    if on_bad_row == "stop":
        raise CriteoFormatError(path, first_line + first_bad, _bad_row_reason(lines[first_bad]))
    row_ok = good[well_formed]
    return RawChunk(line_numbers[good], labels[row_ok], dense[row_ok], categorical[row_ok],
                    bad_lines=line_numbers[~good].tolist())


def _split_tokens(buf: np.ndarray):
    """Locate the tokens of a chunk of newline-terminated lines.

    Returns:
        well_formed: bool (lines,), the line has NUM_COLUMNS tab-separated columns.
        starts, lengths: int64 (well-formed lines, NUM_COLUMNS), each token's offset in
            ``buf`` and its length (the CR of a CRLF line ending is not part of the last).
        line_ends: int64 (lines,), the offset of each line's newline.
    """
    seps = np.flatnonzero((buf == _TAB) | (buf == _NEWLINE))  # each ends a token
    newline_at = np.flatnonzero(buf[seps] == _NEWLINE)
    columns = np.diff(newline_at, prepend=-1)
    well_formed = columns == NUM_COLUMNS
    starts = np.empty_like(seps)
    starts[0] = 0
    starts[1:] = seps[:-1] + 1
    lengths = seps - starts
    # buf[-1] is padding, so a newline at offset 0 reads no CR.
    lengths[newline_at] -= buf[seps[newline_at] - 1] == _RETURN
    if not well_formed.all():
        keep = np.repeat(well_formed, columns)
        starts, lengths = starts[keep], lengths[keep]
    return (well_formed, starts.reshape(-1, NUM_COLUMNS), lengths.reshape(-1, NUM_COLUMNS),
            seps[newline_at])


def _token_bytes(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                 width: int) -> np.ndarray:
    """Copy each token's first ``width`` bytes into a (..., width) uint8 array, zero-filled.

    ``width`` is a multiple of 8 and ``buf`` extends at least ``width`` bytes past the
    last token. Masking works on 8-byte words: word k keeps ``clip(length - 8k, 0, 8)``
    low bytes.
    """
    window = sliding_window_view(buf, width)[starts]
    words = window.view("<u8")
    kept = lengths[..., None] - np.arange(0, width, 8)
    words &= _LOW_BYTES[np.minimum(np.maximum(kept, 0), 8)]
    return window


def _any_set(flags: np.ndarray) -> np.ndarray:
    """Reduce (..., width) uint8 flags (width a multiple of 8) to bool (...,): any non-zero."""
    words = flags.view("<u8")
    return reduce(np.bitwise_or, [words[..., k] for k in range(words.shape[-1])]) != 0


def _parse_ints(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """Decimal integers at ``buf[starts:starts+lengths]`` -> (float64 values, NaN if empty; ok)."""
    max_len = min(int(lengths.max(initial=0)), _MAX_INT_CHARS)
    width = 8 * max(1, -(-max_len // 8))
    chars = _token_bytes(buf, starts, np.minimum(lengths, width), width)
    digits = chars - np.uint8(ord("0"))
    negative = chars[..., 0] == _MINUS
    allowed = (digits < 10) | (chars == 0)  # zero bytes are padding (NULs were rejected)
    allowed[..., 0] |= negative
    ok = ~_any_set(~allowed) & (lengths <= _MAX_INT_CHARS) & ~(negative & (lengths == 1))
    value = np.zeros(lengths.shape, dtype=np.float64)
    for pos in range(max_len):  # Horner's rule; padding and '-' are not digits
        digit = digits[..., pos]
        value = np.where(digit < 10, value * 10.0 + digit, value)
    value = np.where(negative, -value, value)
    value[lengths == 0] = np.nan
    return value, ok


def _parse_hex(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """Hex tokens at ``buf[starts:starts+lengths]`` -> (int64 values, -1 if empty; ok).

    Tokens have 1..16 hex digits and a value below 2**63, so that -1 stays free for
    "missing" and int64 order is numeric order.
    """
    width = 8 if lengths.max(initial=0) <= 8 else _MAX_HEX_CHARS
    used = np.minimum(lengths, width)
    nibbles = _HEX_VALUE[_token_bytes(buf, starts, used, width)]  # padding -> 0
    ok = ~_any_set(nibbles & np.uint8(0xF0)) & (lengths <= _MAX_HEX_CHARS)
    # Pack nibble pairs into bytes and read them as one big-endian integer per token.
    packed = (nibbles[..., 0::2] << np.uint8(4)) | nibbles[..., 1::2]
    value = packed.view(">u4" if width == 8 else ">u8")[..., 0].astype(np.uint64)
    value >>= (4 * (width - used)).astype(np.uint64)
    ok &= value < np.uint64(1 << 63)
    result = value.astype(np.int64)
    result[lengths == 0] = -1
    return result, ok


def _bad_row_reason(line: bytes) -> str:
    """Say what is wrong with one raw line (only called for a line known to be bad)."""
    tokens = line.removesuffix(b"\n").removesuffix(b"\r").split(b"\t")
    if len(tokens) != NUM_COLUMNS:
        return f"expected {NUM_COLUMNS} tab-separated columns, found {len(tokens)}"
    if b"\0" in line:
        return "contains a NUL byte"
    if tokens[0] not in (b"0", b"1"):
        return f"label: {_show(tokens[0])} is not 0 or 1"
    for index, token in enumerate(tokens[1:]):
        name = field_name(index)
        if not token:
            continue
        if index < NUM_DENSE:
            if not _INTEGER.fullmatch(token):
                return f"field {name}: {_show(token)} is not an integer"
            if len(token) > _MAX_INT_CHARS:
                return f"field {name}: {_show(token)} is longer than {_MAX_INT_CHARS} characters"
        else:
            if not _HEX_TOKEN.fullmatch(token):
                return f"field {name}: {_show(token)} is not a hex token"
            if len(token) > _MAX_HEX_CHARS or int(token, 16) >= 1 << 63:
                return (f"field {name}: {_show(token)} is out of range "
                        "(at most 16 hex digits, below 8000000000000000)")
    raise AssertionError(f"line judged bad but no fault found: {line!r}")


def _show(token: bytes) -> str:
    text = token.decode("utf-8", errors="replace")
    return repr(text if len(text) <= 40 else text[:37] + "...")


@dataclass(frozen=True)
class DenseOutlier:
    """A dense field whose max is far above its other values (max > OUTLIER_FACTOR x p).

    Attributes:
        field: the field's name (I1..I13).
        line: line number of the max (its first occurrence) in the raw file.
        max: the field's max.
        percentile: estimate p of the field's OUTLIER_QUANTILE quantile of positive values.
    """

    field: str
    line: int
    max: float
    percentile: float


class _DenseStats:
    """Each dense field's max, the line of its first occurrence, and a log-scale histogram
    of its positive values (_BINS_PER_OCTAVE bins per power of two): bounded memory."""

    def __init__(self) -> None:
        self.max = np.full(NUM_DENSE, -np.inf)
        self.max_line = np.zeros(NUM_DENSE, dtype=np.int64)
        self.histogram = np.zeros((NUM_DENSE, _OCTAVES * _BINS_PER_OCTAVE), dtype=np.int64)

    def update(self, dense: np.ndarray, line_numbers: np.ndarray) -> None:
        """Add rows: dense float64 (n, 13), NaN where missing; their line numbers (n,)."""
        if len(dense) == 0:
            return
        filled = np.where(np.isnan(dense), -np.inf, dense)
        at = filled.argmax(axis=0)
        top = filled[at, np.arange(NUM_DENSE)]
        better = top > self.max
        self.max[better] = top[better]
        self.max_line[better] = line_numbers[at[better]]
        positive = dense > 0  # parsed values are integers: positive means >= 1
        n_bins = self.histogram.shape[1]
        bins = np.minimum(np.log2(dense[positive]) * _BINS_PER_OCTAVE, n_bins - 1).astype(np.int64)
        fields = np.nonzero(positive)[1]
        self.histogram += np.bincount(fields * n_bins + bins,
                                      minlength=self.histogram.size).reshape(self.histogram.shape)

    def percentile(self, q: float) -> np.ndarray:
        """float64 (13,): each field's q-quantile of positive values, NaN if it has none.

        The quantile is numpy's "lower" one (the value of 0-based rank floor(q (n - 1))),
        estimated by the upper edge of the histogram bin holding that rank: never below
        the true value and at most 2**(1/16) (4.4%) above it.
        """
        counts = self.histogram.sum(axis=1)
        rank = np.floor(q * (counts - 1))
        bin_of_rank = (self.histogram.cumsum(axis=1) <= rank[:, None]).sum(axis=1)
        return np.where(counts > 0, 2.0 ** ((bin_of_rank + 1) / _BINS_PER_OCTAVE), np.nan)


class VocabularyBuilder:
    """Counts categorical tokens per field and the statistics of each dense field over chunks.

    Memory grows with the number of distinct tokens, not rows: each chunk is reduced
    with ``np.unique`` and the partial counts are merged once they grow as large as the
    merged table. Dense fields keep a fixed-size histogram (see :meth:`dense_outliers`).
    """

    def __init__(self) -> None:
        self._tokens = [np.empty(0, np.int64) for _ in range(NUM_CATEGORICAL)]
        self._counts = [np.empty(0, np.int64) for _ in range(NUM_CATEGORICAL)]
        self._pending: list[list[tuple[np.ndarray, np.ndarray]]] = [
            [] for _ in range(NUM_CATEGORICAL)]
        self._pending_size = [0] * NUM_CATEGORICAL
        self._dense = _DenseStats()

    def update(self, chunk: RawChunk, mask: np.ndarray | None = None) -> None:
        """Count the rows of ``chunk`` (only those where ``mask`` is true, if given)."""
        dense, categorical, line_numbers = chunk.dense, chunk.categorical, chunk.line_numbers
        if mask is not None:
            dense, categorical, line_numbers = dense[mask], categorical[mask], line_numbers[mask]
        self._dense.update(dense, line_numbers)
        for f in range(NUM_CATEGORICAL):
            column = categorical[:, f]
            tokens, counts = np.unique(column[column >= 0], return_counts=True)
            self._pending[f].append((tokens, counts.astype(np.int64)))
            self._pending_size[f] += len(tokens)
            if self._pending_size[f] >= max(len(self._tokens[f]), 1 << 16):
                self._merge(f)

    def _merge(self, f: int) -> None:
        parts = [(self._tokens[f], self._counts[f])] + self._pending[f]
        self._tokens[f], self._counts[f] = _sum_by_token(
            np.concatenate([t for t, _ in parts]), np.concatenate([c for _, c in parts]))
        self._pending[f] = []
        self._pending_size[f] = 0

    def dense_outliers(self) -> list[DenseOutlier]:
        """The dense fields whose max is above OUTLIER_FACTOR x their OUTLIER_QUANTILE
        quantile of positive values (estimated from the histogram, never below the true
        quantile: a field is flagged only if its max exceeds OUTLIER_FACTOR x the true
        quantile). With the "max" transform, such a max squeezes every other value of
        the field towards 0."""
        percentile = self._dense.percentile(OUTLIER_QUANTILE)
        flagged = np.flatnonzero(self._dense.max > OUTLIER_FACTOR * percentile)  # NaN: no
        return [DenseOutlier(field_name(int(i)), int(self._dense.max_line[i]),
                             float(self._dense.max[i]), float(percentile[i])) for i in flagged]

    def build(self, threshold: int, dense_transform: DenseTransform = "max") -> Vocabulary:
        """A Vocabulary admitting the tokens seen more than ``threshold`` times."""
        if threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        admitted = []
        for f in range(NUM_CATEGORICAL):
            self._merge(f)
            admitted.append(self._tokens[f][self._counts[f] > threshold])
        dense_max = np.where(np.isfinite(self._dense.max) & (self._dense.max > 0),
                             self._dense.max, 1.0)
        return Vocabulary(threshold=int(threshold), dense_max=dense_max, tokens=tuple(admitted),
                          dense_transform=dense_transform)


def _sum_by_token(tokens: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct tokens and the summed counts of each."""
    if tokens.size == 0:
        return tokens, counts
    order = np.argsort(tokens, kind="stable")
    tokens = tokens[order]
    first = np.flatnonzero(np.r_[True, tokens[1:] != tokens[:-1]])
    return tokens[first], np.add.reduceat(counts[order], first)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """One id space for all 39 fields, laid out as MindRec does, and the dense encoding.

    Dense field i (0..12) has id i. Categorical field f (0..25) owns the ids
    ``base_f .. base_f + n_f`` where ``base_f = 13 + sum_{g<f} (1 + n_g)``: ``base_f`` is
    its OOV id (rare, unseen and missing tokens) and its ``n_f`` admitted tokens follow
    in ascending token order.

    Attributes:
        threshold: a token was admitted when seen more than this many times.
        dense_max: float64 (13,), divisor of each dense field (max seen, 1.0 if <= 0).
        tokens: 26 sorted int64 arrays, the admitted tokens of each categorical field.
        dense_transform: how :func:`encode` maps a dense value (see DENSE_TRANSFORMS).
    """

    threshold: int
    dense_max: np.ndarray
    tokens: tuple[np.ndarray, ...]
    dense_transform: DenseTransform = "max"

    def __post_init__(self) -> None:
        check_dense_transform(self.dense_transform)

    @cached_property
    def bases(self) -> np.ndarray:
        """int64 (26,), the OOV id of each categorical field (first id of its range)."""
        sizes = np.array([1 + len(t) for t in self.tokens], dtype=np.int64)
        return NUM_DENSE + np.concatenate([[0], np.cumsum(sizes)[:-1]])

    @property
    def field_sizes(self) -> list[int]:
        """Ids owned by each of the 39 fields: 1 per dense field, 1 + n_f per categorical."""
        return [1] * NUM_DENSE + [1 + len(t) for t in self.tokens]

    @property
    def size(self) -> int:
        """Total number of ids."""
        return NUM_DENSE + sum(1 + len(t) for t in self.tokens)

    def save(self, path: str | Path) -> None:
        """Write to one ``.npz`` file (no pickled objects)."""
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in self.tokens])]).astype(np.int64)
        with open(path, "wb") as f:
            np.savez(f, schema=np.array(_VOCAB_SCHEMA), threshold=np.int64(self.threshold),
                     dense_max=self.dense_max.astype(np.float64),
                     tokens=np.concatenate(self.tokens).astype(np.int64), offsets=offsets,
                     dense_transform=np.array(self.dense_transform))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a file written by :meth:`save` (one without ``dense_transform`` is "max").

        Raises:
            DatasetError: the file is damaged or not a vocabulary, naming it.
        """
        arrays = _load_npz(path)
        schema = str(arrays["schema"]) if "schema" in arrays else None
        if schema != _VOCAB_SCHEMA:
            raise DatasetError(f"{path}: not a {_VOCAB_SCHEMA} file (schema {schema!r})")
        missing = [key for key in ("threshold", "dense_max", "tokens", "offsets")
                   if key not in arrays]
        if missing:
            raise DatasetError(f"{path}: lacks {', '.join(missing)}: damaged")
        tokens, offsets, dense_max = arrays["tokens"], arrays["offsets"], arrays["dense_max"]
        if not (tokens.dtype == np.int64 and tokens.ndim == 1 and offsets.dtype == np.int64
                and offsets.shape == (NUM_CATEGORICAL + 1,) and offsets[0] == 0
                and offsets[-1] == len(tokens) and (np.diff(offsets) >= 0).all()
                and dense_max.shape == (NUM_DENSE,) and arrays["threshold"].shape == ()):
            raise DatasetError(f"{path}: arrays do not fit together (tokens {tokens.dtype} "
                               f"{tokens.shape}, offsets {offsets.dtype} {offsets.shape}, "
                               f"dense_max {dense_max.shape}): damaged")
        transform = str(arrays["dense_transform"]) if "dense_transform" in arrays else "max"
        try:
            return cls(threshold=int(arrays["threshold"]), dense_max=dense_max,
                       tokens=tuple(tokens[offsets[f]:offsets[f + 1]]
                                    for f in range(NUM_CATEGORICAL)),
                       dense_transform=transform)
        except ValueError as exc:
            raise DatasetError(f"{path}: {exc}") from exc


def _load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file; a damaged file raises DatasetError naming it."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {name: loaded[name] for name in loaded.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: not a readable .npz archive ({exc}): damaged") from exc
    raise DatasetError(f"{path}: holds a single array, not an .npz archive")


def encode(chunk: RawChunk, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode a chunk as MindRec feeds it to the models.

    Returns:
        ids: int32 (n, 39). Dense field i -> i; categorical -> its token's id or the
            field's OOV id.
        vals: float32 (n, 39). Dense x -> x / dense_max ("max") or log(1 + x) for x > 0,
            else 0 ("log1p"), as ``vocab.dense_transform`` says; 0.0 if missing.
            Categorical 1.0.
        labels: float32 (n,).
    """
    n = len(chunk)
    ids = np.empty((n, NUM_FIELDS), dtype=np.int32)
    vals = np.ones((n, NUM_FIELDS), dtype=np.float32)
    ids[:, :NUM_DENSE] = np.arange(NUM_DENSE, dtype=np.int32)
    vals[:, :NUM_DENSE] = _dense_values(chunk.dense, vocab)
    for f, tokens in enumerate(vocab.tokens):
        column = chunk.categorical[:, f]
        pos = np.searchsorted(tokens, column)
        found = tokens[np.minimum(pos, len(tokens) - 1)] == column if len(tokens) else False
        ids[:, NUM_DENSE + f] = vocab.bases[f] + np.where(found, pos + 1, 0)
    return ids, vals, chunk.labels.astype(np.float32)


@dataclass(frozen=True)
class HashedKeys:
    """The key scheme of hash tables fed by a stream: no vocabulary, every categorical
    value its own int64 key, so values never seen before get keys too.

    Dense field i has key i (0..12); a missing categorical value of field f has key
    13 + f; a present token t of field f has key ``FIRST_HASHED_KEY + (splitmix64(26 t
    + f) >> 2) mod (2**62 - FIRST_HASHED_KEY)``: distinct per (field, token) but for a
    collision chance of about n**2 / 2**63 among n keys. Keys are never negative (-1 and
    -2 are reserved by the hash index). Dense values are ``log1p`` (a stream has no
    field maximum to divide by).
    """

    dense_transform: DenseTransform = "log1p"

    def __post_init__(self) -> None:
        check_dense_transform(self.dense_transform)
        if self.dense_transform != "log1p":
            raise ValueError("hashed keys encode dense values with log1p only: a stream "
                             "has no field maximum to divide by")


FIRST_HASHED_KEY = 64
"""Keys below this are the dense fields' and the missing values' (see HashedKeys)."""


def encode_keys(chunk: RawChunk, scheme: HashedKeys = HashedKeys()
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode a chunk for hash tables, as :func:`encode` does for a vocabulary, but with
    int64 keys (see :class:`HashedKeys`). The offline path (:func:`iter_chunks`) and a
    stream's consumer (:func:`parse_lines`) both end here.

    Example::

        >>> line = "\\t".join(["1", "5"] + [""] * 12 + ["68fd1e64"] + [""] * 25)
        >>> chunk = parse_lines([line.encode()], source="example")
        >>> keys, vals, labels = encode_keys(chunk)
        >>> keys.dtype, keys[0, :2].tolist(), keys[0, 14].item(), labels.tolist()
        (dtype('int64'), [0, 1], 14, [1.0])
        >>> bool(keys[0, 13] >= FIRST_HASHED_KEY), round(float(vals[0, 0]), 4)
        (True, 1.7918)
    """
    n = len(chunk)
    keys = np.empty((n, NUM_FIELDS), dtype=np.int64)
    vals = np.ones((n, NUM_FIELDS), dtype=np.float32)
    keys[:, :NUM_DENSE] = np.arange(NUM_DENSE, dtype=np.int64)
    vals[:, :NUM_DENSE] = _dense_values(chunk.dense, scheme)
    tokens = chunk.categorical.astype(np.uint64)
    fields = np.arange(NUM_CATEGORICAL, dtype=np.uint64)
    hashed = (splitmix64(tokens * np.uint64(NUM_CATEGORICAL) + fields) >> np.uint64(2)
              ).astype(np.int64)  # < 2**62
    keys[:, NUM_DENSE:] = np.where(chunk.categorical >= 0,
                                   FIRST_HASHED_KEY + hashed % (2**62 - FIRST_HASHED_KEY),
                                   NUM_DENSE + fields.astype(np.int64))
    return keys, vals, chunk.labels.astype(np.float32)


def parse_lines(lines: list[bytes], source: str, first_line: int = 1,
                on_bad_row: OnBadRow = "skip") -> RawChunk:
    """Decode raw Criteo lines that do not come from a file (a stream's messages), with
    or without their line ends: ``source`` names them in errors, ``first_line`` numbers
    the first.

    Raises:
        CriteoFormatError: a bad row, with ``on_bad_row="stop"``.
    """
    if not lines:
        raise ValueError(f"{source}: no lines to parse")
    lines = [line if line.endswith(b"\n") else line + b"\n" for line in lines]
    lines[0] = lines[0].removeprefix(_BOM)
    return _parse_chunk(Path(source), lines, first_line, on_bad_row)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of each uint64 (a bijection that mixes every bit)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _dense_values(dense: np.ndarray, scheme: Vocabulary | HashedKeys) -> np.ndarray:
    """Encoded dense values (float64 (n, 13), NaN where missing -> 0.0)."""
    if scheme.dense_transform == "log1p":
        return np.log1p(np.where(dense > 0, dense, 0.0))  # NaN > 0 is False
    return np.nan_to_num(dense / scheme.dense_max, nan=0.0)
