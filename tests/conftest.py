"""Shared fixtures: a tiny synthetic dataset, generated and converted once per session,
and helpers for tests that watch processes."""
from __future__ import annotations

import time

import psutil
import pytest

from mindrec.data.convert import convert
from mindrec.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory):
    """Directory with a 20,000-row synthetic Criteo file (train.txt) and its truth."""
    out = tmp_path_factory.mktemp("raw")
    generate(SyntheticSpec(rows=20_000, vocab=5_000, seed=3), out, progress=None)
    return out


@pytest.fixture(scope="session")
def tiny_data(tiny_raw, tmp_path_factory):
    """The tiny synthetic dataset converted to MindRecord (90/10 split)."""
    out = tmp_path_factory.mktemp("converted") / "data"
    convert(tiny_raw / "train.txt", out, threshold=1, progress=None)
    return out


def _alive(procs):
    """The processes of ``procs`` still running (a zombie is dead)."""
    running = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.NoSuchProcess:
            continue
    return running


def _wait_for(condition, timeout_s: float) -> bool:
    """Poll ``condition`` until it is true or ``timeout_s`` passes. A liveness bound for
    what would otherwise hang for ever, never a speed assertion."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def alive():
    """``alive(procs)``: the processes still running."""
    return _alive


@pytest.fixture
def wait_for():
    """``wait_for(condition, timeout_s)``: poll until true; False on time-out."""
    return _wait_for
