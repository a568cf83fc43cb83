"""Raw Criteo parsing, vocabulary and encoding on small hand-made files."""
import dataclasses
import gzip
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from criteo_rows import HAND_ROWS, line, write
from mindrec.data.criteo import (NUM_DENSE, CriteoFormatError, Vocabulary, VocabularyBuilder,
                                 encode, iter_chunks)
from mindrec.data.dataset import DatasetError


def read_all(path, **kwargs):
    chunks = list(iter_chunks(path, **kwargs))
    return (np.concatenate([c.line_numbers for c in chunks]), np.concatenate([c.labels for c in chunks]),
            np.concatenate([c.dense for c in chunks]), np.concatenate([c.categorical for c in chunks]),
            [n for c in chunks for n in c.bad_lines])


def test_parse_hand_file(tmp_path):
    path = write(tmp_path / "hand.txt", HAND_ROWS, final_newline=False)
    line_numbers, labels, dense, categorical, bad = read_all(path, chunk_rows=4)
    assert line_numbers.tolist() == [1, 2, 3, 4, 5, 6]
    assert labels.dtype == np.int8 and labels.tolist() == [1, 0, 0, 1, 0, 1]
    assert dense.dtype == np.float64 and dense.shape == (6, 13)
    np.testing.assert_array_equal(dense[:, 0], [5, -3, np.nan, 10, 0, 2])
    assert np.isnan(dense[:, 1]).all()
    np.testing.assert_array_equal(dense[:, 2], [-1, -2, -3, -4, -5, -6])
    assert categorical.dtype == np.int64 and categorical.shape == (6, 26)
    assert categorical[:, 0].tolist() == [0xB, 0xB, 0xA, 0xA, 0xA, 0xC]
    assert categorical[:, 1].tolist() == [0xFF, 0xFF, -1, 0xFF, 0xFF, 0xFF]
    assert categorical[:, 2].tolist() == [0xABCDEF01] * 3 + [1, -1, -1]
    assert (categorical[:, 3:] == -1).all()
    assert bad == []


def test_wide_tokens(tmp_path):
    path = write(tmp_path / "wide.txt", [
        line(0, ["-1234567890123", "9" * 15], ["7fffffffffffffff", "0123456789abcdef", "F"]),
    ])
    _, _, dense, categorical, _ = read_all(path)
    assert dense[0, :2].tolist() == [-1234567890123.0, 999999999999999.0]
    assert categorical[0, :3].tolist() == [2**63 - 1, 0x0123456789ABCDEF, 15]


def test_gzip_reads_like_plain(tmp_path):
    plain = read_all(write(tmp_path / "a.txt", HAND_ROWS))
    packed = read_all(write(tmp_path / "a.txt.gz", HAND_ROWS))
    for x, y in zip(plain, packed):
        np.testing.assert_array_equal(x, y)


BAD_LINES = [
    ("\t".join(line(0).split("\t")[:-1]) + "\n", "expected 40 tab-separated columns, found 39"),
    (line(0)[:-1] + "\t\n", "expected 40 tab-separated columns, found 41"),
    ("\n", "expected 40 tab-separated columns, found 1"),
    (line(2), "label: '2' is not 0 or 1"),
    (line("", ["1"]), "label: '' is not 0 or 1"),
    (line(0, ["1", "2", "abc"]), "field I3: 'abc' is not an integer"),
    (line(0, ["1.5"]), "field I1: '1.5' is not an integer"),
    (line(0, ["-"]), "field I1: '-' is not an integer"),
    (line(0, ["1-2"]), "field I1: '1-2' is not an integer"),
    (line(0, ["1" * 21]), "field I1: '111111111111111111111' is longer than 20 characters"),
    (line(0, [], ["1", "2", "3", "4", "zz12"]), "field C5: 'zz12' is not a hex token"),
    (line(0, [], ["-1"]), "field C1: '-1' is not a hex token"),
    (line(0, [], ["8000000000000000"]), "field C1: '8000000000000000' is out of range"),
    (line(0, [], ["1" * 17]), "field C1: '11111111111111111' is out of range"),
    (line(0, [], ["ab\0d"]), "contains a NUL byte"),
]


