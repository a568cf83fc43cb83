"""Synthetic Criteo generator: text format, reproducibility, truth, skew, validation,
atomic output; and (slow) the calibration of the click model."""
import hashlib
import io
import json
import os
import re

import numpy as np
import pytest

from mindrec.data import synthetic
from mindrec.data.synthetic import (BLOCK_ROWS, CRITEO_KAGGLE_CARDINALITIES, N_CAT, N_DENSE,
                                    SyntheticModel, SyntheticSpec, generate,
                                    scaled_cardinalities)
from mindrec.metrics import roc_auc

INT_RE = re.compile(rb"-?[0-9]+")
TOKEN_RE = re.compile(rb"[0-9a-f]{8}")
FILES = ("train.txt", "train.truth.npy", "synth.json")


def read_lines(path):
    with open(path, "rb") as fh:
        data = fh.read()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def columns(lines):
    """labels (n,), dense (13, n) of bytes, categorical (26, n) of bytes."""
    rows = [line.split(b"\t") for line in lines]
    cols = list(zip(*rows))
    return cols[0], cols[1:1 + N_DENSE], cols[1 + N_DENSE:]


def file_bytes(directory):
    return {name: (directory / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    spec = SyntheticSpec(rows=3_000, vocab=5_000, seed=7)
    info = generate(spec, out, progress=None)
    return spec, out, info


@pytest.fixture(scope="module")
def default_vocab_run(tmp_path_factory):
    """20k rows at the default vocabulary (200k)."""
    out = tmp_path_factory.mktemp("default")
    spec = SyntheticSpec(rows=20_000, seed=0)
    info = generate(spec, out, progress=None)
    return spec, out, info


def test_text_format(small_run):
    spec, out, info = small_run
    lines = read_lines(out / "train.txt")
    assert len(lines) == spec.rows
    for line in lines:
        fields = line.split(b"\t")
        assert len(fields) == 1 + N_DENSE + N_CAT, line
        assert fields[0] in (b"0", b"1")
        for value in fields[1:1 + N_DENSE]:
            assert value == b"" or INT_RE.fullmatch(value), line
            assert not value.startswith(b"0") or value == b"0", line  # no leading zeros
        for token in fields[1 + N_DENSE:]:
            assert token == b"" or TOKEN_RE.fullmatch(token), line


def test_values_and_missing_rates(small_run):
    spec, out, info = small_run
    labels, dense, cats = columns(read_lines(out / "train.txt"))
    n = spec.rows
    for j, col in enumerate(dense):
        missing = sum(v == b"" for v in col) / n
        assert abs(missing - spec.dense_missing[j]) < 0.04, (j, missing)
        present = [int(v) for v in col if v != b""]
        if j == 1:
            assert set(v for v in present if v < 0) <= {-1, -2, -3}
            assert any(v < 0 for v in present)  # I2 has a few small negatives
        else:
            assert min(present) >= 0
    for f, col in enumerate(cats):
        missing = sum(v == b"" for v in col) / n
        assert abs(missing - spec.cat_missing[f]) < 0.04, (f, missing)
        distinct = {v for v in col if v != b""}
        assert len(distinct) <= info["cardinalities"][f"C{f + 1}"]
    # Heavy tails: I5 spans several orders of magnitude.
    i5 = np.array([int(v) for v in dense[4] if v != b""])
    assert i5.max() > 100 * max(np.median(i5), 1)


def test_metadata(small_run):
    spec, out, info = small_run
    meta = json.loads((out / "synth.json").read_text())
    assert meta["schema"] == "mindrec-synthetic/1"
    assert meta["rows"] == spec.rows
    assert meta["spec"]["seed"] == spec.seed and meta["spec"]["vocab"] == spec.vocab
    assert sum(meta["cardinalities"].values()) == spec.vocab == meta["vocab"]
    assert list(meta["cardinalities"]) == [f"C{f}" for f in range(1, N_CAT + 1)]
    data = (out / "train.txt").read_bytes()
    assert meta["files"]["train.txt"] == {"bytes": len(data),
                                          "sha256": hashlib.sha256(data).hexdigest()}
    truth = np.load(out / "train.truth.npy", allow_pickle=False)
    assert meta["mean_true_ctr"] == pytest.approx(truth.mean(), rel=1e-12)
    assert info["rows_per_s"] > 0 and info["paths"]["train.txt"] == str(out / "train.txt")
    assert sorted(os.listdir(out)) == sorted(FILES)  # no temporary files left


def test_reproducible_regardless_of_chunking_and_threads(tmp_path):
    # Crosses a randomness-block boundary (BLOCK_ROWS) with chunks that straddle it.
    spec = SyntheticSpec(rows=BLOCK_ROWS + 3_001, vocab=3_000, seed=11)
    runs = []
    for i, (chunk_rows, workers) in enumerate([(100_000, 2), (7_001, 1), (BLOCK_ROWS, 3)]):
        out = tmp_path / f"run{i}"
        generate(spec, out, chunk_rows=chunk_rows, workers=workers, progress=None)
        runs.append(file_bytes(out))
    assert runs[0] == runs[1] == runs[2]
    assert len(read_lines(tmp_path / "run0" / "train.txt")) == spec.rows


def test_shorter_run_is_a_prefix(tmp_path):
    short, long = tmp_path / "short", tmp_path / "long"
    generate(SyntheticSpec(rows=1_000, vocab=3_000, seed=5), short, progress=None)
    generate(SyntheticSpec(rows=2_500, vocab=3_000, seed=5), long, progress=None)
    assert read_lines(long / "train.txt")[:1_000] == read_lines(short / "train.txt")
    np.testing.assert_array_equal(np.load(long / "train.truth.npy")[:1_000],
                                  np.load(short / "train.truth.npy"))


def test_different_seed_gives_different_data(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate(SyntheticSpec(rows=500, vocab=3_000, seed=1), a, progress=None)
    generate(SyntheticSpec(rows=500, vocab=3_000, seed=2), b, progress=None)
    assert (a / "train.txt").read_bytes() != (b / "train.txt").read_bytes()
    assert not np.array_equal(np.load(a / "train.truth.npy"), np.load(b / "train.truth.npy"))


def test_truth_matches_labels(default_vocab_run):
    spec, out, info = default_vocab_run
    truth = np.load(out / "train.truth.npy", allow_pickle=False)
    assert truth.dtype == np.float64 and truth.shape == (spec.rows,)
    assert np.all((truth > 0) & (truth < 1))
    labels = np.array([int(line[:1]) for line in read_lines(out / "train.txt")])
    sigma = np.sqrt(np.sum(truth * (1 - truth))) / spec.rows
    assert abs(labels.mean() - truth.mean()) < 4 * sigma
    assert abs(truth.mean() - spec.mean_ctr) < 0.01
    # Bayes-optimal AUC of the sample: calibrated near 0.80 (Criteo-like).
    assert 0.77 < roc_auc(labels, truth) < 0.83


def test_zipf_skew(default_vocab_run):
    spec, out, info = default_vocab_run
    _, _, cats = columns(read_lines(out / "train.txt"))
    c3 = [v for v in cats[2] if v != b""]  # the largest field
    card = info["cardinalities"]["C3"]
    assert card > 50_000
    values, counts = np.unique(np.array(c3), return_counts=True)
    top = counts.max() / len(c3)
    assert top > 0.05 and top > 1_000 / card  # the head is far above uniform 1/card
    assert len(values) < 0.5 * len(c3)  # heavy repetition, yet ...
    assert len(values) > 1_000  # ... a long tail of distinct ids


def test_tokens_are_a_bijection_per_field():
    model = SyntheticModel(SyntheticSpec(rows=1, vocab=50_000))
    for f in range(N_CAT):
        card = int(model.cardinalities[f])
        tokens = model.tokens(f, np.arange(1, card + 1))
        assert np.unique(tokens).size == card
        text = model.token_text[f][1:].view(np.uint8).reshape(card, 8)
        expected = np.array([b"%08x" % t for t in tokens[:50]])
        assert [bytes(row) for row in text[:50]] == list(expected)


@pytest.mark.parametrize("vocab", [709, 5_000, 200_000, 5_000_000,
                                   sum(CRITEO_KAGGLE_CARDINALITIES)])
def test_scaled_cardinalities(vocab):
    card = scaled_cardinalities(vocab)
    orig = np.array(CRITEO_KAGGLE_CARDINALITIES)
    assert card.sum() == vocab
    assert np.all(card <= orig) and np.all(card >= np.minimum(orig, 32))
    if vocab == orig.sum():
        np.testing.assert_array_equal(card, orig)
    # One scale factor: a larger original field never ends up smaller.
    order = np.argsort(orig, kind="stable")
    assert np.all(np.diff(card[order]) >= 0)


@pytest.mark.parametrize("kwargs, field", [
    ({"rows": 0}, "rows"),
    ({"rows": -5}, "rows"),
    ({"rows": 1.5}, "rows"),
    ({"rows": True}, "rows"),
    ({"rows": 10, "vocab": 100}, "vocab"),
    ({"rows": 10, "vocab": 10**9}, "vocab"),
    ({"rows": 10, "seed": -1}, "seed"),
    ({"rows": 10, "zipf_exponent": 0.0}, "zipf_exponent"),
    ({"rows": 10, "mean_ctr": 1.0}, "mean_ctr"),
    ({"rows": 10, "main_variance": -1.0}, "main_variance"),
    ({"rows": 10, "interaction_variance": float("nan")}, "interaction_variance"),
    ({"rows": 10, "dense_missing": (0.1,) * 12}, "dense_missing"),
    ({"rows": 10, "cat_missing": (1.0,) * 26}, "cat_missing"),
    ({"rows": 10, "min_field_cardinality": 0}, "min_field_cardinality"),
])
def test_spec_validation(kwargs, field):
    with pytest.raises(ValueError, match=rf"SyntheticSpec\.{field}\b"):
        SyntheticSpec(**kwargs)


def test_generate_argument_validation(tmp_path):
    with pytest.raises(ValueError, match="chunk_rows"):
        generate(SyntheticSpec(rows=10, vocab=1_000), tmp_path, chunk_rows=0)
    with pytest.raises(ValueError, match="workers"):
        generate(SyntheticSpec(rows=10, vocab=1_000), tmp_path, workers=0)
    with pytest.raises(TypeError, match="SyntheticSpec"):
        generate({"rows": 10}, tmp_path)


def test_failure_leaves_no_train_file(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.format_lines

    def failing(model, rows):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real(model, rows)

    monkeypatch.setattr(synthetic, "format_lines", failing)
    spec = SyntheticSpec(rows=BLOCK_ROWS + 10, vocab=1_000)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate(spec, tmp_path / "fresh", chunk_rows=20_000, workers=1, progress=None)
    assert os.listdir(tmp_path / "fresh") == []

    # A complete earlier run in the same directory stays untouched.
    monkeypatch.setattr(synthetic, "format_lines", real)
    old = tmp_path / "old"
    generate(SyntheticSpec(rows=100, vocab=1_000), old, progress=None)
    before = file_bytes(old)
    calls["n"] = 0
    monkeypatch.setattr(synthetic, "format_lines", failing)
    with pytest.raises(RuntimeError):
        generate(spec, old, chunk_rows=20_000, workers=2, progress=None)
    assert file_bytes(old) == before
    assert sorted(os.listdir(old)) == sorted(FILES)


def test_progress_reporting(tmp_path):
    stream = io.StringIO()
    generate(SyntheticSpec(rows=1_000, vocab=1_000), tmp_path / "a", progress=stream)
    assert re.search(r"1,000/1,000 rows, [\d,]+ rows/s", stream.getvalue())


def test_progress_none_is_silent(tmp_path, capsys):
    generate(SyntheticSpec(rows=1_000, vocab=1_000), tmp_path / "a", progress=None)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# -- calibration (slow) ----------------------------------------------------------------
def oov_tables(model, train_ranks, threshold=2):
    """Weight tables as seen through the converter: ids seen <= threshold times in train,
    unseen ids and missing values share a per-field OOV id, whose (oracle) weight is the
    occurrence-weighted average of the true weights it stands for."""
    keep = []
    for f in range(N_CAT):
        counts = np.bincount(train_ranks[f], minlength=model.cardinalities[f] + 1)
        k = counts > threshold
        k[0] = False  # missing -> OOV, as the converter does
        keep.append(k)

    def fold(table, f):
        counts = np.bincount(train_ranks[f], minlength=table.shape[0]).astype(np.float64)
        out = table.copy()
        folded = ~keep[f]
        weights = counts[folded]
        if weights.sum() > 0:
            out[folded] = np.tensordot(weights, table[folded], axes=1) / weights.sum()
        return out

    main = [fold(model.main[f], f) for f in range(N_CAT)]
    factors = [(fold(u, f), fold(v, g))
               for (f, g), (u, v) in zip(synthetic.INTERACTION_PAIRS, model.factors)]
    return keep, main, factors


def fit_logistic_regression(train, test, keep, steps=150, lr=0.05, l2=3e-5):
    """Per-field one-hot LR (OOV-folded ids) + log1p(dense) and missing indicators,
    full-batch Adam in numpy. Returns the test AUC."""
    offsets, maps, width = [], [], 0
    for k in keep:
        m = np.zeros(k.size, dtype=np.int64)
        m[k] = np.arange(1, k.sum() + 1)
        maps.append(m)
        offsets.append(width)
        width += int(k.sum()) + 1

    def encode(rows):
        ids = np.stack([maps[f][rows.ranks[f]] + offsets[f] for f in range(N_CAT)])
        t = np.log1p(np.maximum(rows.dense, 0).astype(np.float64))
        t[rows.dense_missing] = 0.0
        return ids, np.concatenate([t, rows.dense_missing.astype(np.float64)])

    ids, dense = encode(train)
    ids_te, dense_te = encode(test)
    y = train.label.astype(np.float64)
    prior = np.log(y.mean() / (1 - y.mean()))
    params = [np.zeros(width), np.zeros(dense.shape[0]), np.array([prior])]
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    flat = ids.reshape(-1)

    def logits(ids_, dense_):
        return params[0][ids_].sum(axis=0) + params[1] @ dense_ + params[2][0]

    for step in range(1, steps + 1):
        g = (1 / (1 + np.exp(-logits(ids, dense))) - y) / y.size
        grads = [np.bincount(flat, weights=np.tile(g, N_CAT), minlength=width) + l2 * params[0],
                 dense @ g, np.array([g.sum()])]
        for p, gr, a, b in zip(params, grads, m1, m2):
            a *= 0.9
            a += 0.1 * gr
            b *= 0.999
            b += 0.001 * gr * gr
            p -= lr * (a / (1 - 0.9 ** step)) / (np.sqrt(b / (1 - 0.999 ** step)) + 1e-8)
    return roc_auc(test.label, logits(ids_te, dense_te))


@pytest.mark.slow
def test_calibration():
    """Bayes AUC ~0.80; OOV folding costs < 0.01; a linear model is 0.005-0.035 below."""
    rows = 300_000
    model = SyntheticModel(SyntheticSpec(rows=rows, vocab=200_000, seed=0))
    data = model.rows(0, rows, rows)
    n_train = rows * 9 // 10
    train, test = data.slice(0, n_train), data.slice(n_train, rows)
    bayes = roc_auc(test.label, test.p)
    keep, main, factors = oov_tables(model, train.ranks)
    oracle = roc_auc(test.label, model.logit(test.ranks, test.dense, test.dense_missing,
                                             main=main, factors=factors))
    linear = fit_logistic_regression(train, test, keep)
    print(f"bayes {bayes:.4f} oracle_oov {oracle:.4f} linear {linear:.4f}")
    assert 0.78 <= bayes <= 0.82
    assert bayes - oracle < 0.01
    assert 0.005 < bayes - linear < 0.035
