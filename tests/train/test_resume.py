"""Checkpoints with optimizer state: a resumed run goes on as if it had not stopped, a
cache restarts from its snapshot, and a run killed with SIGKILL resumes from its last
checkpoint with every row whole."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mindrec.config import build_run_config
from mindrec.embedding.cache.device import DeviceCache
from mindrec.train import checkpoint
from mindrec.train.trainer import build, fit, predict_split

BATCH = 50


def run_config(embedding="static", steps=40, cache=None, every=None):
    return build_run_config(
        "wide_deep", embedding={"kind": embedding}, cache=cache or {},
        train_overrides={"batch_size": BATCH, "max_steps": steps, "epochs": 20, "seed": 2,
                         "checkpoint_every": every})


def cache_config(tmp_path, name):
    return {"device_rows": 1600, "tiers": "host+ssd", "host_rows": 800,
            "ssd_path": str(tmp_path / name)}


def table_rows(network, keys):
    """(found, packed rows) of ``keys``: the values and optimizer states of every hash
    table, from a cache's tiers or from a plain index's tables."""
    index = network.hash_index
    if isinstance(index, DeviceCache):
        return index.rows(keys)
    slots = index.peek(keys)[0]
    parts = [param.asnumpy()[slots]
             for _, cell in network.cells_and_names() if type(cell).__name__ == "HashEmbedding"
             for param in [cell.table, *(state for state, _ in cell.optimizer_states)]]
    return slots > 0, np.concatenate(parts, axis=1)


@pytest.mark.parametrize("embedding", ["static", "hash", "cache"])
def test_a_resumed_run_continues_as_if_it_had_not_stopped(tiny_data, tmp_path, embedding):
    cache = cache_config(tmp_path, "a") if embedding == "cache" else None
    kind = "static" if embedding == "static" else "hash"
    whole = fit(build(run_config(kind, 40, cache), tiny_data), run_config(kind, 40, cache),
                tiny_data, progress=None)
    ckpt = tmp_path / "half.safetensors"
    first = run_config(kind, 20, cache and cache_config(tmp_path, "b"))
    fit(build(first, tiny_data), first, tiny_data, progress=None, checkpoint_path=ckpt)
    second = run_config(kind, 40, cache and cache_config(tmp_path, "c"))
    resumed = fit(build(second, tiny_data), second, tiny_data, progress=None,
                  resume_from=ckpt)
    assert resumed.first_step == 20 and resumed.steps == 40
    np.testing.assert_allclose(resumed.losses, whole.losses[20:], rtol=0, atol=1e-6)


def test_a_cache_restarts_from_its_snapshot_with_the_same_predictions(tiny_data, tmp_path):
    run = run_config("hash", 30, cache_config(tmp_path, "train"))
    network = build(run, tiny_data)
    fit(network, run, tiny_data, progress=None, checkpoint_path=tmp_path / "m.safetensors")
    before, _ = predict_split(network, tiny_data, batch_size=BATCH)
    snapshots = list(tmp_path.glob("m.cache-*"))
    assert [s.name for s in snapshots] == ["m.cache-30"]  # the one the file refers to
    restarted = build(run_config("hash", 30, cache_config(tmp_path, "restart")), tiny_data)
    assert checkpoint.load(restarted, tmp_path / "m.safetensors") == 30
    assert len(restarted.hash_index.index) == 0  # the device tier starts empty
    after, _ = predict_split(restarted, tiny_data, batch_size=BATCH)
    np.testing.assert_array_equal(after, before)


WORKER = """
import sys
from mindrec.config import build_run_config
from mindrec.train.trainer import build, fit
data, ckpt, ssd = sys.argv[1:4]
run = build_run_config("wide_deep", embedding={"kind": "hash"},
                       cache={"device_rows": 1600, "tiers": "host+ssd", "host_rows": 800,
                              "ssd_path": ssd},
                       train_overrides={"batch_size": 50, "max_steps": 100000, "epochs": 1000,
                                        "seed": 2, "checkpoint_every": 7})
fit(build(run, data), run, data, progress=sys.stdout, checkpoint_path=ckpt)
"""


@pytest.mark.integration
def test_killed_mid_run_it_resumes_from_its_last_checkpoint_with_every_row_whole(
        tiny_data, tmp_path, wait_for):
    """SIGKILL while training (and possibly while checkpointing); the last checkpoint
    restores exactly the rows (values and optimizer state) of a run stopped there."""
    ckpt = tmp_path / "run.safetensors"
    child = subprocess.Popen([sys.executable, "-c", WORKER, str(tiny_data), str(ckpt),
                              str(tmp_path / "ssd")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    def checkpointed_steps():
        return [int(path.name.rsplit("-", 1)[1]) for path in tmp_path.glob("run.cache-*")
                if not path.name.endswith(".partial")]

    try:
        assert wait_for(lambda: max(checkpointed_steps(), default=0) >= 21, 600), \
            "no third checkpoint"
        time.sleep(0.5)  # land somewhere in the middle of what comes next
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    restored = build(run_config("hash", 10, cache_config(tmp_path, "restored")), tiny_data)
    step = checkpoint.load(restored, ckpt)
    assert step >= 21 and step % 7 == 0
    reference_run = run_config("hash", step)
    reference = build(reference_run, tiny_data)
    fit(reference, reference_run, tiny_data, progress=None)
    keys = reference.hash_index.items()[0]
    found, rows = table_rows(restored, keys)
    ref_found, ref_rows = table_rows(reference, keys)
    assert found.all() and ref_found.all()
    np.testing.assert_allclose(rows, ref_rows, rtol=0, atol=1e-6)
