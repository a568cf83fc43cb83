"""The online trainer: every row produced is trained exactly once across a kill -9 and a
restart; the checkpoint carries the stream positions; a missing broker is named."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.job.launcher import free_port
from bench.services import KafkaBroker, create_topic
from mindrec.data.criteo import iter_raw_lines
from mindrec.serve.model import ServedModel
from mindrec.stream.online import CHECKPOINT, VERSIONS, StreamCounters
from mindrec.stream.producer import produce
from mindrec.stream.versions import VersionReader
from mindrec.train import checkpoint

pytestmark = pytest.mark.integration

ROWS = 12_000
BATCH = 500


def _online(broker, topic, out, *extra):
    """The command line of an online trainer on ``topic`` writing to ``out``."""
    return [sys.executable, "-m", "bench.cli", "online", "--bootstrap-servers", broker,
            "--topic", topic, "--out", str(out), "--model", "wide_deep",
            "--set", "model_config.emb_dim=8", "--set", "model_config.deep_layers=[32]",
            "--batch-size", str(BATCH), "--capacity", "200000",
            "--checkpoint-every-steps", "3", "--publish-every-steps", "2", *extra]


def _counters(out):
    path = out / CHECKPOINT
    return StreamCounters.from_extra(checkpoint.read_extra(path), path)


def test_kill_9_and_restart_train_every_row_exactly_once(tiny_raw, broker, topic, tmp_path,
                                                          wait_for):
    name = topic(2)
    produce(broker, name, iter_raw_lines(tiny_raw / "train.txt"), max_rows=ROWS,
            progress=None)
    out = tmp_path / "online"
    log = open(tmp_path / "first.log", "wb")
    first = subprocess.Popen(_online(broker, name, out, "--idle-stop-s", "60"), stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: (out / CHECKPOINT).exists() and _safe_steps(out) >= 6, 300), \
            (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.3)  # somewhere in the middle of what comes next
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    killed_at = _counters(out)
    assert 0 < killed_at.rows_trained < ROWS
    # meanwhile a server serves the last version the killed trainer finished
    served = ServedModel(out / VERSIONS)
    assert served.update()
    assert served.version == VersionReader(out / VERSIONS).versions()[-1].version
    lines = next(iter_raw_lines(tiny_raw / "train.txt", chunk_rows=3))
    assert served.predict(lines).shape == (3,)
    second = subprocess.run(_online(broker, name, out, "--idle-stop-s", "5"),
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {out / CHECKPOINT}" in second.stderr
    done = _counters(out)
    assert done.rows_trained == ROWS
    assert done.row_sum == sum(range(ROWS))
    assert done.row_square_sum == sum(r * r for r in range(ROWS))
    assert done.positions == {0: ROWS // 2, 1: ROWS // 2}
    assert done.bad == 0


def test_a_broker_that_stops_answering_mid_run_loses_nothing(tiny_raw, tmp_path, wait_for):
    """The broker frozen (SIGSTOP) for seconds while rows stream in, then resumed: the
    producer and the trainer wait it out, and every row is trained once."""
    rows = 8000
    with KafkaBroker(log_dir=tmp_path) as paused:
        create_topic(paused.bootstrap_servers, "rows", 2)
        producer = subprocess.Popen(
            [sys.executable, "-m", "bench.cli", "stream", "produce", "--bootstrap-servers",
             paused.bootstrap_servers, "--topic", "rows", "--input",
             str(tiny_raw / "train.txt"), "--max-rows", str(rows), "--rate", "1000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        out = tmp_path / "online"
        trainer = subprocess.Popen(_online(paused.bootstrap_servers, "rows", out,
                                           "--idle-stop-s", "30", "--max-rows", str(rows)),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: _safe_steps(out) >= 3, 300), "no checkpoint"
            os.kill(paused.pid, signal.SIGSTOP)
            time.sleep(5)
            os.kill(paused.pid, signal.SIGCONT)
            assert producer.wait(timeout=300) == 0
            assert trainer.wait(timeout=300) == 0
        finally:
            os.kill(paused.pid, signal.SIGCONT)
            for process in (producer, trainer):
                process.kill()
                process.wait()
    done = _counters(out)
    assert (done.rows_trained, done.row_sum) == (rows, sum(range(rows)))


def _safe_steps(out) -> int:
    """Steps of the checkpoint in ``out`` (0 while it is being replaced)."""
    try:
        return _counters(out).steps
    except (OSError, ValueError):
        return 0


def test_a_broker_that_does_not_answer_is_named(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run(_online(address, "rows", tmp_path / "out", "--broker-wait-s", "2"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"no Kafka broker answered at {address} within 2 s" in done.stderr
