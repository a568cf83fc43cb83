"""A drifting synthetic Criteo stream for online learning, with known click probabilities.

The stationary generator (:mod:`mindrec.data.synthetic`) fixes one click model for the
whole file. Here the click model moves along a stream of ``spec.rows`` rows, so a model
frozen after the first part of the stream falls behind while one that keeps learning
can follow; the true click probability of every row is kept, so the Bayes-optimal AUC of
any window (the AUC of the true ``p`` on its labels) is known.

Row ``i`` sits at stream position ``s = i / spec.rows`` in ``[0, 1)``. Its features (ids,
dense values, missing values) and the uniform draw of its label are those of line ``i``
of the stationary generator with the same seed and vocabulary; what drifts is:

* Click weights. Each categorical value's main effect rotates between two independent
  tables: ``w(s) = mu_f + cos(theta) * a + sin(theta) * b`` with ``theta = spec.drift *
  s * pi / 2``, where ``a`` is the stationary model's weight less its field mean ``mu_f``
  and ``b`` a fresh draw with the same rarity shrink, made orthogonal to ``a`` and of the
  same variance under the field's value distribution. The mean and variance of every
  field's contribution to the logit stay put, and so, roughly, does the Bayes AUC, while
  the correlation of the weights at positions ``s`` and ``s'`` is ``cos(theta -
  theta')``: ``drift = 1`` ends on weights independent of the start's.
* New values. The ranks of a field are renewed one after another, in a random order,
  each when ``new_value_fraction * s`` reaches the middle of its slice of the field's
  probability mass: by position ``s`` a share ``new_value_fraction * s`` of each field's
  values (give or take half a rank's share) has moved to tokens never used before. A
  renewed rank ``r`` takes the token of rank ``r + card_f`` under the field's token
  bijection (distinct from every old token), with its own main effect (rotating as
  above) and its own interaction factors.
* Bias. The shape of the logit distribution still changes, so the bias is re-solved at
  17 positions (linear in between) to hold the mean click probability of a fixed sample
  of rows at its start value (``mean_ctr``, 0.25).

The dense terms are the stationary model's. ``drift = 0`` and ``new_value_fraction = 0``
give the stationary generator's lines.

Measured at the defaults (vocab 200k, drift 0.3, new values 0.2; seed 0, 1M rows, windows
of 10%): Bayes AUC 0.802 on the first window, 0.794 on the last; the true click model of
row 200k applied to the last window (a perfect model frozen after 20%: ``p_as_of``)
0.752; a one-hot logistic regression (lazy Adam) under progressive validation 0.769 on
the last window when it keeps learning, 0.730 when frozen after 20% (0.779 and 0.777
without drift); each kind of drift alone makes about half of that gap. A share 0.17 of
the last window's values was never seen in the first 20% (0.01 without new values).
Generation: ~140k rows/s on one core (vocab 200k, lines included), ~1 s to build.

Example::

    >>> stream = DriftingStream(DriftingSpec(rows=2_000, vocab=5_000, seed=1))
    >>> lines, p = stream.rows(0, 3)
    >>> len(lines), len(lines[0].split(b"\\t")), p.dtype
    (3, 40, dtype('float64'))
    >>> stream.rows(0, 2).lines == lines[:2]
    True
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from mindrec.data.synthetic import (_DRAW_LABEL, _STREAM_CALIBRATION, _STREAM_ROWS,
                                    BLOCK_ROWS, FACTOR_DIM, INTERACTION_PAIRS, N_CAT, N_DENSE,
                                    Rows, SyntheticModel, SyntheticSpec, _rng, _sigmoid,
                                    _word_tables, format_lines)
from mindrec.metrics import roc_auc

_STREAM_DRIFT = 101  # SeedSequence stream of the drift tables (synthetic.py uses 1..3)
_BIAS_KNOTS = 17  # positions 0, 1/16, .., 1 where the bias is solved (linear in between)
_BIAS_SAMPLE_ROWS = 1 << 15  # prefix of the stationary calibration sample
_NEWTON_STEPS = 50


@dataclass(frozen=True)
class DriftingSpec:
    """What to generate. Every field is validated in ``__post_init__``.

    Attributes:
        rows: length of the stream (> 0); the drift schedule spans it.
        vocab / seed / zipf_exponent: as in :class:`SyntheticSpec` (the other fields of
            the stationary model keep their defaults).
        drift: in [0, 1]; the main effects turn by ``drift * pi / 2`` over the stream
            (their start/end correlation is ``cos(drift * pi / 2)``).
        new_value_fraction: in [0, 1]; share of each field's values (by probability
            mass) moved to new tokens over the stream, at an even pace.
    """

    rows: int
    vocab: int = 200_000
    seed: int = 0
    zipf_exponent: float = 1.15
    drift: float = 0.3
    new_value_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("drift", "new_value_fraction"):
            value = getattr(self, name)
            number = isinstance(value, (int, float, np.integer, np.floating)) \
                and not isinstance(value, bool)
            if not (number and 0.0 <= value <= 1.0):
                raise ValueError(f"DriftingSpec.{name} must be a number in [0, 1], "
                                 f"got {value!r}")
        try:
            self.synthetic_spec()
        except ValueError as exc:
            raise ValueError(str(exc).replace("SyntheticSpec.", "DriftingSpec.")) from None

    def synthetic_spec(self) -> SyntheticSpec:
        """The stationary spec whose model and rows the stream starts from."""
        return SyntheticSpec(rows=self.rows, vocab=self.vocab, seed=self.seed,
                             zipf_exponent=self.zipf_exponent)

    def to_dict(self) -> dict:
        """The spec as plain JSON types."""
        return dataclasses.asdict(self)


class StreamRows(NamedTuple):
    """Consecutive rows of the stream."""

    lines: list[bytes]  # raw Criteo lines (label first), no line end
    p: np.ndarray       # (n,) float64, the true click probability of each line


class DriftingStream:
    """The rows of a :class:`DriftingSpec` (a pure function of the spec).

    Rows are generated per block of ``BLOCK_ROWS`` (the stationary generator's unit of
    randomness), so any range gives the same rows however the stream is chunked; the
    last two blocks used are cached (read-only), so reading the stream in small
    consecutive pieces costs about what one pass does. Memory is O(vocab + BLOCK_ROWS)
    whatever the length.
    """

    def __init__(self, spec: DriftingSpec):
        if not isinstance(spec, DriftingSpec):
            raise TypeError(f"spec must be a DriftingSpec, got {type(spec).__name__}")
        self.spec = spec
        self.model = model = SyntheticModel(spec.synthetic_spec())
        self.cardinalities = model.cardinalities
        rng = _rng(spec.seed, _STREAM_DRIFT)
        self._rotating = []
        self._phase = []
        mean_effect = 0.0
        for f in range(N_CAT):
            mean, a, b = _main_tables(model, f, rng)
            self._rotating.append((a, b))
            mean_effect += mean
            self._phase.append(_renewal_phases(model, f, rng))
        self._factors = [tuple(_factor_table(model, h, w, rng) for h, w in zip(pair, uv))
                         for pair, uv in zip(INTERACTION_PAIRS, model.factors)]
        self.token_text = [_token_text(model, f) for f in range(N_CAT)]  # for format_lines
        self._bias = model.bias + mean_effect
        self._offsets = np.zeros(_BIAS_KNOTS)  # _bias_offsets solves them from zero
        self._offsets = self._bias_offsets()
        self._block = lru_cache(maxsize=2)(self._make_block)

    # -- public -------------------------------------------------------------------------
    def rows(self, start: int, stop: int) -> StreamRows:
        """Lines ``start:stop`` of the stream and their true click probabilities."""
        latent = self.sample(start, stop)
        if latent.n_rows == 0:
            return StreamRows([], latent.p)
        lines = format_lines(self, latent).tobytes().split(b"\n")  # reads token_text
        return StreamRows(lines[:-1], latent.p)

    def chunks(self, start: int = 0, stop: int | None = None,
               chunk_rows: int = 10_000) -> Iterator[list[bytes]]:
        """Lines ``start:stop`` (default: to the end) in lists of at most ``chunk_rows``,
        as :func:`mindrec.stream.producer.produce` takes them."""
        stop = self.spec.rows if stop is None else stop
        self._check_range(start, stop)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        for begin in range(start, stop, chunk_rows):
            yield self.rows(begin, min(stop, begin + chunk_rows)).lines

    def sample(self, start: int, stop: int) -> Rows:
        """The latent content of rows ``start:stop``: ``Rows.ranks`` holds extended ranks
        (``r`` for a rank's original value, ``r + card_f`` for its new one, 0 missing).
        Within one block the arrays are read-only views of the cache."""
        self._check_range(start, stop)
        parts = []
        for b in range(start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)):
            b0 = b * BLOCK_ROWS
            parts.append(self._block(b).slice(max(start, b0) - b0,
                                              min(stop, b0 + BLOCK_ROWS) - b0))
        return Rows.concat(parts) if parts else _no_rows()

    def p_as_of(self, start: int, stop: int, at: int) -> np.ndarray:
        """Click probabilities of rows ``start:stop`` under the click model as it stood at
        row ``at`` (its weights and bias), the values not yet created by then (unknown to
        a model frozen there) taking their field's mean main effect and no interaction.
        ``p_as_of(start, stop, 0)`` is the start's truth applied to later rows."""
        self._check_range(at, at)
        latent = self.sample(start, stop)
        ranks = latent.ranks.copy()
        created = self.spec.new_value_fraction * at / self.spec.rows
        for f, card in enumerate(self.cardinalities):
            new = ranks[f] > card
            phase = self._phase[f].take(np.where(new, ranks[f] - card, 0))
            ranks[f, new & (phase >= created)] = 2 * card + 1  # the zero-effect slot
        position = np.full(latent.n_rows, at / self.spec.rows)
        return _sigmoid(self._logit(ranks, latent.dense, latent.dense_missing, position))

    # -- generation ---------------------------------------------------------------------
    def _check_range(self, start: int, stop: int) -> None:
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not 0 <= start <= stop <= self.spec.rows:
            raise ValueError(f"rows {start}:{stop} outside the stream's 0:{self.spec.rows}")

    def _make_block(self, index: int) -> Rows:
        """All rows of block ``index`` (its first ``rows - index * BLOCK_ROWS`` at the end)."""
        b0 = index * BLOCK_ROWS
        n = min(BLOCK_ROWS, self.spec.rows - b0)
        key = (self.spec.seed, _STREAM_ROWS, index)
        ranks, dense, dmiss = self.model._features(key, n)
        position = (b0 + np.arange(n)) / self.spec.rows
        ranks = self._renewed(ranks, position)
        logit = self._logit(ranks, dense, dmiss, position)
        p = _sigmoid(logit)
        label = (_rng(*key, _DRAW_LABEL, 0).random(n) < p).astype(np.int8)
        block = Rows(ranks, dense, dmiss, logit, p, label)
        for array in block:
            array.setflags(write=False)
        return block

    def _renewed(self, ranks: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Extended ranks of rows with original ``ranks`` at stream ``position`` (0..1)."""
        created = self.spec.new_value_fraction * position
        out = ranks.copy()
        for f, card in enumerate(self.cardinalities):
            out[f] += card * (self._phase[f].take(ranks[f]) < created)
        return out

    def _logit(self, ranks: np.ndarray, dense: np.ndarray, dmiss: np.ndarray,
               position: np.ndarray) -> np.ndarray:
        """Logit of rows with extended ranks at stream ``position`` (0..1, per row)."""
        _, main_a, interactions, dense_part = self.model.logit(
            ranks, dense, dmiss, main=[a for a, _ in self._rotating], factors=self._factors,
            parts=True)
        main_b = np.zeros(ranks.shape[1])
        for f, (_, b) in enumerate(self._rotating):
            main_b += b.take(ranks[f])
        theta = self.spec.drift * 0.5 * math.pi * position
        bias = self._bias + np.interp(position, np.linspace(0, 1, _BIAS_KNOTS), self._offsets)
        return bias + np.cos(theta) * main_a + np.sin(theta) * main_b + interactions + dense_part

    def _bias_offsets(self) -> np.ndarray:
        """Bias offsets at ``_BIAS_KNOTS`` even positions that hold the mean click
        probability of a fixed sample of rows at its value at the start (linear in
        between): rotating the weights keeps the logit's mean and variance, not the CTR."""
        key = (self.spec.seed, _STREAM_CALIBRATION, 0)
        ranks, dense, dmiss = self.model._features(key, _BIAS_SAMPLE_ROWS)
        zero = np.zeros(_BIAS_SAMPLE_ROWS)
        target = _sigmoid(self._logit(ranks, dense, dmiss, zero)).mean()
        offsets = np.zeros(_BIAS_KNOTS)
        for k, position in enumerate(np.linspace(0, 1, _BIAS_KNOTS)):
            logit = self._logit(self._renewed(ranks, position), dense, dmiss, zero + position)
            offsets[k] = _solve_offset(logit, target)
        return offsets


def window_bayes_auc(stream: DriftingStream, start: int, stop: int) -> float:
    """The Bayes-optimal AUC of rows ``start:stop``: the AUC of their true ``p``."""
    latent = stream.sample(start, stop)
    return roc_auc(latent.label, latent.p)


# -- tables ---------------------------------------------------------------------------
def _value_probabilities(model: SyntheticModel, field: int) -> np.ndarray:
    """P(value) of a field's ids 0..card (0 = missing)."""
    missing = model.spec.cat_missing[field]
    return np.concatenate([[missing], (1.0 - missing) * model.rank_probabilities(field)])


def _raw_weights(model: SyntheticModel, field: int, rng: np.random.Generator,
                 dim: int | None = None) -> np.ndarray:
    """Standard normal weights of ids 0..card with the stationary model's rarity shrink
    (``dim`` columns for factor vectors)."""
    scale = np.concatenate([[model._missing_scale(field)],
                            model._shrink(model.rank_probabilities(field))])
    if dim is None:
        return rng.standard_normal(scale.size) * scale
    return rng.standard_normal((scale.size, dim)) * scale[:, None]


def _renewal_phases(model: SyntheticModel, field: int, rng: np.random.Generator
                    ) -> np.ndarray:
    """Renewal phase in [0, 1) of a field's ids 0..card (inf for 0, missing: never
    renewed). The ranks take turns in a random order, each at the middle of its slice
    of the field's probability mass, so that the share of the field's values renewed by
    phase ``x`` is ``x`` give or take half the mass of one rank."""
    q = model.rank_probabilities(field)
    order = rng.permutation(q.size)
    phase = np.empty(q.size + 1)
    phase[0] = np.inf
    phase[1 + order] = np.cumsum(q[order]) - 0.5 * q[order]
    return phase


def _companion(dev: np.ndarray, q: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """``raw`` made ``q``-weighted centred, ``q``-orthogonal to ``dev`` (itself centred)
    and of the same ``q``-weighted variance, so that ``cos(t) * dev + sin(t) * result``
    has the same mean (0) and variance for every angle ``t``."""
    var = float(q @ dev**2)
    if var == 0.0:
        return np.zeros_like(dev)
    x = raw - q @ raw
    x -= (q @ (x * dev)) / var * dev
    return x * math.sqrt(var / float(q @ x**2))


def _main_tables(model: SyntheticModel, field: int, rng: np.random.Generator):
    """``(mean, a, b)`` of a field's main effects: ``mean`` its weight's mean over the
    field's values; ``a`` and ``b`` the extended tables of the rotating deviations from
    it (``a`` of the original values is the stationary model's weight less ``mean``)."""
    q = _value_probabilities(model, field)
    mean = float(q @ model.main[field])
    a_old = model.main[field] - mean
    a_new = _companion(a_old, q, _raw_weights(model, field, rng))
    b_old = _companion(a_old, q, _raw_weights(model, field, rng))
    b_new = _companion(a_new, q, _raw_weights(model, field, rng))
    return mean, _extended(a_old, a_new), _extended(b_old, b_new)


def _factor_table(model: SyntheticModel, field: int, factors: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """The extended table of a field's interaction factors: the stationary model's for
    the original values, fresh vectors of the same second moment for the new ones."""
    q = _value_probabilities(model, field)
    raw = _raw_weights(model, field, rng, FACTOR_DIM)
    target = float(q[1:] @ (factors[1:] ** 2).sum(axis=1))
    fresh = raw * math.sqrt(target / float(q[1:] @ (raw[1:] ** 2).sum(axis=1)))
    return _extended(factors, fresh)


def _solve_offset(logit: np.ndarray, target: float) -> float:
    """The ``d`` with ``mean(sigmoid(logit + d)) == target`` (Newton's method)."""
    d = 0.0
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(logit + d)
        step = (p.mean() - target) / max(float((p * (1.0 - p)).mean()), 1e-12)
        d -= step
        if abs(step) < 1e-12:
            break
    return d


def _no_rows() -> Rows:
    """An empty ``Rows``."""
    return Rows(np.empty((N_CAT, 0), np.int64), np.empty((N_DENSE, 0), np.int64),
                np.empty((N_DENSE, 0), bool), np.empty(0), np.empty(0), np.empty(0, np.int8))


def _extended(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """A table over extended ranks: ids 0..card (``old``), new values card+1..2 card
    (``new[1:]``), and a zero slot 2 card + 1 for values a model cannot know yet."""
    return np.concatenate([old, new[1:], np.zeros((1,) + old.shape[1:])])


def _token_text(model: SyntheticModel, field: int) -> np.ndarray:
    """The 8 hex characters (as one uint64, like ``SyntheticModel.token_text``) of the
    extended ranks 0..2 card of a field."""
    card = model.cardinalities[field]
    hex4 = _word_tables()["hex4"]
    h = model.tokens(field, np.arange(card + 1, 2 * card + 1))
    words = np.empty((card, 2), dtype=np.uint32)
    words[:, 0] = hex4[h >> np.uint64(16)]
    words[:, 1] = hex4[h & np.uint64(0xFFFF)]
    return np.concatenate([model.token_text[field], words.view(np.uint64).reshape(-1)])
