"""A sweep that dies takes its running cell with it: the cell and, for a parallel cell,
msrun, its scheduler and its workers (each in a session of its own), whichever way the
sweep is killed; nothing writes a record afterwards."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest


def suite_text(parallel: bool) -> str:
    """A one-cell suite whose cell would train for many minutes: standalone, or a
    2-worker hybrid msrun job."""
    cell = ("{model: wide_deep, parallel: {mode: hybrid, workers: 2}}" if parallel
            else "{model: wide_deep}")
    return f"""
timeout_s: 3600
fixed:
  data: {{rows: 6000, vocab: 2000}}
  train: {{batch_size: 200, max_steps: 10000000, warmup_steps: 2, log_every: 10}}
cells:
  - {cell}
"""


def training(logs: list[Path]) -> bool:
    """There is a log and it shows a training step."""
    return bool(logs) and all(" step " in log.read_text(errors="replace") for log in logs)


def outputs(runs: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``runs`` but the logs: records, limits, job files (size, mtime)."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in runs.rglob("*") if path.is_file() and path.suffix != ".log"}


def command_lines(procs: list[psutil.Process]) -> list[str]:
    """The command lines of those still there."""
    lines = []
    for proc in procs:
        try:
            lines.append(" ".join(proc.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return lines


@pytest.mark.integration
@pytest.mark.parametrize("parallel, kill", [(False, "process"), (True, "group")],
                         ids=["standalone-kill-sweep", "hybrid-kill-sweep-group"])
def test_killed_sweep_takes_its_cell_along(tmp_path, parallel, kill, alive, wait_for):
    suite = tmp_path / "suite.yaml"
    suite.write_text(suite_text(parallel))
    runs = tmp_path / "results" / "runs"
    pattern = "life/*.job/logs/worker_0.log" if parallel else "life/*.log"
    with open(tmp_path / "sweep.log", "w") as sweep_log:
        sweep = subprocess.Popen([sys.executable, "-m", "bench.cli", "sweep", "--suite",
                                  str(suite), "--run-id", "life",
                                  "--results", str(tmp_path / "results")],
                                 cwd=tmp_path, stdout=sweep_log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    tree: list[psutil.Process] = []
    try:
        assert wait_for(lambda: training(list(runs.glob(pattern))), 300), (
            "the cell never trained:\n" + (tmp_path / "sweep.log").read_text())
        tree = psutil.Process(sweep.pid).children(recursive=True)
        names = command_lines(tree)
        assert any("bench.job.cell" in line for line in names), names
        if parallel:  # msrun, its scheduler and two workers, all below the cell
            run_by_msrun = [line for line in names
                            if "bench/job/worker.py" in line and "msrun" not in line]
            assert any("msrun" in line for line in names), names
            assert len(run_by_msrun) == 3, names
        written = outputs(runs)
        if kill == "group":
            os.killpg(sweep.pid, signal.SIGKILL)
        else:
            sweep.kill()
        sweep.wait()
        assert wait_for(lambda: not alive(tree), 60), (
            f"left running after the sweep died: {command_lines(alive(tree))}")
        assert outputs(runs) == written
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        for proc in alive(tree):
            proc.kill()
