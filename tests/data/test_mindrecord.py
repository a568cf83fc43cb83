"""PackedWriter and iter_batches: packing, re-batching, seeded shuffling, damaged files."""
import numpy as np
import pytest

from mindrec.data.dataset import DatasetError
from mindrec.data.mindrecord import PACK_SIZE, PackedWriter, count_rows, iter_batches

ROWS = 2345  # two full records and a partial one


def rows(n, offset=0):
    """Rows whose label is their index, so order and membership are easy to check."""
    index = np.arange(offset, offset + n)
    ids = (index[:, None] * 39 + np.arange(39)).astype(np.int32)
    vals = (ids % 97).astype(np.float32) / 7
    return ids, vals, index.astype(np.float32)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    path = tmp_path_factory.mktemp("mr") / "data.mindrecord"
    with PackedWriter(path) as writer:
        for start in range(0, ROWS, 700):  # adds that do not line up with records
            writer.add(*rows(min(700, ROWS - start), start))
        assert writer.rows == ROWS
    return path


def read(path, batch_size, **kwargs):
    batches = list(iter_batches(path, batch_size, **kwargs))
    return batches, [np.concatenate(column) for column in zip(*batches)]


def test_writer_makes_data_and_index_files(packed):
    assert packed.is_file() and packed.with_name(packed.name + ".db").is_file()
    assert count_rows(packed) == ROWS


@pytest.mark.parametrize("batch_size", [1, 7, 999, 1000, 1001, 5000])
def test_round_trip_in_order(packed, batch_size):
    batches, (ids, vals, labels) = read(packed, batch_size)
    assert [len(b[2]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches[-1][2]) == ROWS - batch_size * (len(batches) - 1)
    expected = rows(ROWS)
    assert ids.dtype == np.int32 and ids.shape == (ROWS, 39)
    assert vals.dtype == np.float32 and vals.shape == (ROWS, 39)
    assert labels.dtype == np.float32 and labels.shape == (ROWS, 1)
    np.testing.assert_array_equal(ids, expected[0])
    np.testing.assert_array_equal(vals, expected[1])
    np.testing.assert_array_equal(labels[:, 0], expected[2])


def test_drop_remainder(packed):
    batches, (_, _, labels) = read(packed, 1000, drop_remainder=True)
    assert [len(b[2]) for b in batches] == [1000, 1000]
    np.testing.assert_array_equal(labels[:, 0], np.arange(2000))


def test_shuffle_is_a_seeded_permutation(packed):
    _, (ids, _, labels) = read(packed, 300, shuffle=True, seed=7)
    order = labels[:, 0].astype(np.int64)
    assert sorted(order.tolist()) == list(range(ROWS))
    assert not np.array_equal(order, np.arange(ROWS))
    np.testing.assert_array_equal(ids, rows(ROWS)[0][order])  # rows stay whole
    _, (_, _, again) = read(packed, 300, shuffle=True, seed=7)
    _, (_, _, other) = read(packed, 300, shuffle=True, seed=8)
    np.testing.assert_array_equal(again, labels)
    assert not np.array_equal(other, labels)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mindrecord"
    with PackedWriter(path) as writer:
        writer.add(*rows(0))
    assert count_rows(path) == 0
    assert list(iter_batches(path, 10)) == []
    assert list(iter_batches(path, 10, shuffle=True)) == []


def test_exact_multiple_of_pack_size(tmp_path):
    path = tmp_path / "full.mindrecord"
    with PackedWriter(path) as writer:
        writer.add(*rows(2 * PACK_SIZE))
    assert count_rows(path) == 2 * PACK_SIZE


def test_add_checks_shapes(tmp_path):
    with PackedWriter(tmp_path / "x.mindrecord") as writer:
        ids, vals, labels = rows(5)
        with pytest.raises(ValueError, match=r"expected ids and vals of shape \(5, 39\)"):
            writer.add(ids[:, :38], vals, labels)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mindrecord"):
        next(iter_batches(tmp_path / "nope.mindrecord", 10))


def test_shuffle_mixes_record_order(tmp_path):
    path = tmp_path / "many.mindrecord"
    with PackedWriter(path) as writer:
        writer.add(*rows(20 * PACK_SIZE))
    _, (_, _, labels) = read(path, PACK_SIZE, shuffle=True, seed=0)
    first_group = labels[: 8 * PACK_SIZE, 0]  # rows are shuffled within 8-record groups
    assert first_group.max() >= 8 * PACK_SIZE  # so some record beyond the 8th came first
    assert sorted(labels[:, 0].tolist()) == list(range(20 * PACK_SIZE))


@pytest.fixture
def fresh(tmp_path):
    """A new packed file that a test may damage."""
    path = tmp_path / "data.mindrecord"
    with PackedWriter(path) as writer:
        writer.add(*rows(ROWS))
    return path


def truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


DAMAGE = {
    "truncated": lambda p: truncate(p, p.stat().st_size // 2),
    "index truncated": lambda p: truncate(p.with_name(p.name + ".db"), 8000),
    "index empty": lambda p: truncate(p.with_name(p.name + ".db"), 0),
    "no index": lambda p: p.with_name(p.name + ".db").unlink(),
    "junk": lambda p: p.write_bytes(b"junk" * 1000),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
@pytest.mark.parametrize("read", ["count", "iterate", "shuffle"])
def test_damaged_file_is_named_without_a_cpp_stack(fresh, case, read):
    DAMAGE[case](fresh)
    with pytest.raises(DatasetError) as caught:
        if read == "count":
            count_rows(fresh)
        else:
            list(iter_batches(fresh, 1000, shuffle=read == "shuffle"))
    message = str(caught.value)
    assert message.startswith(f"{fresh}: MindSpore cannot read this MindRecord file or its .db "
                              "index (")
    assert "damaged or incomplete" in message
    assert "C++" not in message and "\n" not in message
