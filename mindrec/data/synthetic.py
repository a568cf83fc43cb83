"""Synthetic Criteo click logs with a known click model (the embedded default dataset).

The generator writes the raw Criteo Kaggle text format (``train.txt``), so synthetic data
takes exactly the converter path that real data takes. Each line is::

    label \\t I1 .. I13 \\t C1 .. C26 \\n        (40 tab-separated columns)

with ``label`` 0/1, ``I*`` decimal integers or empty (missing) and ``C*`` 8-character
lowercase hex tokens or empty (missing). Next to it come ``train.truth.npy`` (float64, the
true click probability of every line, in order) and ``synth.json`` (spec, realized
cardinalities, mean true CTR, schema ``mindrec-synthetic/1``).

Data model
----------
* Cardinalities. The 26 categorical fields follow the per-field distinct-value counts of
  the Criteo Kaggle (Display Advertising Challenge) ``train.txt`` (C1 1460 ... C26 142572,
  33.76M in all; see ``reference/criteo_cardinalities.md``), scaled by one factor ``s`` so
  that ``sum_f card_f == spec.vocab`` exactly, with ``card_f = clip(s * orig_f,
  min(orig_f, spec.min_field_cardinality), orig_f)`` and largest-remainder rounding:
  big fields shrink proportionally, small fields keep a floor and are never scaled up.
* Ids. Field f draws rank ``r`` in ``1..card_f`` from a truncated Zipf law,
  ``P(r) ~ r^-spec.zipf_exponent`` (inverse-CDF sampling with ``np.searchsorted`` on a
  cumulative table; memory is O(vocab)). With probability ``spec.cat_missing[f]`` the
  field is missing (empty). The token of rank r is ``(r * A_f + B_f) mod 2^32`` printed as
  8 hex digits, ``A_f`` odd, so it is a bijection per field: tokens look random but are
  unique within a field. Fields are independent of each other.
* Dense fields. ``I_j = floor(exp(mu_j + sigma_j * z))`` with ``z ~ N(0, 1)``: heavy-tailed
  non-negative counts of Criteo-like magnitude (zero whenever ``exp(.) < 1``), missing with
  Criteo-like per-field rates (``spec.dense_missing``: I2/I8 almost never, I1/I10 ~45%,
  I12 ~77%). I2 takes the small negative values -1..-3 on ~3% of rows, as Criteo's does.
* Click model. ``p = sigmoid(logit)``, ``label ~ Bernoulli(p)``, with
  ``logit = bias + main + interactions + dense``:

  - ``main = sum_f w_f[r_f]``: per-id weights ``w_f[r] = a_f * g(P_f(r)) * N(0, 1)``, where
    ``g(q) = min(1, (q / spec.shrink_below_frequency) ** spec.shrink_power)`` shrinks the
    weights of rare ids (default: linearly below a 1% share of the field). The signal sits
    on ids frequent enough to be learned from a few hundred thousand rows, so folding rare
    ids into a per-field OOV id (as the converter does) costs almost nothing, and a model
    that estimates the frequent ids well gets close to the optimum. Field scales ``a_f``
    follow a log-normal importance profile. A missing value is its own id (index 0); its
    weight is full-size where missing is common (>= 20% of rows) and scaled down in
    proportion where it is rarer, since the converter folds missing values into the OOV
    id together with rare ids.
  - ``interactions = sum_{(f, g) in INTERACTION_PAIRS} <u_f[r_f], v_g[r_g]>``: rank-2
    factor vectors per id (same rarity shrink) on four pairs of small/medium fields
    (C2 x C5, C6 x C14, C8 x C25, C1 x C13). They are zero-mean and independent of the
    main weights, hence (nearly) orthogonal to any sum of per-field functions: a
    linear/wide model cannot fit them; embeddings + MLP/cross layers (or FMs) can.
  - ``dense``: on standardized ``t_j = log1p(I_j)`` (0 when missing): a linear term per
    field, a per-field missing effect, a product term ``t(I2) * t(I9)`` and a threshold term
    ``[I5 > median]``. Kept small (``spec.dense_variance``): the converter's ``x / max``
    encoding hides most of it from the models, as it does on real Criteo.

  The weights come from ``spec.seed`` alone (the model is reproducible). Each component is
  rescaled on a fixed calibration sample (2^17 rows from its own random stream) to its
  target logit variance (``spec.main_variance`` per field in proportion to the importance
  profile, ``spec.interaction_variance`` split evenly over the pairs,
  ``spec.dense_variance`` half linear, half nonlinear); then ``bias`` is solved so that the
  mean of ``p`` on that sample equals ``spec.mean_ctr`` (0.25, Criteo-like).

  Calibration of the defaults (300k rows, vocab 200k, train = first 90%, test = last 10%,
  ids seen <= 2 times in train and missing values folded into a per-field OOV id, as the
  converter does; seeds 0/1/2): Bayes-optimal AUC (AUC of ``p``) 0.802/0.803/0.807; the
  oracle with OOV folding (folded ids' true weights replaced by their occurrence-weighted
  average) loses < 0.001; a per-field one-hot logistic regression (numpy Adam, L2)
  reaches 0.786/0.790/0.792, so the interactions and the dense nonlinearity are worth
  ~0.015 AUC. Rerun with ``pytest -m slow tests/data/test_synthetic.py``.

Reproducibility
---------------
Randomness is drawn per fixed block of ``BLOCK_ROWS`` rows, each array of each block from
its own stream ``SeedSequence([seed, stream, block, kind, field])``, so the output is
byte-for-byte the same for any ``chunk_rows`` and number of worker threads, and the first
N lines of a longer run equal a run of N rows (same seed and vocab).

Writing streams (memory is bounded by vocab, BLOCK_ROWS and the worker count, not by rows;
the truth goes through ``np.lib.format.open_memmap``) and is atomic: all files are written
under temporary names in ``out_dir`` and renamed at the end (``train.txt`` after
``train.truth.npy``, ``synth.json`` last), so an interrupted run never leaves a
``train.txt`` that looks complete. Blocks are generated and formatted by a small thread
pool (numpy releases the GIL); measured on 2 cores: ~235k rows/s with one worker, ~340k
rows/s with two (vocab 200k, 2M rows, including model build, SHA-256 and fsync).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import secrets
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, NamedTuple

import numpy as np

SCHEMA = "mindrec-synthetic/1"
N_DENSE = 13
N_CAT = 26
BLOCK_ROWS = 1 << 16  # fixed unit of randomness; never depends on chunk_rows
CALIBRATION_ROWS = 1 << 17
FACTOR_DIM = 2
_GUIDE = 1 << 16  # buckets of the Zipf inverse-CDF guide tables

DENSE_NAMES = tuple(f"I{j}" for j in range(1, N_DENSE + 1))
CAT_NAMES = tuple(f"C{j}" for j in range(1, N_CAT + 1))

# Distinct values per categorical field of Criteo Kaggle train.txt (C1..C26); see
# reference/criteo_cardinalities.md.
CRITEO_KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)

# Criteo-like missing fractions (rounded, approximate; not a citation).
DEFAULT_DENSE_MISSING = (
    0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0005, 0.04, 0.45, 0.04, 0.77, 0.22,
)
DEFAULT_CAT_MISSING = (
    0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.03, 0.0, 0.03, 0.0,
    0.0, 0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44,
)

# Log-normal parameters of the dense counts, I = floor(exp(mu + sigma * z)).
_DENSE_MU = np.array([0.3, 1.3, 2.0, 1.5, 8.0, 3.4, 1.2, 2.1, 3.6, 0.1, 0.3, -0.5, 1.5])
_DENSE_SIGMA = np.array([1.3, 2.0, 1.6, 1.0, 1.6, 1.6, 1.5, 1.0, 1.3, 0.8, 1.0, 1.5, 1.3])
_DENSE_MAX = 2**31 - 1
_I2_NEGATIVE_RATE = 0.03
_MISSING_FULL_EFFECT_RATE = 0.2  # categorical missing rate from which its effect is full
_PRODUCT_TERM = (1, 8)    # t(I2) * t(I9)
_THRESHOLD_TERM = 4       # [I5 > median]

# Field pairs (0-based categorical indices) carrying low-rank interactions:
# C2 x C5, C6 x C14, C8 x C25, C1 x C13 (small and medium fields).
INTERACTION_PAIRS = ((1, 4), (5, 13), (7, 24), (0, 12))

# Random streams of SeedSequence([seed, stream, ...]).
_STREAM_MODEL = 1
_STREAM_CALIBRATION = 2
_STREAM_ROWS = 3


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Every field is validated in ``__post_init__``.

    Attributes:
        rows: number of lines to write (> 0).
        vocab: target total categorical cardinality (sum over the 26 fields).
        seed: non-negative integer; fixes the click model and every row.
        zipf_exponent: exponent of the per-field Zipf law of id ranks.
        mean_ctr: target mean click probability (the bias is solved for it).
        main_variance / interaction_variance / dense_variance: logit variance of the
            per-id main effects, the pairwise low-rank interactions and the dense terms.
        shrink_below_frequency / shrink_power: ids with probability q below the
            threshold get weights scaled by (q / threshold) ** power.
        min_field_cardinality: floor of a scaled field (fields smaller than it keep their
            original size).
        dense_missing / cat_missing: per-field missing probabilities (13 and 26 values).
    """

    rows: int
    vocab: int = 200_000
    seed: int = 0
    zipf_exponent: float = 1.15
    mean_ctr: float = 0.25
    main_variance: float = 1.8
    interaction_variance: float = 0.12
    dense_variance: float = 0.04
    shrink_below_frequency: float = 1e-2
    shrink_power: float = 1.0
    min_field_cardinality: int = 32
    dense_missing: tuple[float, ...] = DEFAULT_DENSE_MISSING
    cat_missing: tuple[float, ...] = DEFAULT_CAT_MISSING

    def __post_init__(self) -> None:
        def integer(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"SyntheticSpec.{name} must be an integer, got {value!r}")
            if value < minimum:
                raise ValueError(f"SyntheticSpec.{name} must be >= {minimum}, got {value!r}")

        def real(name: str, low: float, high: float, *, low_open: bool = True,
                 high_open: bool = False) -> None:
            value = getattr(self, name)
            ok = isinstance(value, (int, float, np.floating, np.integer)) \
                and not isinstance(value, bool) and math.isfinite(value)
            if ok:
                ok = (value > low if low_open else value >= low) and \
                     (value < high if high_open else value <= high)
            if not ok:
                lo = "(" if low_open else "["
                hi = ")" if high_open else "]"
                raise ValueError(
                    f"SyntheticSpec.{name} must be a number in {lo}{low}, {high}{hi}, "
                    f"got {value!r}")

        integer("rows", 1)
        integer("seed", 0)
        integer("min_field_cardinality", 1)
        integer("vocab", 1)
        low = sum(min(c, self.min_field_cardinality) for c in CRITEO_KAGGLE_CARDINALITIES)
        high = sum(CRITEO_KAGGLE_CARDINALITIES)
        if not low <= self.vocab <= high:
            raise ValueError(
                f"SyntheticSpec.vocab must be in [{low}, {high}] (26 fields of at least "
                f"min(original, min_field_cardinality={self.min_field_cardinality}) ids, "
                f"never scaled above the Criteo Kaggle sizes), got {self.vocab}")
        real("zipf_exponent", 0.0, 5.0)
        real("mean_ctr", 0.0, 1.0, high_open=True)
        real("main_variance", 0.0, 100.0, low_open=False)
        real("interaction_variance", 0.0, 100.0, low_open=False)
        real("dense_variance", 0.0, 100.0, low_open=False)
        real("shrink_below_frequency", 0.0, 1.0, low_open=False)
        real("shrink_power", 0.0, 10.0, low_open=False)
        for name, count in (("dense_missing", N_DENSE), ("cat_missing", N_CAT)):
            value = getattr(self, name)
            try:
                rates = tuple(float(v) for v in value)
            except TypeError:
                raise ValueError(f"SyntheticSpec.{name} must be a sequence of {count} "
                                 f"numbers, got {value!r}") from None
            if len(rates) != count or not all(0.0 <= v < 1.0 for v in rates):
                raise ValueError(f"SyntheticSpec.{name} must hold {count} rates in [0, 1), "
                                 f"got {value!r}")
            object.__setattr__(self, name, rates)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["dense_missing"] = list(self.dense_missing)
        out["cat_missing"] = list(self.cat_missing)
        return out


