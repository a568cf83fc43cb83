"""bench.job.lifetime: a chain of processes, each in its own session like a sweep's cell,
msrun and workers, dies from the top; a process whose parent died before it could tie
itself to it kills itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil

from bench.job.lifetime import PARENT_PID_ENV, start_tied

# top (like the sweep) --start_tied--> middle (like msrun, its own session) --plain Popen,
# own session--> leaf (like a worker, calls die_with_parent). Each writes its pid.
TOP = """
import sys, time
from bench.job.lifetime import start_tied
start_tied([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]],
           start_new_session=True)
time.sleep(600)
"""
MIDDLE = """
import pathlib, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], start_new_session=True)
pathlib.Path(sys.argv[2], "middle").write_text(str(__import__("os").getpid()))
time.sleep(600)
"""
LEAF = """
import os, pathlib, sys, time
from bench.job.lifetime import die_with_parent
die_with_parent()
pathlib.Path(sys.argv[1], "leaf").write_text(str(os.getpid()))
time.sleep(600)
"""


def test_chain_dies_when_its_top_is_killed(tmp_path, alive, wait_for):
    top = subprocess.Popen([sys.executable, "-c", TOP, MIDDLE, LEAF, str(tmp_path)])
    procs = []
    try:
        assert wait_for(lambda: (tmp_path / "leaf").is_file(), 60), "the leaf never started"
        procs = [psutil.Process(int((tmp_path / name).read_text()))
                 for name in ("middle", "leaf")]
        assert procs[0].ppid() == top.pid and procs[1].ppid() == procs[0].pid
        assert os.getsid(procs[0].pid) != os.getsid(top.pid)
        top.kill()
        top.wait()
        assert wait_for(lambda: not alive(procs), 30), f"left running: {alive(procs)}"
    finally:
        top.kill()
        for proc in alive(procs):
            proc.kill()


def test_an_orphan_kills_itself_and_a_child_lives():
    """The expected parent is read from the environment: a child whose real parent is
    another process (it was re-parented) dies at once; one whose parent matches, or that
    expects none, runs on."""
    script = "from bench.job.lifetime import die_with_parent; die_with_parent(); print('alive')"
    quiet = {k: v for k, v in os.environ.items() if k != PARENT_PID_ENV}
    for expected, code, out in ((os.getpid(), 0, "alive\n"), (1, -signal.SIGKILL, ""),
                                (None, 0, "alive\n")):
        env = quiet if expected is None else {**quiet, PARENT_PID_ENV: str(expected)}
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               env=env, timeout=60)
        assert (child.returncode, child.stdout) == (code, out), (expected, child.stderr)


def test_start_tied_runs_the_command_in_the_child_it_returns():
    child = start_tied([sys.executable, "-c",
                        f"import os; print(os.getppid(), os.environ['{PARENT_PID_ENV}'])"],
                       stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0
    # Same pid before and after the exec: its children expect this pid as their parent.
    assert out.split() == [str(os.getpid()), str(child.pid)]
