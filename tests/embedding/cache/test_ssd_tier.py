"""SSDTier on real RocksDB: round trip, key order, bulk load, snapshot and restore, the
errors that name the path (locked, not writable, not this layout, disk full), and rows
that a process killed mid-write leaves whole."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rocksdict

from mindrec.embedding.cache.errors import TierError
from mindrec.embedding.cache.ssd import SSDTier, encode_keys

WIDTH = 51
ROOT = Path(__file__).resolve().parents[3]


def at(path, text: str) -> str:
    """The pattern of an error naming the SSD tier at ``path``."""
    return re.escape(f"ssd tier at {path}: {text}")


def rows_of(keys, version=0):
    keys = np.asarray(keys)
    return (keys[:, None] % 1000 + version + np.arange(WIDTH)[None, :] / 64).astype(np.float32)


@pytest.fixture
def ssd(tmp_path):
    tier = SSDTier(tmp_path / "table", WIDTH)
    yield tier
    tier.close()


def test_round_trip_overwrite_delete(ssd):
    keys = np.array([0, -7, 2**62, -2**63, 2**63 - 1, 12345], np.int64)
    ssd.put(keys, rows_of(keys), keys // 3)
    ssd.put(keys[:2], rows_of(keys[:2], 1), np.array([5, 6]))
    found, rows, steps = ssd.get(np.concatenate([keys, [99]]))
    assert found.tolist() == [True] * 6 + [False]
    assert np.array_equal(rows[:2], rows_of(keys[:2], 1))
    assert np.array_equal(rows[2:6], rows_of(keys[2:]))
    assert steps[:6].tolist() == [5, 6] + (keys[2:] // 3).tolist()
    assert not rows[6].any() and steps[6] == 0
    ssd.delete(keys[:3])
    assert ssd.get(keys)[0].tolist() == [False] * 3 + [True] * 3
    stats = ssd.stats()
    assert (stats.puts, stats.gets, stats.hits, stats.capacity_rows) == (8, 13, 9, None)


def test_key_bytes_sort_as_the_numbers():
    keys = np.array([5, -1000, 2**63 - 1, -2**63, 0, 3, -3], np.int64)
    assert sorted(encode_keys(keys)) == encode_keys(np.sort(keys))


def test_bulk_load_then_get(ssd):
    rng = np.random.default_rng(4)
    keys = rng.choice(10**9, 5000, replace=False).astype(np.int64) - 5 * 10**8
    ssd.put(keys[:10], rows_of(keys[:10], 7), np.zeros(10))  # older rows: overwritten
    assert ssd.bulk_load(keys, rows_of(keys), keys % 17, chunk_rows=1500) == len(keys)
    found, rows, steps = ssd.get(keys)
    assert found.all() and np.array_equal(rows, rows_of(keys))
    assert np.array_equal(steps, keys % 17)
    assert not (ssd.path / "bulk-load").exists()


def test_bulk_load_of_generated_chunks(ssd):
    def chunks():
        for start in range(10, 2510, 1000):
            keys = np.arange(start, min(2510, start + 1000))
            yield keys, rows_of(keys), np.full(len(keys), 4)
    assert ssd.bulk_load_chunks(chunks()) == 2500
    keys = np.arange(10, 2510)
    found, rows, steps = ssd.get(keys)
    assert found.all() and np.array_equal(rows, rows_of(keys)) and (steps == 4).all()
    with pytest.raises(ValueError, match="distinct and ascending"):
        ssd.bulk_load_chunks([(np.array([3, 2]), rows_of([3, 2]), np.zeros(2))])


def test_snapshot_then_restore_elsewhere(ssd, tmp_path):
    keys = np.arange(100)
    ssd.put(keys, rows_of(keys), keys)
    snapshot = ssd.snapshot(tmp_path / "snap")
    ssd.put(keys, rows_of(keys, 1), keys + 1)  # after the snapshot
    restored = SSDTier.from_snapshot(snapshot, tmp_path / "restored", WIDTH)
    found, rows, steps = restored.get(keys)
    assert found.all() and np.array_equal(rows, rows_of(keys)) and np.array_equal(steps, keys)
    restored.put(keys[:1], rows_of(keys[:1], 2), np.array([9]))  # the snapshot stays as it was
    restored.close()
    again = SSDTier.from_snapshot(snapshot, tmp_path / "again", WIDTH)
    assert np.array_equal(again.get(keys[:1])[1], rows_of(keys[:1]))
    again.close()
    with pytest.raises(TierError, match=at(tmp_path / "again", "a snapshot is restored "
                                                   "into an absent or empty directory")):
        SSDTier.from_snapshot(snapshot, tmp_path / "again", WIDTH)
    with pytest.raises(TierError, match="not a snapshot"):
        SSDTier.from_snapshot(tmp_path, tmp_path / "x", WIDTH)


def test_reopen_keeps_rows_and_refuses_another_width(tmp_path):
    tier = SSDTier(tmp_path / "t", WIDTH)
    tier.put(np.array([3]), rows_of([3]), np.array([1]))
    tier.close()
    with pytest.raises(TierError, match=at(tmp_path / "t", f"holds rows of width {WIDTH}, "
                                                   f"not 48")):
        SSDTier(tmp_path / "t", 48)
    tier = SSDTier(tmp_path / "t", WIDTH)
    assert tier.get(np.array([3]))[0].all()
    tier.close()


def test_a_database_of_another_layout_is_refused(tmp_path):
    plain = rocksdict.Rdict(str(tmp_path / "plain"))
    plain["a"] = 1
    plain.close()
    with pytest.raises(TierError, match=at(tmp_path / "plain", "a RocksDB database not "
                                                   "written by the SSD tier")):
        SSDTier(tmp_path / "plain", WIDTH)
    tier = SSDTier(tmp_path / "future", WIDTH)
    tier.close()
    options = rocksdict.Options(raw_mode=True)
    db = rocksdict.Rdict(str(tmp_path / "future"), options)
    db[b"mindrec.ssd-tier"] = json.dumps({"format": 99, "width": WIDTH}).encode()
    db.close()
    with pytest.raises(TierError, match="format 99 is not this version's format 1"):
        SSDTier(tmp_path / "future", WIDTH)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "notes.txt").write_text("mine")
    with pytest.raises(TierError, match="not empty and is not a RocksDB database"):
        SSDTier(tmp_path / "files", WIDTH)
    assert (tmp_path / "files" / "notes.txt").read_text() == "mine"


def test_a_path_open_twice_is_locked(ssd):
    with pytest.raises(TierError, match=at(ssd.path, "opening: locked")):
        SSDTier(ssd.path, WIDTH)


def test_a_path_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(TierError, match=at(tmp_path / "file" / "db", "cannot create it")):
        SSDTier(tmp_path / "file" / "db", WIDTH)


@contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` for the block (needs the right to mount: root here)."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small file system")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.mark.integration  # runs mount
def test_a_read_only_path_is_not_writable(tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as mount:
        with pytest.raises(TierError, match=at(mount, "not writable")):
            SSDTier(mount, WIDTH)


@pytest.mark.integration  # runs mount
def test_disk_full_names_the_path(tmp_path):
    with tmpfs(tmp_path / "small", "size=3m") as mount:
        tier = SSDTier(mount / "db", WIDTH)
        keys = np.arange(1000)
        with pytest.raises(TierError, match=at(mount / "db", "writing rows: disk full")):
            for version in range(1000):  # 3 MiB hold about 15 batches
                tier.put(keys + 1000 * version, rows_of(keys), keys)
        try:
            tier.close()  # RocksDB may refuse to close cleanly after the error
        except TierError as error:
            assert str(mount / "db") in str(error)


WRITER = """
import sys
import numpy as np
from mindrec.embedding.cache.ssd import SSDTier
path, width, batch_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tier = SSDTier(path, width, batch_rows=batch_rows)
keys = np.arange(2000)
version = 0
while True:
    version += 1
    tier.put(keys, np.full((len(keys), width), version, np.float32), np.full(len(keys), version))
    print(version, flush=True)
