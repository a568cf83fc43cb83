"""Parallel cells in a sweep: a worker killed mid-run fails its cell within seconds with
a clear message, and the sweep goes on to the next cell."""
import threading
import time

import psutil

from bench.results import read_records
from bench.suite import load_suite
from bench.sweep import run_sweep

SUITE = """
timeout_s: 300
fixed: {rows: 6000, vocab: 2000, batch_size: 200, steps: 100000, warmup_steps: 2}
cells:
  - {model: wide_deep, mode: hybrid, workers: 2}
  - {model: wide_deep, steps: 8}
"""


class Timestamped:
    """A progress stream that remembers when each line was written."""

    def __init__(self):
        self.lines: list[tuple[float, str]] = []

    def write(self, text):
        self.lines += [(time.monotonic(), line) for line in text.splitlines() if line]

    def flush(self):
        pass


def rank_process(rank: int) -> psutil.Process | None:
    """The msrun worker process of ``rank`` running bench/job/worker.py, if any."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "bench/job/worker.py" in " ".join(proc.info["cmdline"] or ()):
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
    progress = Timestamped()
    store = run_sweep(suite, results, run_id="kill", progress=progress)
    killer.join()

    assert killed, "the worker was never seen training"
    parallel, standalone = read_records(store)
    assert parallel["status"] == "failed"
    assert "rank 1" in parallel["reason"] and "log tail" in parallel["reason"]
    reported = next(t for t, line in progress.lines if line.startswith("[1/2]"))
    assert reported - killed[0] < 20  # seconds, not the 300 s cell timeout
    assert standalone["status"] == "ok"  # the sweep went on
    assert rank_process(0) is None and rank_process(1) is None  # nothing left behind
