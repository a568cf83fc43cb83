"""Launching a multi-worker ``msrun`` job safely (host side; MindSpore is not imported).

A job is ``msrun --worker_num=N --local_worker_num=N`` on 127.0.0.1 with the ``mccl``
collective backend (FACTS.md, "Distributed on CPU"). How msrun behaves, read from
``mindspore/parallel/cluster/process_entity/_api.py`` (2.10) and measured here:

- It starts a scheduler process and N workers, all running the *same* script with
  ``python`` from ``PATH``; ``MS_ROLE`` is ``MS_SCHED`` or ``MS_WORKER``. In the scheduler,
  ``mindspore.communication.init()`` serves the cluster and exits the process when it is
  done, so a script's code before ``init_worker()`` runs N+1 times.
- Worker ``r`` writes stdout and stderr to ``<log_dir>/worker_<r>.log``, the scheduler to
  ``scheduler.log``. Each worker gets its own session (``os.setsid``): killing msrun's
  process group does not kill the workers. They die with msrun by calling
  :func:`bench.job.lifetime.die_with_parent`, as msrun dies with the caller of ``launch``.
- msrun polls its workers once a second. When one exits non-zero it logs ``Worker process
  <pid> exit with exception. Error code: <code>.`` (negative: killed by that signal), kills
  the other workers, then *waits for the scheduler*, which can outlive them by the
  cluster timeouts. ``launch`` therefore watches that line itself and tears the job down:
  a dead worker fails ``launch`` 0.3-1.2 s after it exits. If several workers fail within
  the same second, msrun (and so ``launch``) names the lowest rank.
- A worker learns that the cluster is built from its heartbeat replies, sent every 3-5 s
  by default (``MS_RETRY_INTERVAL_LOWER/UPPER``, integer seconds); ``launch`` sets 1 s.
  A worker that tries to register before the scheduler listens can lose about 10 s in
  MindSpore's reconnect loop; ``init_worker`` first waits for the scheduler's port.

Launch overhead, 2 workers on the project's 2-core machine (6 runs each): from calling
``launch`` to both workers returning from ``init()`` 7.5-10.3 s (median 8.6 s): msrun
start-up 1.6 s, imports 3.5 s (three processes import MindSpore on two cores), cluster
building and the mccl sync 2-5 s. A job that only calls ``init_worker`` takes 10-12.5 s
end to end (the workers unregister, then the scheduler exits). Without the two measures
above: ready after 7.7-15.2 s (median 11.4 s), done after 12-17.6 s.

Usage (a real job takes about 10 s here, so this is not run as a doctest)::

    result = launch(["train_worker.py", "--steps", "10"], workers=2,
                    log_dir=Path("logs"), timeout_s=300)

where ``train_worker.py`` first calls :func:`bench.job.lifetime.die_with_parent`, then
joins the cluster with :func:`mindrec.train.distributed.init_worker`; ``result.elapsed_s``
is the job's wall time.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.job.lifetime import start_tied

LOG_TAIL_LINES = 30
_POLL_S = 0.2
# GLOG_v=3: MindSpore logs errors only, so log tails show tracebacks. Heartbeats every
# 1 s instead of every 3-5 s: workers learn sooner that the cluster is built (about 3 s
# off each job start here) and that a peer died.
_JOB_ENV_DEFAULTS = {"GLOG_v": "3", "PYTHONUNBUFFERED": "1",
                     "MS_RETRY_INTERVAL_LOWER": "1", "MS_RETRY_INTERVAL_UPPER": "1"}
_WORKER_EXIT = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)\.")


class DistributedJobError(RuntimeError):
    """A distributed job failed; ``rank`` is the failed worker (None when not one rank).

    Args:
        message (str): what happened, with the log tail appended.
        rank (int | None): global rank of the worker that failed first, if known.
        log_tail (str): the last lines of that worker's log (or of the logs that explain
            the failure).
    """

    def __init__(self, message: str, rank: int | None, log_tail: str):
        super().__init__(f"{message}\n--- log tail ---\n{log_tail}")
        self.rank = rank
        self.log_tail = log_tail


class DistributedTimeoutError(DistributedJobError):
    """The job ran past its timeout and was killed."""


@dataclass(frozen=True)
class LaunchResult:
    """A distributed job that finished with every worker exiting 0."""

    workers: int
    log_dir: Path
    elapsed_s: float

    def worker_log(self, rank: int) -> Path:
        """Path of the combined stdout/stderr log of worker ``rank``."""
        return self.log_dir / f"worker_{rank}.log"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a text file, or a note that it does not exist."""
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


