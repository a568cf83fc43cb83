"""The msrun launcher on real 2-worker jobs (127.0.0.1, CPU): a dead worker fails the job
by name, a job past its timeout is killed whole, nothing is left running. The worker
scripts are tests/train/dist_workers.py."""
from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from bench.job.launcher import (DistributedJobError, DistributedTimeoutError, free_port,
                                launch)

pytestmark = pytest.mark.integration  # real msrun jobs

WORKER = str(Path(__file__).parents[2] / "train" / "dist_workers.py")
WORKERS = 2


def no_children_left() -> bool:
    """True when this test process has no live descendants (msrun, scheduler, workers)."""
    return not psutil.Process().children(recursive=True)


@pytest.mark.parametrize("how, code_text", [
    (["--code", "3"], "exited with code 3"),
    pytest.param(["--sigkill"], "killed by SIGKILL", marks=pytest.mark.slow),
])
def test_dead_worker_fails_the_job_by_name(tmp_path, how, code_text):
    """The job fails from the worker's death, never from its (long) timeout: rank 0 waits
    in a collective for rank 1 for ever, so only watching msrun's report ends it."""
    with pytest.raises(DistributedJobError) as failure:
        launch([WORKER, "crash", *how], WORKERS, tmp_path, timeout_s=600)
    error = failure.value
    assert not isinstance(error, DistributedTimeoutError)
    assert error.rank == 1
    assert "worker rank 1" in str(error) and code_text in str(error)
    assert "rank 1 is about to die" in error.log_tail
    assert error.log_tail in str(error)
    assert no_children_left()


def test_timeout_kills_every_process(tmp_path):
    timeout_s = 15
    start = time.monotonic()
    with pytest.raises(DistributedTimeoutError, match="ran past its 15 s timeout") as failure:
        launch([WORKER, "hang", str(tmp_path)], WORKERS, tmp_path / "logs", timeout_s)
    assert time.monotonic() - start >= timeout_s
    assert failure.value.rank is None
    pids = [int((tmp_path / f"rank{rank}.pid").read_text()) for rank in range(WORKERS)]
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert no_children_left()


def test_free_port_and_missing_script(tmp_path):
    assert 1024 <= free_port() <= 65535
    with pytest.raises(FileNotFoundError, match="missing.py"):
        launch([str(tmp_path / "missing.py")], WORKERS, tmp_path, timeout_s=10)
