"""Model versions: what a publish writes, how a reader refuses damaged files, numbering
over writer restarts, pruning, and which versions bring a model up to date."""
import dataclasses
import json
import os

import numpy as np
import pytest
from online_model import CAPACITY, Trainer, tiny_run

from mindrec.stream import versions
from mindrec.stream.versions import (DELTA, FULL, MANIFEST, VersionEntry, VersionError,
                                     VersionReader, VersionWriter, chain, network_parts)


@pytest.fixture(scope="module")
def lines(tiny_raw):
    return (tiny_raw / "train.txt").read_bytes().splitlines(keepends=True)


def file_names(directory):
    return sorted(p.name for p in directory.iterdir())


def test_a_writer_publishes_full_then_deltas_listed_in_a_manifest(lines, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(2)
    writer = VersionWriter(tmp_path, trainer.run, full_every=20)
    first = writer.publish(trainer.network, {"step": 2, "newest_event_ms": 17})
    assert first.rows == len(trainer.network.hash_index)  # every row
    second = writer.publish(trainer.train(1).network, {"step": 3})
    assert (first.version, first.kind, second.version, second.kind) == (1, FULL, 2, DELTA)
    assert file_names(tmp_path) == [MANIFEST, "v00000001.full.npz", "v00000002.delta.npz"]
    assert 0 < second.rows < len(trainer.network.hash_index)  # the rows of one batch
    assert second.bytes == second.path.stat().st_size

    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["schema"] == "mindrec-versions/1" and manifest["capacity"] == CAPACITY
    assert manifest["run"] == trainer.run.to_dict()
    entries = VersionReader(tmp_path).versions()
    assert [(e.version, e.kind, e.base) for e in entries] == [(1, FULL, None), (2, DELTA, 1)]
    assert entries[0].info == {"step": 2, "newest_event_ms": 17}

    loaded = VersionReader(tmp_path).load(2)
    index, tables, dense = network_parts(trainer.network)
    assert len(loaded.delta.keys) == second.rows and set(loaded.delta.values) == set(tables)
    for name, table in tables.items():
        np.testing.assert_array_equal(loaded.delta.values[name], table.get(loaded.delta.keys))
    assert set(loaded.dense) == set(dense)
    for name, param in dense.items():
        np.testing.assert_array_equal(loaded.dense[name], param.asnumpy())


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, reason", [
    (_truncate, "[0-9,]+ bytes where the manifest says [0-9,]+: truncated"),
    (_flip, "sha256 .* damaged"),
    (lambda path: path.write_bytes((path.parent / "v00000001.full.npz").read_bytes()),
     ".*: truncated or replaced"),
    (lambda path: path.unlink(), "no such file"),
], ids=["truncated", "bytes-flipped", "another-version", "deleted"])
def test_a_damaged_version_file_is_refused_naming_file_and_version(damage, reason, lines,
                                                                    tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run)
    writer.publish(trainer.network, {})
    damage(writer.publish(trainer.train(1).network, {}).path)
    with pytest.raises(VersionError, match=f"v00000002.delta.npz: version 2: {reason}"):
        VersionReader(tmp_path).load(2)
    VersionReader(tmp_path).load(1)  # the others still load


def test_a_reopened_writer_continues_the_numbering_with_a_full_version(lines, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run)
    for _ in range(3):
        writer.publish(trainer.train(1).network, {})
    (tmp_path / ".v00000004.delta.npz.tmp-999").write_bytes(b"half a file")
    restarted = VersionWriter(tmp_path, trainer.run)  # a trainer process started again
    assert restarted.last_version == 3 and ".v00000004.delta.npz.tmp-999" not in file_names(
        tmp_path)
    published = restarted.publish(trainer.train(1).network, {})
    assert (published.version, published.kind) == (4, FULL)
    assert restarted.publish(trainer.train(1).network, {}).kind == DELTA