"""


@pytest.mark.integration
@pytest.mark.parametrize("batch_rows", [2000, 300])
def test_a_killed_writer_leaves_no_torn_row(tmp_path, batch_rows):
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "db"), str(WIDTH),
                              str(batch_rows)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        committed = 0
        while committed < 20:  # each line: one whole version written
            line = child.stdout.readline()
            assert line, f"the writer exited early with status {child.wait()}"
            committed = int(line)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    for line in child.stdout:  # versions written between our read and the kill
        committed = int(line)
    tier = SSDTier(tmp_path / "db", WIDTH)
    found, rows, steps = tier.get(np.arange(2000))
    tier.close()
    assert found.all()
    assert (rows == steps[:, None]).all(), "a row mixes two versions"
    assert committed <= steps.min() and steps.max() <= committed + 1
    batches = steps.reshape(-1, batch_rows) if 2000 % batch_rows == 0 else [
        steps[i:i + batch_rows] for i in range(0, 2000, batch_rows)]
    assert all(len(set(batch.tolist())) == 1 for batch in batches), "a batch was torn"


HOLDER = """
import sys, time
from mindrec.embedding.cache.ssd import SSDTier
tier = SSDTier(sys.argv[1], int(sys.argv[2]))
print("open", flush=True)
time.sleep(600)
"""


@pytest.mark.integration
def test_a_path_held_by_another_process_is_locked(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "db"), str(WIDTH)],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout.readline() == "open\n"
        with pytest.raises(TierError, match=at(tmp_path / "db", "opening: locked")):
            SSDTier(tmp_path / "db", WIDTH)
    finally:
        child.kill()
        child.wait()
    SSDTier(tmp_path / "db", WIDTH).close()  # free once its holder is gone