def launch(script_args: list[str], workers: int, log_dir: Path, timeout_s: float,
           env: dict[str, str] | None = None) -> LaunchResult:
    """Run ``python <script_args>`` as an msrun job of ``workers`` workers on 127.0.0.1.

    The call never hangs: it returns when msrun exits 0, and otherwise kills msrun, the
    scheduler and every worker (with their process groups) and raises. msrun dies with
    the calling thread (:func:`bench.job.lifetime.start_tied`); the script must call
    :func:`bench.job.lifetime.die_with_parent` before importing MindSpore, so that the
    scheduler and the workers die with msrun.

    Args:
        script_args (list[str]): the worker script's path followed by its arguments.
        workers (int): number of workers, all local.
        log_dir (Path): receives ``worker_<rank>.log``, ``scheduler.log`` and msrun's own
            output ``msrun.log``.
        timeout_s (float): limit on the whole job; msrun's ``--cluster_time_out`` is set to
            it as well.
        env (dict | None): extra environment variables for the job. They and this
            process's environment override the defaults ``GLOG_v=3``,
            ``PYTHONUNBUFFERED=1`` and 1 s heartbeats (``MS_RETRY_INTERVAL_LOWER/UPPER=1``).
            ``PATH`` starts with this interpreter's directory so that msrun's ``python``
            is this one.

    Raises:
        DistributedJobError: a worker exited non-zero (within about a second of its exit;
            ``rank`` names it and the message carries its log tail), or msrun failed.
        DistributedTimeoutError: the job ran past ``timeout_s``.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not Path(script_args[0]).is_file():
        raise FileNotFoundError(f"worker script {script_args[0]} does not exist")
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    job_env = _job_env(env)
    cmd = [_msrun_path(job_env), f"--worker_num={workers}", f"--local_worker_num={workers}",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", f"--log_dir={log_dir}",
           "--join=True", f"--cluster_time_out={max(1, math.ceil(timeout_s))}",
           # A rank outside [0, workers) turns off msrun's `tail -f` of the worker logs.
           f"--tail_worker_log={workers}", *map(str, script_args)]
    start = time.monotonic()
    with open(log_dir / "msrun.log", "w", encoding="utf-8") as msrun_log:
        proc = start_tied(cmd, env=job_env, stdout=msrun_log, stderr=subprocess.STDOUT,
                          start_new_session=True)
    job = _Job(proc, log_dir, workers)
    try:
        _supervise(job, start + timeout_s, timeout_s)
    except BaseException:
        job.kill()
        raise
    return LaunchResult(workers=workers, log_dir=log_dir, elapsed_s=time.monotonic() - start)


def _job_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The environment of the msrun process (inherited by scheduler and workers)."""
    env = {**_JOB_ENV_DEFAULTS, **os.environ, **(extra or {})}
    python_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([python_dir, env.get("PATH", "")])
    return env


def _msrun_path(env: dict[str, str]) -> str:
    """The msrun executable next to this interpreter (or on the job's PATH)."""
    path = shutil.which("msrun", path=env["PATH"])
    if path is None:
        raise FileNotFoundError(f"msrun not found on PATH {env['PATH']!r}; "
                                "it is installed with mindspore")
    return path


def _supervise(job: _Job, deadline: float, timeout_s: float) -> None:
    """Poll the job until msrun exits 0; raise on a failed worker, a failed msrun or time."""
    while True:
        job.refresh()
        returncode = job.proc.poll()
        failure = job.worker_failure()
        if failure is not None:
            raise failure
        if returncode == 0:
            return
        if returncode is not None:
            raise DistributedJobError(
                f"msrun exited with code {returncode} without naming a failed worker",
                rank=None, log_tail=_all_tails(job.log_dir, job.workers, with_msrun=True))
        if time.monotonic() > deadline:
            raise DistributedTimeoutError(
                f"distributed job of {job.workers} workers ran past its {timeout_s:g} s timeout "
                "and was killed", rank=None, log_tail=_all_tails(job.log_dir, job.workers))
        time.sleep(_POLL_S)


def _all_tails(log_dir: Path, workers: int, with_msrun: bool = False) -> str:
    """Tails of every worker log (and of msrun's and the scheduler's), with headers."""
    names = [f"worker_{rank}.log" for rank in range(workers)]
    if with_msrun:
        names += ["scheduler.log", "msrun.log"]
    return "\n".join(f"=== {name} ===\n{tail(log_dir / name)}" for name in names)


class _Job:
    """An msrun process and the scheduler and workers it started (seen by polling)."""

    def __init__(self, proc: subprocess.Popen, log_dir: Path, workers: int):
        self.proc = proc
        self.log_dir = log_dir
        self.workers = workers
        self.children: dict[int, psutil.Process] = {}
        self.roles: dict[int, str] = {}  # pid -> MS_ROLE (MS_SCHED or MS_WORKER)
        self.ranks: dict[int, int] = {}  # worker pid -> global rank

    def refresh(self) -> None:
        """Record msrun's children and, once they have exec'd, the workers' ranks.

        Between fork and exec a child still shows msrun's start-up environment, without
        ``MS_ROLE``; its role is read again at the next poll.
        """
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return
        for child in children:
            self.children.setdefault(child.pid, child)
            if child.pid in self.roles:
                continue
            try:
                environ = child.environ()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            if "MS_ROLE" not in environ:
                continue
            self.roles[child.pid] = environ["MS_ROLE"]
            if environ["MS_ROLE"] == "MS_WORKER":
                self.ranks[child.pid] = int(environ["RANK_ID"])

    def worker_failure(self) -> DistributedJobError | None:
        """The error for the first worker msrun reported as failed, if any."""
        match = _WORKER_EXIT.search(tail(self.log_dir / "msrun.log", lines=10_000))
        if match is None:
            return None
        pid, code = int(match.group(1)), int(match.group(2))
        rank = self.ranks.get(pid)
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        if rank is None:
            tails = _all_tails(self.log_dir, self.workers, with_msrun=True)
            return DistributedJobError(f"worker pid {pid} (rank unknown) {how}", rank=None,
                                       log_tail=tails)
        log = self.log_dir / f"worker_{rank}.log"
        return DistributedJobError(f"worker rank {rank} (pid {pid}) {how}; log: {log}",
                                   rank=rank, log_tail=tail(log))

    def kill(self) -> None:
        """Kill workers and scheduler first, so msrun reaps them, then msrun itself."""
        self.refresh()
        for child in self.children.values():
            _kill_group(child)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        psutil.wait_procs(list(self.children.values()), timeout=5)


def _kill_group(process: psutil.Process) -> None:
    """SIGKILL a process and, if it leads one (msrun's workers do), its process group."""
    try:
        if not process.is_running():
            return
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (psutil.NoSuchProcess, ProcessLookupError):
        return
