"""The converter end to end: encoding, bad input, split, atomic output, Bayes metrics."""
import gzip
import hashlib
import io
import json

import numpy as np
import pytest

from criteo_rows import HAND_ROWS, line
from mindrec.data import convert as convert_module
from mindrec.data.convert import DEFAULT_THRESHOLD, convert, in_test_split, truth_path
from mindrec.data.criteo import NUM_CATEGORICAL, NUM_DENSE, CriteoFormatError, Vocabulary
from mindrec.data.dataset import load_meta
from mindrec.data.mindrecord import iter_batches
from mindrec.metrics import log_loss, roc_auc


def random_rows(n, seed=0):
    """``n`` raw lines with small random vocabularies and some missing values."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    ints = rng.integers(-5, 50, (n, NUM_DENSE)).astype(str)
    ints[rng.random(ints.shape) < 0.2] = ""
    cats = np.char.mod("%x", rng.integers(0, 12, (n, NUM_CATEGORICAL)) * 4099)
    cats[rng.random(cats.shape) < 0.1] = ""
    return [line(labels[i], ints[i], cats[i]) for i in range(n)]


def write(path, rows, *, final_newline=True):
    text = "".join(rows)
    if not final_newline:
        text = text.rstrip("\n")
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def read_split(out, split):
    """(ids, vals, labels) of a converted split, in file order."""
    batches = list(iter_batches(out / f"{split}.mindrecord", 4096))
    return tuple(np.concatenate(column) for column in zip(*batches)) if batches else None


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_hand_file(tmp_path):
    src = write(tmp_path / "hand.txt", HAND_ROWS)
    out = tmp_path / "out"
    meta = convert(src, out, threshold=1, test_ratio=0.0, progress=None)
    assert meta == load_meta(out)
    assert meta["rows"] == {"train": 6, "test": 0, "bad": 0}
    assert meta["vocab_size"] == 43  # 13 dense + C1 (3) + C2 (2) + C3 (2) + 23 OOV-only
    assert meta["field_sizes"] == [1] * 13 + [3, 2, 2] + [1] * 23
    assert meta["positive_rate"] == {"train": 0.5, "test": None}
    assert meta["pack_size"] == 1000 and meta["schema"] == "mindrec-dataset/1"
    assert "bayes_auc" not in meta
    assert meta["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["source"]["size_bytes"] == src.stat().st_size
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "test.mindrecord", "test.mindrecord.db", "train.mindrecord",
        "train.mindrecord.db", "vocabulary.npz"]
    assert leftovers(tmp_path) == []

    ids, vals, labels = read_split(out, "train")
    tail = list(range(20, 43))  # C4..C26 are missing: their OOV ids
    assert ids[0].tolist() == list(range(13)) + [15, 17, 19] + tail  # b=13+2, ff=16+1, abcdef01=18+1
    assert ids[5].tolist() == list(range(13)) + [13, 17, 18] + tail  # c rare -> OOV 13; C3 missing
    # I1 = -3 / max 10; I2 missing -> 0; I3 = -2 / 1.0 (all I3 negative); then 1.0s.
    np.testing.assert_allclose(vals[1], [-0.3, 0.0, -2.0] + [1.0] * 36, rtol=1e-6)
    assert labels[:, 0].tolist() == [1, 0, 0, 1, 0, 1]
    assert read_split(out, "test") is None
    vocab = Vocabulary.load(out / "vocabulary.npz")
    assert vocab.size == 43 and vocab.threshold == 1


BAD_CASES = {
    "columns": ("\t".join(line(0).split("\t")[:-1]) + "\n", "expected 40 tab-separated columns, found 39"),
    "integer": (line(0, ["1", "2", "abc"]), "field I3: 'abc' is not an integer"),
    "hex": (line(0, [], ["1", "2", "3", "4", "zz12"]), "field C5: 'zz12' is not a hex token"),
    "label": (line(7), "label: '7' is not 0 or 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_row_stop(tmp_path, case):
    bad_line, reason = BAD_CASES[case]
    src = write(tmp_path / "bad.txt", HAND_ROWS[:2] + [bad_line] + HAND_ROWS[2:])
    with pytest.raises(CriteoFormatError) as caught:
        convert(src, tmp_path / "out", progress=None)
    assert (caught.value.path, caught.value.line) == (str(src), 3)
    assert str(caught.value) == f"{src}:3: {reason}"
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_row_skip(tmp_path, case):
    bad_line, _ = BAD_CASES[case]
    src = write(tmp_path / "bad.txt", HAND_ROWS[:2] + [bad_line] + HAND_ROWS[2:] + [bad_line])
    meta = convert(src, tmp_path / "out", threshold=1, test_ratio=0.0, on_bad_row="skip",
                   progress=None)
    assert meta["rows"] == {"train": 6, "test": 0, "bad": 2}
    assert meta["bad_lines"] == [3, 8]
    clean = convert(write(tmp_path / "clean.txt", HAND_ROWS), tmp_path / "clean", threshold=1,
                    test_ratio=0.0, progress=None)
    assert meta["field_sizes"] == clean["field_sizes"]
    for a, b in zip(read_split(tmp_path / "out", "train"), read_split(tmp_path / "clean", "train")):
        np.testing.assert_array_equal(a, b)


def test_bad_lines_keeps_first_20(tmp_path):
    src = write(tmp_path / "bad.txt", HAND_ROWS + [line(5)] * 30)
    meta = convert(src, tmp_path / "out", on_bad_row="skip", test_ratio=0.0, progress=None)
    assert meta["rows"]["bad"] == 30
    assert meta["bad_lines"] == list(range(7, 27))


def test_truncated_final_line(tmp_path):
    src = write(tmp_path / "cut.txt", HAND_ROWS + [HAND_ROWS[0][:25]], final_newline=False)
    with pytest.raises(CriteoFormatError, match=r"cut\.txt:7: expected 40 tab-separated columns"):
        convert(src, tmp_path / "out", progress=None)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    meta = convert(src, tmp_path / "out", on_bad_row="skip", test_ratio=0.0, progress=None)
    assert meta["rows"] == {"train": 6, "test": 0, "bad": 1} and meta["bad_lines"] == [7]


def test_final_line_without_newline_is_fine(tmp_path):
    src = write(tmp_path / "a.txt", HAND_ROWS, final_newline=False)
    meta = convert(src, tmp_path / "out", test_ratio=0.0, progress=None)
    assert meta["rows"] == {"train": 6, "test": 0, "bad": 0}


@pytest.mark.parametrize("on_bad_row", ["stop", "skip"])
def test_empty_file(tmp_path, on_bad_row):
    src = write(tmp_path / "empty.txt", [])
    with pytest.raises(CriteoFormatError, match=r"empty\.txt: file is empty"):
        convert(src, tmp_path / "out", on_bad_row=on_bad_row, progress=None)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_only_bad_rows(tmp_path):
    src = write(tmp_path / "junk.txt", ["junk\n"] * 3)
    with pytest.raises(CriteoFormatError, match=r"junk\.txt: no valid rows \(3 bad\)"):
        convert(src, tmp_path / "out", on_bad_row="skip", progress=None)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("on_bad_row", ["stop", "skip"])
def test_truncated_gzip(tmp_path, on_bad_row):
    data = gzip.compress("".join(random_rows(300)).encode())
    src = tmp_path / "cut.txt.gz"
    src.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CriteoFormatError, match=r"cut\.txt\.gz: truncated or corrupt gzip"):
        convert(src, tmp_path / "out", on_bad_row=on_bad_row, progress=None)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def assert_same_dataset(a, b):
    meta_a, meta_b = load_meta(a), load_meta(b)
    meta_a.pop("source"), meta_b.pop("source")
    assert meta_a == meta_b
    for split in ("train", "test"):
        for x, y in zip(read_split(a, split), read_split(b, split)):
            np.testing.assert_array_equal(x, y)


def test_gzip_gives_the_same_dataset(tmp_path):
    rows = random_rows(500)
    convert(write(tmp_path / "a.txt", rows), tmp_path / "plain", progress=None)
    convert(write(tmp_path / "a.txt.gz", rows), tmp_path / "packed", progress=None)
    assert_same_dataset(tmp_path / "plain", tmp_path / "packed")
    assert load_meta(tmp_path / "packed")["source"]["sha256"] == hashlib.sha256(
        (tmp_path / "a.txt.gz").read_bytes()).hexdigest()


def test_split_is_deterministic_and_chunk_independent(tmp_path):
    src = write(tmp_path / "a.txt", random_rows(2500))
    convert(src, tmp_path / "s0", seed=0, progress=None)
    convert(src, tmp_path / "s0again", seed=0, chunk_rows=7, progress=None)
    convert(src, tmp_path / "s1", seed=1, progress=None)
    assert_same_dataset(tmp_path / "s0", tmp_path / "s0again")
    test0 = read_split(tmp_path / "s0", "test")[0]
    test1 = read_split(tmp_path / "s1", "test")[0]
    assert test0.shape != test1.shape or not np.array_equal(test0, test1)
    rows = load_meta(tmp_path / "s0")["rows"]
    assert rows["train"] + rows["test"] == 2500
    assert rows["test"] == int(in_test_split(np.arange(1, 2501), 0, 0.1).sum())


def test_split_hash_ratio_and_seeds():
    lines = np.arange(1, 200_001)
    for seed in (0, 1, 12345):
        assert abs(in_test_split(lines, seed, 0.1).mean() - 0.1) < 0.005
    assert (in_test_split(lines, 0, 0.1) != in_test_split(lines, 1, 0.1)).mean() > 0.15
    assert not in_test_split(lines, 0, 0.0).any()
    np.testing.assert_array_equal(in_test_split(lines[5:9], 3, 0.5), in_test_split(lines, 3, 0.5)[5:9])


def test_vocabulary_counts_train_rows_only(tmp_path):
    rows = random_rows(600)
    is_test = in_test_split(np.arange(1, 601), 0, 0.1)
    for i in np.flatnonzero(is_test):  # a frequent token and a huge I1 only in test rows
        rows[i] = line(1, ["1000000"], ["abcdef"])
    meta = convert(write(tmp_path / "a.txt", rows), tmp_path / "out", progress=None)
    vocab = Vocabulary.load(tmp_path / "out" / "vocabulary.npz")
    assert meta["rows"]["test"] == is_test.sum() > DEFAULT_THRESHOLD
    assert 0xABCDEF not in vocab.tokens[0].tolist()
    assert vocab.dense_max[0] < 50


def test_existing_out_dir(tmp_path):
    src = write(tmp_path / "a.txt", HAND_ROWS)
    out = tmp_path / "out"
    out.mkdir()
    convert(src, out, progress=None)  # an empty directory may be used
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="out exists and is not empty"):
        convert(src, out, progress=None)
    assert (out / "mine.txt").read_text() == "keep"
    convert(src, out, overwrite=True, progress=None)
    assert not (out / "mine.txt").exists() and (out / "meta.json").is_file()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_crash_in_pass_2_leaves_nothing(tmp_path, monkeypatch, existing):
    src = write(tmp_path / "a.txt", random_rows(300))
    out = tmp_path / "out"
    if existing:
        convert(src, out, progress=None)
        before = sorted(p.name for p in out.iterdir())

    def explode(self, *args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(convert_module.PackedWriter, "add", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert(src, out, overwrite=True, progress=None)
    assert leftovers(tmp_path) == []
    if existing:  # the old dataset survives untouched
        assert sorted(p.name for p in out.iterdir()) == before
        load_meta(out)
    else:
        assert not out.exists()


def test_truth_path():
    assert truth_path("d/train.txt").as_posix() == "d/train.truth.npy"
    assert truth_path("x.txt.gz").as_posix() == "x.truth.npy"
    assert truth_path("d/raw").as_posix() == "d/raw.truth.npy"


def test_bayes_metrics_from_truth_file(tmp_path):
    n = 3000
    rows = random_rows(n, seed=3)
    truth = np.random.default_rng(4).random(n)
    src = write(tmp_path / "syn.txt.gz", rows)
    np.save(tmp_path / "syn.truth.npy", truth)
    meta = convert(src, tmp_path / "out", seed=5, progress=None)
    test_lines = np.flatnonzero(in_test_split(np.arange(1, n + 1), 5, 0.1)) + 1
    labels = np.array([int(rows[i - 1][0]) for i in test_lines], dtype=np.float64)
    np.testing.assert_array_equal(read_split(tmp_path / "out", "test")[2][:, 0], labels)
    assert meta["bayes_auc"] == pytest.approx(roc_auc(labels, truth[test_lines - 1]), abs=1e-12)
    assert meta["bayes_logloss"] == pytest.approx(log_loss(labels, truth[test_lines - 1]), abs=1e-12)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["bayes_auc"] == meta["bayes_auc"]


def test_truth_file_of_wrong_length(tmp_path):
    src = write(tmp_path / "syn.txt", random_rows(50))
    np.save(tmp_path / "syn.truth.npy", np.full(49, 0.5))
    with pytest.raises(ValueError, match=r"syn\.truth\.npy: holds 49 probabilities but .*syn\.txt has 50 lines"):
        convert(src, tmp_path / "out", progress=None)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_progress_lines(tmp_path):
    stream = io.StringIO()
    convert(write(tmp_path / "a.txt", random_rows(100)), tmp_path / "out", progress=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("pass 1/2: 100 rows (") and lines[0].endswith(" rows/s)")
    assert lines[-1].startswith("pass 2/2: 100 rows (")


def test_load_meta_of_other_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a converted dataset \\(no meta.json\\)"):
        load_meta(tmp_path)


def test_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="no input file at .*nope.txt"):
        convert(tmp_path / "nope.txt", tmp_path / "out", progress=None)