def test_a_writer_refuses_a_directory_of_another_model(lines, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    VersionWriter(tmp_path, trainer.run).publish(trainer.network, {})
    with pytest.raises(ValueError, match="of another model"):
        VersionWriter(tmp_path, tiny_run("dcn"))


def test_old_versions_are_pruned_only_once_a_later_full_one_is_durable(lines, tmp_path,
                                                                       monkeypatch):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run, full_every=2)
    (tmp_path / "notes.txt").write_text("not ours")
    for _ in range(4):  # 1 full, 2 delta, 3 full (keeps 1: the full before it), 4 delta
        writer.publish(trainer.train(1).network, {})
    assert [e.kind for e in VersionReader(tmp_path).versions()] == [FULL, DELTA, FULL, DELTA]

    durable = versions.write_durably

    def manifest_write_fails(path, data):
        if path.name == MANIFEST:
            raise OSError("disk full")
        durable(path, data)

    monkeypatch.setattr(versions, "write_durably", manifest_write_fails)
    with pytest.raises(OSError, match="disk full"):
        writer.publish(trainer.train(1).network, {})  # version 5, full, never listed
    assert [e.version for e in VersionReader(tmp_path).versions()] == [1, 2, 3, 4]
    assert {"v00000001.full.npz", "v00000002.delta.npz"} <= set(file_names(tmp_path))

    monkeypatch.setattr(versions, "write_durably", durable)
    retried = writer.publish(trainer.train(1).network, {})
    assert (retried.version, retried.kind) == (5, FULL)  # its rows were taken by the failure
    assert [e.version for e in VersionReader(tmp_path).versions()] == [3, 4, 5]
    assert file_names(tmp_path) == [MANIFEST, "notes.txt", "v00000003.full.npz",
                                    "v00000004.delta.npz", "v00000005.full.npz"]


def test_a_damaged_manifest_is_an_error_naming_it(tmp_path):
    (tmp_path / MANIFEST).write_text('{"schema": "mindrec-versions/1", "run": ')
    with pytest.raises(VersionError, match=f"{MANIFEST}: not JSON"):
        VersionReader(tmp_path).versions()
    (tmp_path / MANIFEST).write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(VersionError, match="not a mindrec-versions/1 manifest"):
        VersionReader(tmp_path).versions()
    assert VersionReader(tmp_path / "absent").manifest() is None


def store(*kinds, start=1):
    """Manifest entries of consecutive versions: "F" full, "D" delta."""
    return [VersionEntry(version=v, kind=FULL if k == "F" else DELTA,
                         base=None if k == "F" else v - 1, file=f"v{v:08d}.npz", sha256="",
                         bytes=0, rows=0, removed=0, info={})
            for v, k in enumerate(kinds, start)]


@pytest.mark.parametrize("entries, held, expected", [
    (store("F", "D", "D"), None, [1, 2, 3]),  # from scratch: the full one and its deltas
    (store("F", "D", "D"), 1, [2, 3]),  # the deltas after the version held
    (store("F", "D", "D"), 3, []),  # up to date: nothing to apply again
    (store("F", "D", "F", "D"), 1, [3, 4]),  # a newer full version: start from it
    (store("F", "D", "D", "F", "D"), None, [4, 5]),
    (store("F", "D", "D")[:1] + store("F", "D", "D")[2:], 1, []),  # a gap, no newer full
    (store("F", "D", "D")[:1] + store("F", "D", "D")[2:], None, [1]),
    (store("D", "D", "F", "D", start=8), 5, [10, 11]),  # pruned past the version held
    (store("F", "D", start=1), 7, [1, 2]),  # the store started again from 1
])
def test_chain_brings_a_model_to_the_newest_reachable_version(entries, held, expected):
    assert [e.version for e in chain(entries, held)] == expected


def test_chain_restarts_from_the_newest_full_when_deltas_do_not_follow():
    broken = store("F", "D", "D", "D")
    broken[2] = dataclasses.replace(broken[2], base=1)  # 3 claims to follow 1
    assert [e.version for e in chain(broken, 2)] == []  # only the full 1 and 2 reachable
    assert [e.version for e in chain(broken, None)] == [1, 2]


def test_fsync_makes_files_durable_before_the_rename(tmp_path, monkeypatch):
    synced, renamed = [], []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: renamed.append(len(synced)) or replace(a, b))
    versions.write_durably(tmp_path / "x.npz", b"data")
    assert renamed == [1] and len(synced) == 2  # the file, then its directory
    assert (tmp_path / "x.npz").read_bytes() == b"data" and file_names(tmp_path) == ["x.npz"]
