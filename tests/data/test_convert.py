"""The converter end to end: encoding, bad input, split, atomic output, Bayes metrics."""
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from criteo_rows import HAND_ROWS, line, random_rows, write
from mindrec.data import convert as convert_module
from mindrec.data.convert import DEFAULT_THRESHOLD, convert, in_test_split, truth_path
from mindrec.data.criteo import CriteoFormatError, Vocabulary
from mindrec.data.dataset import load_meta
from mindrec.data.mindrecord import iter_batches
from mindrec.metrics import log_loss, roc_auc


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
    assert meta["pack_size"] == 1000 and meta["schema"] == "mindrec-dataset/2"
    assert meta["dense_transform"] == "max" and meta["warnings"] == []
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
    with pytest.raises(FileExistsError, match=r"out exists and is not empty \(--overwrite / "
                                              r"overwrite=True replaces a dataset made by"):
        convert(src, out, progress=None)
    convert(src, out, overwrite=True, progress=None)  # our own dataset is replaced
    assert (out / "meta.json").is_file() and leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def hand_dataset(tmp_path_factory):
    """A dataset converted from HAND_ROWS (copy it before changing it)."""
    root = tmp_path_factory.mktemp("hand")
    convert(write(root / "a.txt", HAND_ROWS), root / "out", progress=None)
    return root / "out"


@pytest.fixture
def src_and_out(tmp_path, hand_dataset):
    """The HAND_ROWS source and a copy of its dataset at ``tmp_path / "out"``."""
    shutil.copytree(hand_dataset, tmp_path / "out")
    return write(tmp_path / "a.txt", HAND_ROWS), tmp_path / "out"


def dataset_listing(out):
    return sorted((p.name, p.read_bytes()) for p in out.iterdir() if p.is_file())


def _notes(out):
    (out / "notes.txt").write_text("keep")


def _subdir(out):
    (out / "results").mkdir()
    (out / "results" / "run.jsonl").write_text("keep")


def _other_schema(out):
    (out / "meta.json").write_text(json.dumps({"schema": "someone-else/1"}))


def _meta_not_json(out):
    (out / "meta.json").write_text("{not json")


def _no_meta(out):
    (out / "meta.json").unlink()


FOREIGN = {  # what makes a directory not recognisably a dataset, and how the refusal says it
    "notes": (_notes, "it holds notes.txt, which this tool does not write"),
    "subdir": (_subdir, "it holds results/, which this tool does not write"),
    "other_schema": (_other_schema, "meta.json has schema 'someone-else/1', not a mindrec"),
    "meta_not_json": (_meta_not_json, "meta.json: not valid JSON"),
    "no_meta": (_no_meta, "it has no meta.json"),
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_overwrite_replaces_only_our_datasets(tmp_path, src_and_out, case):
    src, out = src_and_out
    make_foreign, reason = FOREIGN[case]
    make_foreign(out)
    before = dataset_listing(out)
    with pytest.raises(FileExistsError) as caught:
        convert(src, out, overwrite=True, progress=None)
    message = str(caught.value)
    assert message.startswith(f"{out}: not replaced: ") and reason in message
    assert "--overwrite / overwrite=True replaces a dataset made by this tool" in message
    assert dataset_listing(out) == before and leftovers(tmp_path) == []
    if case == "subdir":
        assert (out / "results" / "run.jsonl").read_text() == "keep"


def test_overwrite_refuses_a_plain_directory(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=r"home: not replaced: it holds notes\.txt"):
        convert(write(tmp_path / "a.txt", HAND_ROWS), out, overwrite=True, progress=None)
    assert (out / "notes.txt").read_text() == "keep"


def test_overwrite_replaces_a_dataset_of_an_older_schema(src_and_out):
    src, out = src_and_out
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "schema": "mindrec-dataset/1"}))
    convert(src, out, overwrite=True, progress=None)
    assert load_meta(out)["schema"] == "mindrec-dataset/2"


