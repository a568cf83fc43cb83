"""Damaged checkpoint files fail with their name and what is wrong, before MindSpore reads them."""
import json
import struct

import pytest

from mindrec.config import build_run_config
from mindrec.train import checkpoint
from mindrec.train.checkpoint import CheckpointError
from mindrec.train.trainer import build


def small_run(embedding="static"):
    return build_run_config("wide_deep", "cpu-small", embedding={"kind": embedding},
                            train_overrides={"epochs": 1, "batch_size": 500})


@pytest.fixture(scope="module")
def network(tiny_data):
    return build(small_run(), tiny_data)


@pytest.fixture(scope="module")
def saved(network, tmp_path_factory):
    """A real checkpoint of a small Wide&Deep model (copy it before changing it)."""
    return checkpoint.save(network, tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def header_of(path):
    data = path.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + length]), data[8 + length:]


def rewrite(path, header, body):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


@pytest.fixture
def no_mindspore(monkeypatch):
    """Fail the test if MindSpore is asked to read a checkpoint."""
    def refuse(*args, **kwargs):
        raise AssertionError("MindSpore read a checkpoint that should have been refused")
    monkeypatch.setattr(checkpoint.ms, "load_checkpoint", refuse)


@pytest.mark.parametrize("embedding", ["static", "hash"])
def test_sound_checkpoints_pass_the_check(tiny_data, tmp_path, embedding):
    net = build(small_run(embedding), tiny_data)
    path = checkpoint.save(net, tmp_path / "m.safetensors")
    names = set(checkpoint.check_file(path)) - {"__metadata__"}
    assert {name for name, _ in net.parameters_and_names()} <= names
    checkpoint.load(net, path)


def test_truncated_in_the_tensors(saved, network, tmp_path, no_mindspore):
    header, body = header_of(saved)
    last = max((k for k in header if k != "__metadata__"),
               key=lambda k: header[k]["data_offsets"][1])
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(saved.read_bytes()[:-100])
    size = saved.stat().st_size
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(network, cut)
    assert str(caught.value) == (f"{cut}: tensor {last!r} ends at byte {size:,} but the file "
                                 f"has {size - 100:,} bytes: truncated")


@pytest.mark.parametrize("keep, reason", [
    (5, "5 bytes, too short for a safetensors file: truncated or not a checkpoint"),
    (0, "0 bytes, too short for a safetensors file"),
    (50, "its header would end at byte "),
])
def test_truncated_in_the_header(saved, network, tmp_path, no_mindspore, keep, reason):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(saved.read_bytes()[:keep])
    with pytest.raises(CheckpointError) as caught:
        checkpoint.load(network, cut)
    assert str(caught.value).startswith(f"{cut}: {reason}")


def test_not_a_checkpoint(network, tmp_path, no_mindspore):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are my notes, not a model\n")
    with pytest.raises(CheckpointError, match=r"notes\.safetensors: its header would end at byte"):
        checkpoint.load(network, path)


def test_header_not_json(saved, network, tmp_path, no_mindspore):
    data = bytearray(saved.read_bytes())
    data[8] = ord("#")  # the header's opening brace
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: its header is not JSON"):
        checkpoint.load(network, path)


def test_header_not_an_object(saved, network, tmp_path, no_mindspore):
    path = tmp_path / "bad.safetensors"
    rewrite(path, [1, 2], b"")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: its header is a JSON list"):
        checkpoint.load(network, path)


def edit_first_tensor(header, **changes):
    name = next(k for k in header if k != "__metadata__")
    header[name] = {**header[name], **changes}
    return name


@pytest.mark.parametrize("change, reason", [
    ({"shape": [10**6]}, "data_offsets \\[{b}, {e}\\] hold {n} bytes, a F32 \\[1000000\\] tensor "
                         "needs 4,000,000: damaged"),
    ({"dtype": "Q7"}, "malformed header entry"),
    ({"data_offsets": [5]}, "malformed header entry"),
    ({"shape": "big"}, "malformed header entry"),
])
def test_damaged_header_entries(saved, network, tmp_path, no_mindspore, change, reason):
    header, body = header_of(saved)
    name = edit_first_tensor(header, **change)
    path = tmp_path / "bad.safetensors"
    rewrite(path, header, body)
    begin, end = header_of(saved)[0][name]["data_offsets"]
    expected = reason.format(b=begin, e=end, n=f"{end - begin:,}")
    with pytest.raises(CheckpointError, match=rf"bad\.safetensors: tensor '{name}': {expected}"):
        checkpoint.load(network, path)