def scaled_cardinalities(vocab: int, min_field_cardinality: int = 32) -> np.ndarray:
    """Per-field cardinalities: the Criteo Kaggle profile scaled so the sum is ``vocab``.

    ``card_f = clip(s * orig_f, min(orig_f, floor), orig_f)`` with one factor ``s`` found by
    bisection, then largest-remainder rounding so the integers sum exactly to ``vocab``.
    """
    orig = np.asarray(CRITEO_KAGGLE_CARDINALITIES, dtype=np.float64)
    low = np.minimum(orig, float(min_field_cardinality))
    if not low.sum() <= vocab <= orig.sum():
        raise ValueError(f"vocab {vocab} outside [{int(low.sum())}, {int(orig.sum())}]")
    lo_s, hi_s = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo_s + hi_s)
        if np.clip(mid * orig, low, orig).sum() < vocab:
            lo_s = mid
        else:
            hi_s = mid
    real = np.clip(hi_s * orig, low, orig)
    card = np.floor(real + 1e-9).astype(np.int64)
    card = np.clip(card, low.astype(np.int64), orig.astype(np.int64))
    order = np.argsort(-(real - card), kind="stable")
    i = 0
    while card.sum() < vocab:
        f = order[i % N_CAT]
        if card[f] < orig[f]:
            card[f] += 1
        i += 1
    while card.sum() > vocab:  # only from floating-point slack
        f = int(np.argmax(card - low))
        card[f] -= 1
    return card


