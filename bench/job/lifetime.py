"""Processes that die with their parent (Linux ``PR_SET_PDEATHSIG``; standard library only).

A sweep's cells, a cell's msrun and msrun's scheduler and workers each run in a session
of their own, so killing a process group never reaches the next level down. Instead each
level asks the kernel to SIGKILL it when its parent dies: the cell and msrun are started
through :func:`start_tied`, and msrun's children (which this project does not start)
call :func:`die_with_parent` first thing.

The kernel sends the signal when the parent *thread* that forked the child exits, so a
tied child must be started from a thread that outlives it (the main thread, waiting).

``start_tied`` runs the command through this file, which sets the signal and then
``exec``s the command in the same process (the signal survives ``exec``), rather than
through ``Popen(preexec_fn=...)``: Python code between ``fork`` and ``exec`` may deadlock
when the parent has other threads, as a cell does once MindSpore is imported.

Example (msrun's workers call ``die_with_parent()`` first thing in the same way)::

    >>> child = start_tied([sys.executable, "-c", "import os; print(os.getppid())"],
    ...                    stdout=subprocess.PIPE, text=True)
    >>> int(child.communicate()[0]) == os.getpid()  # exec kept the child's pid and parent
    True
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PARENT_PID_ENV = "MINDREC_BENCH_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """Have this process SIGKILLed when its parent dies, and die now if it already has.

    The parent the caller expects is read from ``MINDREC_BENCH_PARENT_PID``: if this
    process's parent is another one, the expected parent died before the signal was set
    (this process was re-parented) and nothing would ever send it. Without the variable
    the signal is set and no check is made.
    """
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    expected = os.environ.get(PARENT_PID_ENV)
    if expected is not None and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGKILL)


def start_tied(command: list[str], env: dict[str, str] | None = None,
               **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(command, ...)`` of a child that is SIGKILLed when this process
    (the calling thread) dies. Its children see its pid in ``MINDREC_BENCH_PARENT_PID``,
    for :func:`die_with_parent`.

    Args:
        command (list[str]): the program (found on the child's ``PATH``) and arguments.
        env (dict | None): the child's environment (default: this process's).
        popen_kwargs: passed to ``subprocess.Popen`` (``stdout``, ``start_new_session``...).
    """
    child_env = {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}
    return subprocess.Popen([sys.executable, "-I", "-S", __file__, *command], env=child_env,
                            **popen_kwargs)


def _exec_tied(command: list[str]) -> None:
    """Tie this process to its parent, then become ``command`` (same pid)."""
    die_with_parent()
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    os.execvp(command[0], command)


if __name__ == "__main__":
    _exec_tied(sys.argv[1:])
