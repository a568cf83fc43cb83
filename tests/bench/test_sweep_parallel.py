"""Parallel cells in a sweep: a worker killed mid-run fails its cell by name (not by the
cell's timeout), and the sweep goes on to the next cell."""
import threading
import time

import psutil
import pytest

from bench.results import read_records
from bench.suite import load_suite
from bench.sweep import run_sweep

pytestmark = pytest.mark.integration

SUITE = """
timeout_s: 300
fixed: {data: {rows: 6000, vocab: 2000},
        train: {batch_size: 200, max_steps: 100000, warmup_steps: 2}}
cells:
  - {model: wide_deep, parallel: {mode: hybrid, workers: 2}}
  - {model: wide_deep, train.max_steps: 8}
"""


def rank_process(rank: int) -> psutil.Process | None:
    """The msrun worker of ``rank`` running bench/job/worker.py under this test (other
    jobs on the machine may run workers of their own), if any."""
    for proc in psutil.Process().children(recursive=True):
        try:
            if "bench/job/worker.py" in " ".join(proc.cmdline()):
                env = proc.environ()
                if env.get("MS_ROLE") == "MS_WORKER" and env.get("RANK_ID") == str(rank):
                    return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def kill_rank_when_training(rank: int, job_log: callable, killed: list, give_up_s=240):
    deadline = time.monotonic() + give_up_s
    while time.monotonic() < deadline:
        log = job_log()
        proc = rank_process(rank)
        if proc is not None and log is not None and "step" in log:
            proc.kill()
            killed.append(time.monotonic())
            return
        time.sleep(0.2)


def test_killed_worker_fails_the_cell_fast_and_the_sweep_goes_on(tmp_path):
    path = tmp_path / "parallel.yaml"
    path.write_text(SUITE)
    suite = load_suite(str(path))
    results = tmp_path / "results"
    job_logs = results / "runs" / "kill"

    def rank0_log():
        logs = list(job_logs.glob("*.job/logs/worker_0.log"))
        return logs[0].read_text(errors="replace") if logs else None

    killed: list[float] = []
    killer = threading.Thread(target=kill_rank_when_training, args=(1, rank0_log, killed))
    killer.start()
    store = run_sweep(suite, results, run_id="kill")
    killer.join()

    assert killed, "the worker was never seen training"
    parallel, standalone = read_records(store)
    assert parallel["status"] == "failed"
    # The job failed on the worker's death, not on the cell's or msrun's deadline.
    assert "rank 1" in parallel["reason"] and "SIGKILL" in parallel["reason"]
    assert "log tail" in parallel["reason"]
    assert "timed out" not in parallel["reason"] and "ran past" not in parallel["reason"]
    assert standalone["status"] == "ok"  # the sweep went on
    assert rank_process(0) is None and rank_process(1) is None  # nothing left behind
