"""A converted dataset's meta.json and its checks: verify, open_dataset and their callers."""
import json
import shutil

import numpy as np
import pytest

from criteo_rows import random_rows, write
from mindrec.config import build_run_config
from mindrec.data.convert import convert
from mindrec.data.dataset import (DATA_FILES, DatasetError, load_meta, open_dataset,
                                  verify)
from mindrec.data.mindrecord import iter_batches
from mindrec.train import trainer


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A small dataset (copy it before changing it)."""
    root = tmp_path_factory.mktemp("ds")
    convert(write(root / "a.txt", random_rows(2500)), root / "out", progress=None)
    return root / "out"


@pytest.fixture
def data(converted, tmp_path):
    """A copy of the small dataset that a test may damage."""
    return shutil.copytree(converted, tmp_path / "data")


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def edit_meta(data, **changes):
    meta = json.loads((data / "meta.json").read_text())
    meta.update(changes)
    (data / "meta.json").write_text(json.dumps(meta))


def test_a_sound_dataset_verifies(data):
    meta = verify(data, full=True)
    assert meta == load_meta(data) == open_dataset(data)
    assert sum(len(b[2]) for b in iter_batches(data / "train.mindrecord", 1000)) == \
        meta["rows"]["train"]
    verify(data, full=True)  # reading changed no byte


@pytest.mark.parametrize("name", DATA_FILES)
@pytest.mark.parametrize("full", [False, True])
def test_truncated_file_is_named(data, name, full):
    size = (data / name).stat().st_size
    truncate(data / name, size // 2)
    with pytest.raises(DatasetError) as caught:
        verify(data, full=full)
    assert str(caught.value) == (f"{data / name}: {size // 2:,} bytes, meta.json records "
                                 f"{size:,}: truncated or replaced")


def test_grown_file_is_named(data):
    size = (data / "test.mindrecord").stat().st_size
    with open(data / "test.mindrecord", "ab") as f:
        f.write(b"x")
    with pytest.raises(DatasetError, match=rf"test\.mindrecord: {size + 1:,} bytes, meta\.json "
                                           rf"records {size:,}: grown or replaced"):
        verify(data, full=False)


def test_missing_file_is_named(data):
    (data / "train.mindrecord.db").unlink()
    with pytest.raises(DatasetError, match=r"train\.mindrecord\.db: missing \(meta\.json lists it\)"):
        verify(data, full=False)


def test_damaged_bytes_need_the_full_check(data):
    path = data / "train.mindrecord"
    recorded = load_meta(data)["integrity"]["train.mindrecord"]["sha256"]
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    verify(data, full=False)  # the quick check sees sizes only
    with pytest.raises(DatasetError, match=rf"train\.mindrecord: sha256 [0-9a-f]{{64}}, meta\.json "
                                           rf"records {recorded}: damaged or replaced"):
        verify(data, full=True)


def test_row_counts_are_checked(data):
    rows = load_meta(data)["rows"]
    edit_meta(data, rows={**rows, "test": rows["test"] + 1})
    verify(data, full=False)
    with pytest.raises(DatasetError, match=rf"test\.mindrecord: holds {rows['test']:,} rows, "
                                           rf"meta\.json records {rows['test'] + 1}"):
        verify(data, full=True)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "meta.json: not valid JSON (Expecting property name"),
    ("[1, 2]", "meta.json: holds a JSON list, not an object: damaged"),
    (b"\xff\xfe", "meta.json: not valid JSON"),
])
def test_damaged_meta_is_named(data, text, reason):
    path = data / "meta.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DatasetError, match=f"^{path}: ") as caught:
        load_meta(data)
    assert reason in str(caught.value)


@pytest.mark.parametrize("schema, reason", [
    ("mindrec-dataset/1", "this dataset (mindrec-dataset/1) was made by an older version of "
                          "mindrec-bench, which reads mindrec-dataset/2: convert the raw data "
                          "again"),
    ("mindrec-dataset/3", "was made by a newer version of mindrec-bench"),
    ("other/2", "schema 'other/2' is not a mindrec dataset's"),
    (None, "schema None is not a mindrec dataset's"),
])
def test_other_schemas(data, schema, reason):
    edit_meta(data, schema=schema)
    with pytest.raises(DatasetError, match=f"^{data / 'meta.json'}: ") as caught:
        verify(data, full=False)
    assert reason in str(caught.value)


@pytest.mark.parametrize("integrity, reason", [
    (None, "no 'integrity' object"),
    ({}, "integrity['test.mindrecord'] should be {'size_bytes': int, 'sha256': str}, got None"),
])
def test_meta_without_file_records(data, integrity, reason):
    edit_meta(data, integrity=integrity)
    with pytest.raises(DatasetError, match="meta.json: ") as caught:
        verify(data, full=False)
    assert reason in str(caught.value)


def test_trainer_checks_the_files_before_reading(data):
    truncate(data / "train.mindrecord", 1000)
    run = build_run_config("wide_deep", "cpu-small")
    with pytest.raises(DatasetError, match=r"train\.mindrecord: 1,000 bytes, meta\.json records"):
        trainer.table_rows(run, data)
    with pytest.raises(DatasetError, match=r"train\.mindrecord: 1,000 bytes, meta\.json records"):
        next(trainer.batches(data, "test", 100))


def test_trainer_reads_a_sound_dataset(data):
    ids, vals, labels = next(trainer.batches(data, "train", 100))
    assert ids.shape == (100, 39) and vals.shape == (100, 39) and labels.shape == (100, 1)
    run = build_run_config("wide_deep", "cpu-small")
    assert trainer.table_rows(run, data) == load_meta(data)["vocab_size"]
    assert np.isfinite(vals).all()


def test_cache_key_follows_the_dataset_schema(monkeypatch):
    from bench import datasets
    data = datasets.DataSpec(rows=1000, vocab=500)
    key = datasets.dataset_key(data)
    monkeypatch.setattr(datasets, "META_SCHEMA", "mindrec-dataset/99")
    assert datasets.dataset_key(data) != key
