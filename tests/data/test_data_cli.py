"""`mindrec-bench data convert|verify` from the command line: options, refusals, checks."""
import json
import shutil

import pytest

from bench.cli import main
from criteo_rows import random_rows, write


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A raw file with one huge I1 value (line 1234) and its dataset (copy before changing)."""
    root = tmp_path_factory.mktemp("cli")
    rows = random_rows(2000, seed=2)
    fields = rows[1233].split("\t")
    fields[1] = str(2**63 - 1)
    rows[1233] = "\t".join(fields)
    src = write(root / "raw.txt", rows, newline="\r\n", bom=True)
    assert main(["data", "convert", "--input", str(src), "--out", str(root / "out"),
                 "--test-ratio", "0"]) == 0
    return src, root / "out"


@pytest.fixture
def data(dataset, tmp_path):
    return shutil.copytree(dataset[1], tmp_path / "data")


def test_convert_warns_about_an_outlier_max(dataset):
    src, out = dataset
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rows"] == {"train": 2000, "test": 0, "bad": 0}  # CRLF and BOM read fine
    (warning,) = meta["warnings"]
    assert warning["message"].startswith(f"{src}:1234: field I1: max 9.22337e+18")


def test_convert_reports_warnings(tmp_path, dataset, capsys):
    src, _ = dataset
    assert main(["data", "convert", "--input", str(src), "--out", str(tmp_path / "o"),
                 "--test-ratio", "0"]) == 0
    captured = capsys.readouterr()
    assert f"warning: {src}:1234: field I1: max 9.22337e+18" in captured.err
    assert "; 1 warning(s), printed above and kept in meta.json" in captured.out


def test_convert_with_log1p(tmp_path, dataset, capsys):
    src, _ = dataset
    assert main(["data", "convert", "--input", str(src), "--out", str(tmp_path / "o"),
                 "--dense-transform", "log1p"]) == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["dense_transform"] == "log1p" and meta["warnings"] == []
    assert "warning" not in capsys.readouterr().err


def test_verify_prints_what_it_checked(data, capsys):
    assert main(["data", "verify", str(data)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{data / 'meta.json'}: schema mindrec-dataset/2"
    assert [line.split(":")[0] for line in out[1:6]] == [
        str(data / name) for name in ("test.mindrecord", "test.mindrecord.db",
                                      "train.mindrecord", "train.mindrecord.db",
                                      "vocabulary.npz")]
    assert all(line.endswith(": as recorded") and " bytes, sha256 " in line for line in out[1:6])
    assert out[6] == "rows: 2,000 train + 0 test, as recorded"
    assert out[7] == f"{data}: OK"


def test_verify_names_the_damaged_file(data, capsys):
    with open(data / "vocabulary.npz", "r+b") as f:
        f.truncate(100)
    assert main(["data", "verify", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mindrec-bench: error: {data / 'vocabulary.npz'}: 100 bytes, "
                          "meta.json records ")
    assert err.endswith(": truncated or replaced\n")


def test_verify_of_a_directory_without_meta(tmp_path, capsys):
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "not a converted dataset (no meta.json)" in capsys.readouterr().err


def test_overwrite_of_the_current_directory_is_refused(data, dataset, monkeypatch, capsys):
    monkeypatch.chdir(data)
    before = sorted(p.name for p in data.iterdir())
    assert main(["data", "convert", "--input", str(dataset[0]), "--out", ".",
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mindrec-bench: error: {data} is the current directory or contains it")
    assert "--out" in err and "Traceback" not in err
    assert sorted(p.name for p in data.iterdir()) == before


def test_overwrite_refusal_names_the_flag_and_the_files(data, dataset, capsys):
    (data / "notes.txt").write_text("keep")
    assert main(["data", "convert", "--input", str(dataset[0]), "--out", str(data),
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"{data}: not replaced: it holds notes.txt" in err
    assert "--overwrite / overwrite=True replaces a dataset made by this tool" in err
    assert (data / "notes.txt").read_text() == "keep"