@pytest.mark.parametrize("where", ["out", "inside"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_out_dir_containing_the_cwd_is_refused(tmp_path, src_and_out, monkeypatch, where,
                                               overwrite):
    src, out = src_and_out
    before = dataset_listing(out)
    cwd = out if where == "out" else out / "sub"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    target = "." if where == "out" else ".."
    with pytest.raises(ValueError, match=rf"^{out} is the current directory or contains it: "
                                         r".*give --out \(out_dir\) a path outside it"):
        convert(src, target, overwrite=overwrite, progress=None)
    if where == "inside":
        (out / "sub").rmdir()
    assert dataset_listing(out) == before and leftovers(tmp_path) == []


def test_empty_cwd_is_refused_too(tmp_path, monkeypatch):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with pytest.raises(ValueError, match="is the current directory"):
        convert(write(tmp_path / "a.txt", HAND_ROWS), ".", progress=None)
    assert list(here.iterdir()) == [] and leftovers(tmp_path) == []


def test_out_dir_may_be_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    convert(write(tmp_path / "a.txt", HAND_ROWS), "out/", test_ratio=0.0, progress=None)
    assert load_meta(tmp_path / "out")["rows"]["train"] == 6 and leftovers(tmp_path) == []


def exited_pid():
    """The pid of a child process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid():
    """The pid of a child process that runs until the test ends."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    yield child.pid
    child.stdin.close()
    child.wait()


def test_stale_temp_dirs_of_dead_processes_are_removed(tmp_path, live_pid):
    src = write(tmp_path / "a.txt", HAND_ROWS)
    dead = exited_pid()
    stale = [tmp_path / f".out.tmp-{dead}", tmp_path / f".out.old-{dead}"]
    kept = [tmp_path / f".out.tmp-{live_pid}",  # a conversion still running
            tmp_path / f".other.tmp-{dead}",  # another target's
            tmp_path / f".out.tmp-{dead}x", tmp_path / f"out.tmp-{dead}",  # not our pattern
            tmp_path / f".out.part-{dead}"]
    for directory in stale + kept:
        directory.mkdir()
        (directory / "train.mindrecord").write_bytes(b"partial")
    (tmp_path / f".out.old-{dead + 1}").write_text("a file, not a directory")
    stream = io.StringIO()
    convert(src, tmp_path / "out", test_ratio=0.0, progress=stream)
    assert not any(directory.exists() for directory in stale)
    assert all((directory / "train.mindrecord").read_bytes() == b"partial" for directory in kept)
    assert (tmp_path / f".out.old-{dead + 1}").is_file()
    said = [line for line in stream.getvalue().splitlines() if line.startswith("removed ")]
    assert said == [f"removed {directory}: left by process {dead}, which is no longer running"
                    for directory in sorted(stale)]


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


def test_crlf_and_byte_order_mark_give_the_same_dataset(tmp_path):
    rows = random_rows(500)
    convert(write(tmp_path / "a.txt", rows), tmp_path / "lf", progress=None)
    src = write(tmp_path / "b.txt.gz", rows, newline="\r\n", bom=True)
    convert(src, tmp_path / "crlf", progress=None)
    assert_same_dataset(tmp_path / "lf", tmp_path / "crlf")
    assert load_meta(tmp_path / "crlf")["source"]["sha256"] == hashlib.sha256(
        src.read_bytes()).hexdigest()


def rows_with_huge_i1(n, line_number):
    rows = random_rows(n, seed=1)
    fields = rows[line_number - 1].split("\t")
    fields[1] = str(2**63 - 1)
    rows[line_number - 1] = "\t".join(fields)
    return rows


def test_outlier_max_warns_with_field_and_line(tmp_path):
    src = write(tmp_path / "a.txt", rows_with_huge_i1(2000, 1234))
    stream = io.StringIO()
    meta = convert(src, tmp_path / "out", test_ratio=0.0, progress=stream)
    (warning,) = meta["warnings"]
    assert (warning["kind"], warning["field"], warning["line"]) == ("dense_outlier", "I1", 1234)
    assert warning["max"] == pytest.approx(2.0**63) and 49 <= warning["percentile"] < 52
    assert warning["message"].startswith(f"{src}:1234: field I1: max 9.22337e+18 is ")
    assert "--dense-transform log1p (dense_transform='log1p')" in warning["message"]
    assert f"warning: {warning['message']}\n" in stream.getvalue()
    assert load_meta(tmp_path / "out")["warnings"] == meta["warnings"]
    assert read_split(tmp_path / "out", "train")[1][:, 0].max() == 1.0  # v/max stays the default


def test_log1p_dense_transform(tmp_path):
    rows = rows_with_huge_i1(2000, 1234)
    stream = io.StringIO()
    meta = convert(write(tmp_path / "a.txt", rows), tmp_path / "out", test_ratio=0.0,
                   dense_transform="log1p", progress=stream)
    assert meta["dense_transform"] == "log1p" and meta["warnings"] == []
    assert "warning" not in stream.getvalue()
    vocab = Vocabulary.load(tmp_path / "out" / "vocabulary.npz")
    assert vocab.dense_transform == "log1p"
    raw = np.array([[float(v) if v else np.nan for v in row.split("\t")[1:14]] for row in rows])
    expected = np.log1p(np.where(raw > 0, raw, 0.0))
    np.testing.assert_allclose(read_split(tmp_path / "out", "train")[1][:, :13], expected,
                               rtol=1e-6)


def test_unknown_dense_transform_fails_before_reading(tmp_path):
    with pytest.raises(ValueError, match="dense_transform must be one of max, log1p"):
        convert(tmp_path / "missing.txt", tmp_path / "out", dense_transform="sqrt",
                progress=None)


def test_meta_records_size_and_sha256_of_every_file(tmp_path):
    out = tmp_path / "out"
    meta = convert(write(tmp_path / "a.txt", random_rows(300)), out, progress=None)
    assert sorted(meta["integrity"]) == [
        "test.mindrecord", "test.mindrecord.db", "train.mindrecord", "train.mindrecord.db",
        "vocabulary.npz"]
    for name, record in meta["integrity"].items():
        data = (out / name).read_bytes()
        assert record == {"size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b""), "not a readable .npy file"),
    (lambda p: p.write_bytes(p.read_bytes()[:200]), "not a readable .npy file"),
    (lambda p: np.savez(open(p, "wb"), x=np.zeros(3)), "an .npz archive, expected one .npy"),
])
def test_damaged_truth_file_is_named(tmp_path, damage, reason):
    src = write(tmp_path / "syn.txt", random_rows(50))
    np.save(tmp_path / "syn.truth.npy", np.full(50, 0.5))
    damage(tmp_path / "syn.truth.npy")
    with pytest.raises(ValueError) as caught:
        convert(src, tmp_path / "out", progress=None)
    assert str(caught.value).startswith(f"{tmp_path / 'syn.truth.npy'}: {reason}")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