@pytest.mark.parametrize("bad_line, reason", BAD_LINES)
def test_bad_row_stops_with_path_line_and_reason(tmp_path, bad_line, reason):
    path = write(tmp_path / "bad.txt", HAND_ROWS[:2] + [bad_line] + HAND_ROWS[2:])
    with pytest.raises(CriteoFormatError) as caught:
        list(iter_chunks(path, chunk_rows=2))
    assert caught.value.path == str(path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: {reason}")


@pytest.mark.parametrize("bad_line, reason", BAD_LINES)
def test_bad_row_skipped(tmp_path, bad_line, reason):
    path = write(tmp_path / "bad.txt", HAND_ROWS[:2] + [bad_line] + HAND_ROWS[2:])
    line_numbers, labels, _, categorical, bad = read_all(path, chunk_rows=2, on_bad_row="skip")
    assert bad == [3]
    assert line_numbers.tolist() == [1, 2, 4, 5, 6, 7]
    assert labels.tolist() == [1, 0, 0, 1, 0, 1]
    assert categorical[:, 0].tolist() == [0xB, 0xB, 0xA, 0xA, 0xA, 0xC]


def test_truncated_final_line(tmp_path):
    path = write(tmp_path / "cut.txt", HAND_ROWS + [HAND_ROWS[0][:20]], final_newline=False)
    with pytest.raises(CriteoFormatError, match=r"cut\.txt:7: expected 40 tab-separated columns"):
        list(iter_chunks(path))
    *_, bad = read_all(path, on_bad_row="skip")
    assert bad == [7]


@pytest.mark.parametrize("on_bad_row", ["stop", "skip"])
def test_empty_file(tmp_path, on_bad_row):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(CriteoFormatError, match="empty.txt: file is empty") as caught:
        list(iter_chunks(path, on_bad_row=on_bad_row))
    assert caught.value.line is None


@pytest.mark.parametrize("on_bad_row", ["stop", "skip"])
def test_truncated_gzip(tmp_path, on_bad_row):
    data = gzip.compress("".join(HAND_ROWS * 50).encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CriteoFormatError, match=r"cut\.txt\.gz: truncated or corrupt gzip"):
        list(iter_chunks(path, on_bad_row=on_bad_row))


# HAND_ROWS leave C26 empty; these end in a token, so the CR follows a hex digit.
FULL_ROWS = HAND_ROWS + [line(1, ["7", "-8"], ["1f"] * 26), line(0, [], ["2"] * 26)]


@pytest.mark.parametrize("name", ["a.txt", "a.txt.gz"])
@pytest.mark.parametrize("newline, bom", [("\r\n", False), ("\n", True), ("\r\n", True)])
def test_crlf_and_byte_order_mark_read_like_lf(tmp_path, name, newline, bom):
    expected = read_all(write(tmp_path / f"lf-{name}", FULL_ROWS))
    for final_newline in (True, False):
        path = write(tmp_path / name, FULL_ROWS, newline=newline, bom=bom,
                     final_newline=final_newline)
        for x, y in zip(read_all(path, chunk_rows=3), expected):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("bad_line, reason", [
    (line(0, [], ["1"] * 25 + ["zz"]), "field C26: 'zz' is not a hex token"),
    (line(0, [], ["1"] * 25 + ["1" * 17]), "field C26: '11111111111111111' is out of range"),
    ("\t".join(line(0).split("\t")[:-1]) + "\n", "expected 40 tab-separated columns, found 39"),
    (line(0, [], ["a\rb"]), "field C1: 'a\\rb' is not a hex token"),  # a CR inside a line
    (line(0, [], ["1"] * 25 + ["1\r"]), "field C26: '1\\r' is not a hex token"),  # CR CR LF
])
def test_crlf_bad_row_reasons(tmp_path, bad_line, reason):
    path = write(tmp_path / "bad.txt", HAND_ROWS[:2] + [bad_line] + HAND_ROWS[2:],
                 newline="\r\n", bom=True)
    with pytest.raises(CriteoFormatError) as caught:
        list(iter_chunks(path))
    assert str(caught.value).startswith(f"{path}:3: {reason}")


def test_byte_order_mark_only_at_the_start(tmp_path):
    path = write(tmp_path / "a.txt", HAND_ROWS[:2] + ["\ufeff" + HAND_ROWS[2]])
    with pytest.raises(CriteoFormatError, match=r"a\.txt:3: label: '\\ufeff0' is not 0 or 1"):
        list(iter_chunks(path))


def test_digest_covers_the_stored_bytes(tmp_path):
    import hashlib
    for name in ("a.txt", "a.txt.gz", "crlf.txt", "crlf.txt.gz"):
        path = write(tmp_path / name, HAND_ROWS, newline="\r\n" if "crlf" in name else "\n",
                     bom="crlf" in name)
        digest = hashlib.sha256()
        list(iter_chunks(path, chunk_rows=2, digest=digest))
        assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


NOISE = st.text("0123456789abcdefABCDEF-xz. ", max_size=22)
INT_TOKEN = st.one_of(st.just(""), st.integers(-(10**19 - 1), 10**19 - 1).map(str))
HEX_TOKEN = st.one_of(
    st.just(""),
    st.tuples(st.integers(0, 2**63 - 1), st.integers(1, 16), st.booleans()).map(
        lambda t: (format(t[0], f"0{t[1]}x").upper() if t[2] else format(t[0], f"0{t[1]}x"))))


@st.composite
def raw_rows(draw):
    """(label, ints, cats) with valid tokens, then maybe one field replaced by noise."""
    label = draw(st.sampled_from([0, 1, 1, 0, 2]))
    fields = draw(st.lists(INT_TOKEN, min_size=13, max_size=13)) + draw(
        st.lists(HEX_TOKEN, min_size=26, max_size=26))
    corrupt = draw(st.one_of(st.none(), st.tuples(st.integers(0, 38), NOISE)))
    if corrupt is not None:
        fields[corrupt[0]] = corrupt[1]
    return label, fields[:13], fields[13:]


@settings(max_examples=80, deadline=None)
@given(st.lists(raw_rows(), min_size=1, max_size=12), st.sampled_from(["\n", "\r\n"]),
       st.booleans())
def test_vectorised_parse_matches_python(tmp_path_factory, rows, newline, bom):
    """The numpy parser agrees with a plain Python reading of every row (LF or CRLF line
    ends, with or without a byte order mark)."""
    path = write(tmp_path_factory.mktemp("h") / "rows.txt",
                 [line(label, ints, cats) for label, ints, cats in rows], newline=newline, bom=bom)
    line_numbers, labels, dense, categorical, bad = read_all(path, chunk_rows=5, on_bad_row="skip")
    expected_good = []
    for number, (label, ints, cats) in enumerate(rows, start=1):
        ok = (label in (0, 1)
              and all(v == "" or (re.fullmatch(r"-?[0-9]+", v) and len(v) <= 20) for v in ints)
              and all(v == "" or (re.fullmatch(r"[0-9a-fA-F]{1,16}", v) and int(v, 16) < 2**63)
                      for v in cats))
        if ok:
            expected_good.append(number)
    assert line_numbers.tolist() == expected_good
    assert bad == sorted(set(range(1, len(rows) + 1)) - set(expected_good))
    for i, number in enumerate(expected_good):
        label, ints, cats = rows[number - 1]
        assert labels[i] == label
        assert dense[i].tolist() == pytest.approx([float(v) if v else np.nan for v in ints], nan_ok=True)
        assert categorical[i].tolist() == [int(v, 16) if v else -1 for v in cats]
    if bad:  # the first bad row stops a strict read, with a reason
        with pytest.raises(CriteoFormatError, match=f":{bad[0]}: "):
            list(iter_chunks(path, chunk_rows=5))


@pytest.fixture
def hand_path(tmp_path):
    return write(tmp_path / "hand.txt", HAND_ROWS)


def hand_vocabulary(path, threshold, chunk_rows=100) -> Vocabulary:
    builder = VocabularyBuilder()
    for chunk in iter_chunks(path, chunk_rows=chunk_rows):
        builder.update(chunk)
    return builder.build(threshold)


def test_threshold_is_exceeded_not_reached(hand_path):
    assert hand_vocabulary(hand_path, 1).tokens[0].tolist() == [0xA, 0xB]  # a: 3 > 1, b: 2 > 1, c: 1
    assert hand_vocabulary(hand_path, 2).tokens[0].tolist() == [0xA]  # b: 2 is not > 2
    assert hand_vocabulary(hand_path, 4).tokens[1].tolist() == [0xFF]  # ff: 5 > 4
    assert hand_vocabulary(hand_path, 5).tokens[1].tolist() == []


def test_vocabulary_layout(hand_path):
    vocab = hand_vocabulary(hand_path, 1)
    # C1 owns 13 (OOV), 14 (a), 15 (b); C2 16 (OOV), 17 (ff); C3 18 (OOV), 19 (0xabcdef01);
    # C4..C26 own only their OOV ids 20..42.
    assert vocab.field_sizes == [1] * 13 + [3, 2, 2] + [1] * 23
    assert vocab.size == 43
    assert vocab.bases.tolist() == [13, 16, 18] + list(range(20, 43))
    # I1 max is 10; I2 is all missing and I3 all negative, so both divide by 1.0.
    assert vocab.dense_max.tolist() == [10.0, 1.0, 1.0] + [1.0] * 10
    assert vocab.threshold == 1


def test_encode_hand_rows(hand_path):
    vocab = hand_vocabulary(hand_path, 1)
    (chunk,) = iter_chunks(hand_path)
    ids, vals, labels = encode(chunk, vocab)
    assert ids.dtype == np.int32 and vals.dtype == np.float32 and labels.dtype == np.float32
    dense_ids = list(range(13))
    tail = list(range(20, 43))  # C4..C26 missing -> their OOV ids
    assert ids[0].tolist() == dense_ids + [15, 17, 19] + tail  # b -> 13+2, ff -> 16+1, abcdef01 -> 18+1
    assert ids[2].tolist() == dense_ids + [14, 16, 19] + tail  # a -> 13+1, C2 missing -> OOV 16
    assert ids[3].tolist() == dense_ids + [14, 17, 18] + tail  # 0x1 seen once -> OOV 18
    assert ids[5].tolist() == dense_ids + [13, 17, 18] + tail  # c seen once -> OOV 13; C3 missing
    ones = [1.0] * 10
    # I1 / 10; I2 missing -> 0; I3 / 1.0; categorical values are 1.0.
    np.testing.assert_allclose(vals[1], [-0.3, 0.0, -2.0] + ones + [1.0] * 26, rtol=1e-6)
    np.testing.assert_allclose(vals[2], [0.0, 0.0, -3.0] + ones + [1.0] * 26)
    np.testing.assert_allclose(vals[3], [1.0, 0.0, -4.0] + ones + [1.0] * 26)
    assert labels.tolist() == [1, 0, 0, 1, 0, 1]


def test_unseen_tokens_map_to_oov(tmp_path, hand_path):
    vocab = hand_vocabulary(hand_path, 1)
    path = write(tmp_path / "new.txt", [line(0, [], ["ffff", "0", "abcdef02", "5"])])
    ids, _, _ = encode(next(iter_chunks(path)), vocab)
    assert ids[0, 13:17].tolist() == [13, 16, 18, 20]


def test_counts_merge_across_chunks(hand_path):
    one_by_one = hand_vocabulary(hand_path, 1, chunk_rows=1)
    whole = hand_vocabulary(hand_path, 1)
    assert [t.tolist() for t in one_by_one.tokens] == [t.tolist() for t in whole.tokens]
    np.testing.assert_array_equal(one_by_one.dense_max, whole.dense_max)


def test_builder_mask_counts_only_selected_rows(hand_path):
    builder = VocabularyBuilder()
    (chunk,) = iter_chunks(hand_path)
    builder.update(chunk, mask=np.array([True, True, False, False, False, True]))
    vocab = builder.build(1)
    assert vocab.tokens[0].tolist() == [0xB]  # a appears only in rows 3-5
    assert vocab.dense_max[0] == 5.0


def test_vocabulary_save_load_round_trip(tmp_path, hand_path):
    vocab = hand_vocabulary(hand_path, 1)
    vocab.save(tmp_path / "vocab.npz")
    loaded = Vocabulary.load(tmp_path / "vocab.npz")
    assert loaded.threshold == vocab.threshold
    assert loaded.size == vocab.size and loaded.field_sizes == vocab.field_sizes
    np.testing.assert_array_equal(loaded.dense_max, vocab.dense_max)
    for a, b in zip(loaded.tokens, vocab.tokens):
        np.testing.assert_array_equal(a, b)
    (chunk,) = iter_chunks(hand_path)
    for a, b in zip(encode(chunk, loaded), encode(chunk, vocab)):
        np.testing.assert_array_equal(a, b)


def test_vocabulary_load_rejects_other_npz(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="other.npz: not a mindrec-vocabulary/1 file"):
        Vocabulary.load(tmp_path / "other.npz")


def vocabulary_of(path, chunk_rows=100):
    builder = VocabularyBuilder()
    for chunk in iter_chunks(path, chunk_rows=chunk_rows):
        builder.update(chunk)
    return builder


def dense_rows(columns):
    """Raw lines whose 13 dense fields are the given columns (one list per field)."""
    return [line(i % 2, [str(c[i]) for c in columns]) for i in range(len(columns[0]))]


def test_percentile_estimate_brackets_numpy_lower(tmp_path):
    rng = np.random.default_rng(5)
    n = 5000
    columns = [np.maximum(rng.lognormal(2 + f, 1 + f / 4, n), 1).astype(np.int64)
               for f in range(NUM_DENSE)]
    for f, column in enumerate(columns):
        column[rng.random(n) < 0.3] = -f  # zeros and negatives do not count
        column[(f * 97) % n] = 10**18  # every field gets an outlier max
    outliers = vocabulary_of(write(tmp_path / "a.txt", dense_rows(columns)),
                             chunk_rows=700).dense_outliers()
    assert [o.field for o in outliers] == [f"I{f + 1}" for f in range(NUM_DENSE)]
    for f, outlier in enumerate(outliers):
        positive = columns[f][columns[f] > 0]
        true = np.percentile(positive, 99.9, method="lower")
        assert true <= outlier.percentile <= true * 2 ** (1 / 16)
        assert outlier.max == 1e18 and outlier.line == (f * 97) % n + 1


def test_outlier_needs_a_max_far_beyond_the_rest(tmp_path):
    n = 3000
    ones = [1] * n
    columns = [list(ones) for _ in range(NUM_DENSE)]
    columns[0][1700] = 2**63 - 1  # I1: huge, on line 1701
    columns[1][5] = columns[1][2900] = 2000  # I2: 2000x, twice: the first line is named
    columns[2][10] = 900  # I3: below 1000x
    columns[3] = [-5] * (n - 1) + [7]  # I4: one positive value only
    columns[4] = [""] * n  # I5: all missing
    outliers = vocabulary_of(write(tmp_path / "a.txt", dense_rows(columns)),
                             chunk_rows=1000).dense_outliers()
    assert [(o.field, o.line) for o in outliers] == [("I1", 1701), ("I2", 6)]
    assert outliers[0].max == pytest.approx(2.0**63) and outliers[1].max == 2000
    assert outliers[0].percentile == pytest.approx(2 ** (1 / 16))


def test_outliers_count_only_masked_rows(tmp_path):
    columns = [[1] * 2000 for _ in range(NUM_DENSE)]
    columns[0][7] = 10**9
    (chunk,) = iter_chunks(write(tmp_path / "a.txt", dense_rows(columns)), chunk_rows=5000)
    builder = VocabularyBuilder()
    builder.update(chunk, mask=np.arange(2000) != 7)
    assert builder.dense_outliers() == []


def vocab_with(vocab, **changes):
    return dataclasses.replace(vocab, **changes)


def rewrite_npz(path, **changes):
    """Rewrite an .npz file with some arrays replaced (or dropped, for None)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def test_encode_log1p(hand_path):
    vocab = hand_vocabulary(hand_path, 1)
    log_vocab = vocab_with(vocab, dense_transform="log1p")
    (chunk,) = iter_chunks(hand_path)
    ids, vals, _ = encode(chunk, log_vocab)
    plain = encode(chunk, vocab)
    np.testing.assert_array_equal(ids, plain[0])
    np.testing.assert_array_equal(vals[:, NUM_DENSE:], plain[1][:, NUM_DENSE:])
    # I1: 5, -3, missing, 10, 0, 2; I2 missing; I3 negative; I4.. 1.
    np.testing.assert_allclose(vals[:, 0], np.log([6, 1, 1, 11, 1, 3]), rtol=1e-6)
    assert (vals[:, 1:3] == 0).all()
    np.testing.assert_allclose(vals[:, 3:NUM_DENSE], np.log(2), rtol=1e-6)


def test_dense_transform_round_trips_and_old_files_read_as_max(tmp_path, hand_path):
    vocab = vocab_with(hand_vocabulary(hand_path, 1), dense_transform="log1p")
    vocab.save(tmp_path / "log.npz")
    assert Vocabulary.load(tmp_path / "log.npz").dense_transform == "log1p"
    with np.load(tmp_path / "log.npz") as data:  # as written before dense_transform existed
        np.savez(tmp_path / "old.npz", **{k: data[k] for k in data.files if k != "dense_transform"})
    old = Vocabulary.load(tmp_path / "old.npz")
    assert old.dense_transform == "max"
    np.testing.assert_array_equal(old.dense_max, vocab.dense_max)


def test_unknown_dense_transform(tmp_path, hand_path):
    with pytest.raises(ValueError, match="dense_transform must be one of max, log1p, got 'log'"):
        Vocabulary(1, np.ones(13), (), dense_transform="log")
    vocab = hand_vocabulary(hand_path, 1)
    vocab.save(tmp_path / "v.npz")
    rewrite_npz(tmp_path / "v.npz", dense_transform=np.array("sqrt"))
    with pytest.raises(DatasetError, match=r"v\.npz: dense_transform must be one of .* 'sqrt'"):
        Vocabulary.load(tmp_path / "v.npz")


DAMAGE = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:500]), "not a readable .npz archive"),
    "empty": (lambda p: p.write_bytes(b""), "not a readable .npz archive"),
    "npy": (lambda p: np.save(open(p, "wb"), np.zeros(3)), "holds a single array"),
    "no offsets": (lambda p: rewrite_npz(p, offsets=None), "lacks offsets: damaged"),
    "short offsets": (lambda p: rewrite_npz(p, offsets=np.zeros(5, np.int64)),
                      "arrays do not fit together"),
    "float tokens": (lambda p: rewrite_npz(p, tokens=np.zeros(4)), "arrays do not fit together"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_vocabulary_is_named(tmp_path, hand_path, case):
    path = tmp_path / "vocabulary.npz"
    hand_vocabulary(hand_path, 1).save(path)
    damage, reason = DAMAGE[case]
    damage(path)
    with pytest.raises(DatasetError) as caught:
        Vocabulary.load(path)
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