class Rows(NamedTuple):
    """Latent content of consecutive lines, field-major: what the text encodes + the truth."""

    ranks: np.ndarray          # (26, n) int64, rank 1..card_f of each id, 0 = missing
    dense: np.ndarray          # (13, n) int64, 0 where missing
    dense_missing: np.ndarray  # (13, n) bool
    logit: np.ndarray          # (n,) float64
    p: np.ndarray              # (n,) float64, true click probability
    label: np.ndarray          # (n,) int8

    @property
    def n_rows(self) -> int:
        return self.p.shape[0]

    def slice(self, start: int, stop: int) -> "Rows":
        return Rows(self.ranks[:, start:stop], self.dense[:, start:stop],
                    self.dense_missing[:, start:stop], self.logit[start:stop],
                    self.p[start:stop], self.label[start:stop])

    @staticmethod
    def concat(parts: list["Rows"]) -> "Rows":
        if len(parts) == 1:
            return parts[0]
        axes = (1, 1, 1, 0, 0, 0)
        return Rows(*(np.concatenate(arrays, axis=ax) for arrays, ax in zip(zip(*parts), axes)))


def _seq(*key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(k) for k in key])


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(_seq(*key)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# Kinds of per-row random draws; each (block, kind, field) has its own stream.
_DRAW_RANK, _DRAW_CAT_MISSING, _DRAW_DENSE, _DRAW_DENSE_MISSING, _DRAW_LABEL = range(5)


class SyntheticModel:
    """The click model and the id/value samplers of a spec (a pure function of the spec).

    ``block(b, n)`` gives the first ``n`` rows of randomness block ``b``; line ``i`` of the
    file is row ``i % BLOCK_ROWS`` of block ``i // BLOCK_ROWS``. Thread-safe after
    construction (read-only).
    """

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        self.cardinalities = scaled_cardinalities(spec.vocab, spec.min_field_cardinality)
        rng = _rng(spec.seed, _STREAM_MODEL)

        # Zipf inverse-CDF tables per field.
        self._cdf: list[np.ndarray] = []
        self._guide: list[np.ndarray | None] = []
        grid = np.arange(_GUIDE + 1, dtype=np.float64) / _GUIDE
        for card in self.cardinalities:
            weights = np.arange(1, card + 1, dtype=np.float64) ** -spec.zipf_exponent
            cdf = np.cumsum(weights)
            cdf /= cdf[-1]
            self._cdf.append(cdf)
            # Guide table: u in [b/G, (b+1)/G) has its answer in [guide[b], guide[b+1]];
            # where the two agree (most of the Zipf mass) no search is needed.
            self._guide.append(np.searchsorted(cdf, grid, side="right").astype(np.int32)
                               if card > 64 else None)
        self._cat_missing = np.asarray(spec.cat_missing)
        self._dense_missing = np.asarray(spec.dense_missing)

        # Token hash per field: rank -> (rank * A + B) mod 2^32, A odd (a bijection).
        self.hash_mul = rng.integers(0, 2**31, size=N_CAT, dtype=np.uint64) * 2 + 1
        self.hash_add = rng.integers(0, 2**32, size=N_CAT, dtype=np.uint64)
        # The 8 ASCII hex characters of every token as one uint64 (index 0 = missing: NUL).
        hex4 = _word_tables()["hex4"]
        self.token_text: list[np.ndarray] = []
        for f, card in enumerate(self.cardinalities):
            h = self.tokens(f, np.arange(1, card + 1))
            words = np.zeros((card + 1, 2), dtype=np.uint32)
            words[1:, 0] = hex4[h >> np.uint64(16)]
            words[1:, 1] = hex4[h & np.uint64(0xFFFF)]
            self.token_text.append(words.view(np.uint64).reshape(-1))

        # Raw (unscaled) weights; index 0 of each table is the "missing" id.
        importance = np.exp(0.8 * rng.standard_normal(N_CAT))
        self.main: list[np.ndarray] = []
        for f in range(N_CAT):
            w = rng.standard_normal(self.cardinalities[f] + 1)
            w[1:] *= self._shrink(self.rank_probabilities(f))
            w[0] *= self._missing_scale(f)
            self.main.append(w)
        self.factors: list[tuple[np.ndarray, np.ndarray]] = []
        for f, g in INTERACTION_PAIRS:
            u = rng.standard_normal((self.cardinalities[f] + 1, FACTOR_DIM))
            v = rng.standard_normal((self.cardinalities[g] + 1, FACTOR_DIM))
            u[1:] *= self._shrink(self.rank_probabilities(f))[:, None]
            v[1:] *= self._shrink(self.rank_probabilities(g))[:, None]
            u[0] *= self._missing_scale(f)
            v[0] *= self._missing_scale(g)
            self.factors.append((u, v))
        self.dense_linear = rng.standard_normal(N_DENSE)
        self.dense_missing_effect = rng.standard_normal(N_DENSE)
        self.product_weight = 1.0 if rng.random() < 0.5 else -1.0
        self.threshold_weight = 1.0 if rng.random() < 0.5 else -1.0
        self.dense_center = np.zeros(N_DENSE)
        self.dense_scale = np.ones(N_DENSE)
        self.threshold = 0.0
        self.bias = 0.0
        self._calibrate(importance)

    def rank_probabilities(self, field: int) -> np.ndarray:
        """P(rank = r) for r = 1..card of a field (given that it is not missing)."""
        return np.diff(self._cdf[field], prepend=0.0)

    def tokens(self, field: int, ranks: np.ndarray) -> np.ndarray:
        """32-bit token values of ranks (>= 1) of a field."""
        r = np.asarray(ranks, dtype=np.uint64)
        return (r * self.hash_mul[field] + self.hash_add[field]) & np.uint64(0xFFFFFFFF)

    # -- click model ----------------------------------------------------------------
    def _shrink(self, prob: np.ndarray) -> np.ndarray:
        spec = self.spec
        if spec.shrink_power == 0.0 or spec.shrink_below_frequency == 0.0:
            return np.ones_like(prob)
        return np.minimum(1.0, (prob / spec.shrink_below_frequency) ** spec.shrink_power)

    def _missing_scale(self, field: int) -> float:
        """Size of the missing id's effect: full where missing is common, smaller where
        it is rare (the converter folds missing values into the OOV id with rare ids)."""
        return min(1.0, self._cat_missing[field] / _MISSING_FULL_EFFECT_RATE)

    def _calibrate(self, importance: np.ndarray) -> None:
        spec = self.spec
        ranks, dense, dmiss = self._features((spec.seed, _STREAM_CALIBRATION, 0),
                                             CALIBRATION_ROWS)
        # Dense standardization and threshold from the calibration sample.
        logs = np.log1p(np.maximum(dense, 0).astype(np.float64))
        for j in range(N_DENSE):
            present = logs[j][~dmiss[j]]
            self.dense_center[j] = present.mean()
            self.dense_scale[j] = max(present.std(), 1e-6)
        k = _THRESHOLD_TERM
        self.threshold = float(np.median(dense[k][~dmiss[k]]))

        # Main effects: field f gets variance main_variance * importance_f / sum.
        share = importance / importance.sum()
        for f in range(N_CAT):
            var = self.main[f][ranks[f]].var()
            target = spec.main_variance * share[f]
            self.main[f] *= math.sqrt(target / var) if var > 0 else 0.0
        # Interactions: equal shares.
        for (f, g), (u, v) in zip(INTERACTION_PAIRS, self.factors):
            var = np.einsum("nk,nk->n", u[ranks[f]], v[ranks[g]]).var()
            target = spec.interaction_variance / len(INTERACTION_PAIRS)
            scale = math.sqrt(target / var) if var > 0 else 0.0
            u *= math.sqrt(scale)
            v *= math.sqrt(scale)
        # Dense: half linear + missing effects, half the two nonlinear terms.
        linear, nonlinear = self._dense_parts(dense, dmiss)
        var = linear.var()
        scale = math.sqrt(0.5 * spec.dense_variance / var) if var > 0 else 0.0
        self.dense_linear *= scale
        self.dense_missing_effect *= scale
        var = nonlinear.var()
        scale = math.sqrt(0.5 * spec.dense_variance / var) if var > 0 else 0.0
        self.product_weight *= scale
        self.threshold_weight *= scale
        # Bias so that the mean click probability is mean_ctr.
        logit = self.logit(ranks, dense, dmiss)
        lo, hi = -30.0, 30.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if _sigmoid(logit + mid).mean() < spec.mean_ctr:
                lo = mid
            else:
                hi = mid
        self.bias = 0.5 * (lo + hi)

    def _dense_parts(self, dense: np.ndarray, dmiss: np.ndarray):
        t = np.log1p(np.maximum(dense, 0).astype(np.float64))
        t -= self.dense_center[:, None]
        t /= self.dense_scale[:, None]
        t[dmiss] = 0.0
        linear = self.dense_linear @ t + self.dense_missing_effect @ dmiss.astype(np.float64)
        a, b = _PRODUCT_TERM
        k = _THRESHOLD_TERM
        nonlinear = self.product_weight * t[a] * t[b] + self.threshold_weight * (
            (dense[k] > self.threshold) & ~dmiss[k])
        return linear, nonlinear

    def logit(self, ranks: np.ndarray, dense: np.ndarray, dense_missing: np.ndarray, *,
              main: list[np.ndarray] | None = None,
              factors: list[tuple[np.ndarray, np.ndarray]] | None = None,
              parts: bool = False):
        """Logit of field-major rows; ``main``/``factors`` replace the weight tables
        (for oracle studies). ``parts=True`` returns ``(bias, main, interactions, dense)``.
        """
        main = self.main if main is None else main
        factors = self.factors if factors is None else factors
        n = ranks.shape[1]
        m = np.zeros(n)
        for f in range(N_CAT):
            m += main[f].take(ranks[f])
        inter = np.zeros(n)
        for (f, g), (u, v) in zip(INTERACTION_PAIRS, factors):
            inter += np.einsum("nk,nk->n", u.take(ranks[f], axis=0), v.take(ranks[g], axis=0))
        linear, nonlinear = self._dense_parts(dense, dense_missing)
        if parts:
            return self.bias, m, inter, linear + nonlinear
        return self.bias + m + inter + linear + nonlinear

    # -- sampling -------------------------------------------------------------------
    def _features(self, key: tuple[int, ...], n: int):
        """Ids and dense values of n rows, field-major. Every (kind, field) has its own
        random stream, so the first m < n rows equal those of a draw of m rows."""
        ranks = np.empty((N_CAT, n), dtype=np.int64)
        for f in range(N_CAT):
            u = _rng(*key, _DRAW_RANK, f).random(n)
            guide = self._guide[f]
            if guide is None:
                r = np.searchsorted(self._cdf[f], u, side="right")
            else:
                bucket = (u * _GUIDE).astype(np.int64)
                r = guide.take(bucket).astype(np.int64)
                todo = np.flatnonzero(r != guide.take(bucket + 1))
                r[todo] = np.searchsorted(self._cdf[f], u[todo], side="right")
            r += 1
            np.minimum(r, self.cardinalities[f], out=r)
            if self._cat_missing[f] > 0:
                r[_rng(*key, _DRAW_CAT_MISSING, f).random(n) < self._cat_missing[f]] = 0
            ranks[f] = r

        dense = np.empty((N_DENSE, n), dtype=np.int64)
        dmiss = np.empty((N_DENSE, n), dtype=bool)
        for j in range(N_DENSE):
            z = _rng(*key, _DRAW_DENSE, j).standard_normal(n)
            x = np.exp(_DENSE_MU[j] + _DENSE_SIGMA[j] * z)
            np.minimum(x, _DENSE_MAX, out=x)
            dense[j] = x  # truncation toward zero == floor (x >= 0)
            um = _rng(*key, _DRAW_DENSE_MISSING, j).random(n)
            dmiss[j] = um < self._dense_missing[j]
            if j == 1:  # I2: small negative values -1..-3 on a few rows, as in Criteo
                lo = self._dense_missing[j]
                negative = (um >= lo) & (um < lo + _I2_NEGATIVE_RATE)
                frac = (um[negative] - lo) / _I2_NEGATIVE_RATE  # uniform in [0, 1)
                dense[j, negative] = -1 - (frac >= 0.8) - (frac >= 0.95)  # mostly -1
        dense[dmiss] = 0
        return ranks, dense, dmiss

    def block(self, index: int, n: int = BLOCK_ROWS) -> Rows:
        """The first ``n`` (<= BLOCK_ROWS) rows of randomness block ``index``."""
        if not 0 < n <= BLOCK_ROWS:
            raise ValueError(f"block rows must be in [1, {BLOCK_ROWS}], got {n}")
        key = (self.spec.seed, _STREAM_ROWS, index)
        ranks, dense, dmiss = self._features(key, n)
        logit = self.logit(ranks, dense, dmiss)
        p = _sigmoid(logit)
        label = (_rng(*key, _DRAW_LABEL, 0).random(n) < p).astype(np.int8)
        return Rows(ranks, dense, dmiss, logit, p, label)

    def rows(self, start: int, stop: int, total: int | None = None) -> Rows:
        """Rows ``start:stop`` of the line stream (``total`` = file length; the last block
        of a file holds ``total % BLOCK_ROWS`` rows, a prefix of the full block)."""
        parts = []
        b = start // BLOCK_ROWS
        while b * BLOCK_ROWS < stop:
            b0 = b * BLOCK_ROWS
            n = BLOCK_ROWS if total is None else min(BLOCK_ROWS, total - b0)
            parts.append(self.block(b, n).slice(max(start, b0) - b0, min(stop, b0 + n) - b0))
            b += 1
        return Rows.concat(parts)


# -- text formatting ------------------------------------------------------------------
_TABLES: dict[str, np.ndarray] = {}


def _word_tables() -> dict[str, np.ndarray]:
    """Lookup tables of ASCII words: 4 hex digits per 16-bit value, 2 decimal digits."""
    if not _TABLES:
        hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
        v = np.arange(1 << 16)
        chars = np.stack([hexdigits[(v >> s) & 15] for s in (12, 8, 4, 0)], axis=1)
        _TABLES["hex4"] = np.ascontiguousarray(chars, dtype=np.uint8).view(np.uint32).reshape(-1)
        i = np.arange(100)
        full = np.stack([48 + i // 10, 48 + i % 10], axis=1).astype(np.uint8)
        lead = full.copy()
        lead[i < 10, 0] = 0            # the top pair has no leading zero ...
        _TABLES["pair_lead0"] = lead.copy().view(np.uint16).reshape(-1)  # ... 0 -> "0"
        lead[0] = 0                    # ... and is empty above the number's digits
        _TABLES["pair_full"] = full.view(np.uint16).reshape(-1)
        _TABLES["pair_lead"] = lead.view(np.uint16).reshape(-1)
        _TABLES["tab16"] = np.frombuffer(b"\t\0", dtype=np.uint16)[0]
        _TABLES["minus16"] = np.frombuffer(b"\t-", dtype=np.uint16)[0]
    return _TABLES


def format_lines(model: SyntheticModel, rows: Rows) -> np.ndarray:
    """The Criteo text of ``rows`` as a uint8 array (vectorised, no Python loop per row).

    Lines are laid out in a fixed-width byte matrix whose unused positions hold NUL (a
    byte the format never contains); dropping every NUL yields the tab-separated lines.
    Decimal digits are written two at a time and hex tokens eight at a time from tables.
    """
    t = _word_tables()
    n = rows.label.shape[0]
    pieces = [(48 + rows.label).astype(np.uint8).reshape(n, 1)]
    present = ~rows.dense_missing
    for j in range(N_DENSE):
        ok = present[j]
        value = rows.dense[j]
        mag = np.where(ok, np.abs(value), 0).astype(np.uint32)
        n_pairs = max(1, (len(str(int(mag.max()))) + 1) // 2)
        # uint16 words: [TAB, sign], then the digit pairs, most significant first.
        col = np.empty((n, 1 + n_pairs), dtype=np.uint16)
        col[:, 0] = np.where(ok & (value < 0), t["minus16"], t["tab16"])
        for k in range(n_pairs):
            idx = mag % 100
            lead = t["pair_lead0"] if k == 0 else t["pair_lead"]
            col[:, n_pairs - k] = np.where(mag >= 100, t["pair_full"][idx], lead[idx])
            mag //= 100
        col[~ok, 1:] = 0
        pieces.append(col.view(np.uint8))
    cat = np.empty((n, N_CAT, 9), dtype=np.uint8)
    cat[:, :, 0] = 9
    text = np.empty((N_CAT, n), dtype=np.uint64)
    for f in range(N_CAT):
        np.take(model.token_text[f], rows.ranks[f], out=text[f])
    cat[:, :, 1:] = text.T.copy().view(np.uint8).reshape(n, N_CAT, 8)
    pieces.append(cat.reshape(n, N_CAT * 9))
    pieces.append(np.full((n, 1), 10, dtype=np.uint8))
    flat = np.concatenate(pieces, axis=1).reshape(-1)
    return flat[flat != 0]


# -- writing --------------------------------------------------------------------------
def _create_temp(out_dir: str, name: str) -> str:
    """A new empty hidden file ``.<name>.<pid>.<random>.tmp`` (mode 0666 less umask)."""
    while True:
        path = os.path.join(out_dir, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def _fsync(fileobj) -> None:
    fileobj.flush()
    os.fsync(fileobj.fileno())


def _render_block(model: SyntheticModel, index: int, rows: int, chunk_rows: int):
    """Generate block ``index`` of a ``rows``-line file and format it in pieces of at most
    ``chunk_rows`` lines (split at multiples of chunk_rows in file coordinates)."""
    b0 = index * BLOCK_ROWS
    n = min(BLOCK_ROWS, rows - b0)
    block = model.block(index, n)
    pieces = []
    start = b0
    while start < b0 + n:
        stop = min(b0 + n, (start // chunk_rows + 1) * chunk_rows)
        part = block.slice(start - b0, stop - b0)
        pieces.append(format_lines(model, part))
        start = stop
    return pieces, block.p, int(block.label.sum())


def generate(spec: SyntheticSpec, out_dir: str | os.PathLike, *, chunk_rows: int = 100_000,
             progress: IO[str] | None = sys.stderr, workers: int | None = None) -> dict:
    """Write ``train.txt``, ``train.truth.npy`` and ``synth.json`` into ``out_dir``.

    Args:
        spec: what to generate.
        out_dir: created if needed; existing files of the same names are replaced only
            when the new ones are complete.
        chunk_rows: most lines formatted in one step (the working set is also bounded by
            ``BLOCK_ROWS``, the fixed unit of randomness). The bytes do not depend on it.
        progress: stream for ``rows, rows/s`` lines about every 2 s; ``None`` silences.
        workers: threads generating blocks (numpy releases the GIL); default
            ``min(4, cpu_count)``. The bytes do not depend on it.

    Returns:
        The ``synth.json`` content plus ``paths``, ``seconds`` and ``rows_per_s``.
    """
    if not isinstance(spec, SyntheticSpec):
        raise TypeError(f"spec must be a SyntheticSpec, got {type(spec).__name__}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    model = SyntheticModel(spec)

    paths = {name: os.path.join(out_dir, name)
             for name in ("train.txt", "train.truth.npy", "synth.json")}
    temps: dict[str, str] = {}
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthetic")
    try:
        for name in paths:
            temps[name] = _create_temp(out_dir, name)
        truth = np.lib.format.open_memmap(
            temps["train.truth.npy"], mode="w+", dtype="<f8", shape=(spec.rows,))
        sha = hashlib.sha256()
        n_bytes = 0
        sum_p = 0.0
        sum_label = 0
        last_report = t0
        n_blocks = -(-spec.rows // BLOCK_ROWS)
        pending: deque = deque()
        next_block = 0
        with open(temps["train.txt"], "wb") as text:
            for index in range(n_blocks):
                while next_block < n_blocks and len(pending) < 2 * workers:
                    pending.append(pool.submit(_render_block, model, next_block, spec.rows,
                                               chunk_rows))
                    next_block += 1
                pieces, p, labels = pending.popleft().result()
                for data in pieces:
                    text.write(data.data)
                    sha.update(data.data)
                    n_bytes += data.size
                start = index * BLOCK_ROWS
                truth[start:start + p.size] = p
                sum_p += float(p.sum())  # per block: independent of chunk_rows, workers
                sum_label += labels
                done = start + p.size
                now = time.perf_counter()
                if progress is not None and (now - last_report >= 2.0 or done == spec.rows):
                    last_report = now
                    rate = done / max(now - t0, 1e-9)
                    print(f"[synthetic] {done:,}/{spec.rows:,} rows, {rate:,.0f} rows/s",
                          file=progress, flush=True)
            _fsync(text)
        truth.flush()
        del truth

        meta = {
            "schema": SCHEMA,
            "spec": spec.to_dict(),
            "rows": spec.rows,
            "fields": {"dense": list(DENSE_NAMES), "categorical": list(CAT_NAMES)},
            "cardinalities": {name: int(c) for name, c in zip(CAT_NAMES, model.cardinalities)},
            "vocab": int(model.cardinalities.sum()),
            "mean_true_ctr": sum_p / spec.rows,
            "mean_label": sum_label / spec.rows,
            "model": {
                "bias": model.bias,
                "interaction_pairs": [[CAT_NAMES[f], CAT_NAMES[g]]
                                      for f, g in INTERACTION_PAIRS],
                "block_rows": BLOCK_ROWS,
            },
            "files": {"train.txt": {"bytes": n_bytes, "sha256": sha.hexdigest()},
                      "train.truth.npy": {"dtype": "float64", "shape": [spec.rows]}},
        }
        with open(temps["synth.json"], "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2)
            fh.write("\n")
            _fsync(fh)
        # train.txt only appears once its truth is in place; synth.json comes last.
        for name in ("train.truth.npy", "train.txt", "synth.json"):
            os.replace(temps.pop(name), paths[name])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for tmp in temps.values():
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    seconds = time.perf_counter() - t0
    result = dict(meta)
    result.update(paths=paths, seconds=seconds, rows_per_s=spec.rows / max(seconds, 1e-9))
    return result

