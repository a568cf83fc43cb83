"""Runs a suite: expands it into cells and runs each cell in its own subprocess.

Records go to ``results/runs/<run-id>.jsonl`` (appended atomically, one per cell), the
machine limits of the run, measured at every start, resume and end, to
``<run-id>.limits.json``, and each cell's log to ``<run-id>/<cell-id>.log``.
``resume=True`` skips cells that already have a record, so an interrupted sweep rerun
with the same run id finishes without duplicates. A cell, and its msrun job, dies with
the sweep (:mod:`bench.job.lifetime`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import psutil

from bench.datasets import cached_dataset
from bench.job.cell import unmeasured_record
from bench.job.hardware import unavailable_reason
from bench.job.lifetime import start_tied
from bench.job.limits import record_limits
from bench.peers import backend_unavailable
from bench.results import (RecordError, append_record, metric, new_run_id, read_records,
                           validate)
from bench.suite import CellSpec, Suite, select
from mindrec.models.registry import table_memory_bytes

LOG_TAIL_LINES = 40
# A parallel cell's own msrun deadline, inside the sweep's: the job is killed a little
# before the cell, so the cell can still record the failure with the workers' log tails.
_JOB_TIMEOUT_SHARE = 0.9
# Room for what the tables' estimate leaves out (the rest of the model, the runtime).
_TABLE_MEMORY_MARGIN = 1.25


def skip_reason(spec: CellSpec) -> str | None:
    """Why ``spec`` cannot run on this machine, or None."""
    if spec.base_run.online.enabled and spec.hardware != "cpu":
        return (f"online cells run on the CPU only (the online trainer and the serving "
                f"process use MindSpore's CPU target); this cell asks for {spec.hardware}")
    reason = unavailable_reason(spec.hardware) or backend_unavailable(spec.backend)
    if reason:
        return reason
    table_size = spec.base_run.train.table_size
    if table_size is None or spec.base_run.cache.enabled:
        return None  # sized by the data, which fits; or a cache's tiers hold the rows
    need = table_memory_bytes(spec.base_run, table_size) * _TABLE_MEMORY_MARGIN
    total = psutil.virtual_memory().total
    if need > 0.8 * total:
        return (f"tables and optimizer state need about {need / 2**30:.1f} GiB; this machine "
                f"has {total / 2**30:.1f} GiB")
    return None


def run_sweep(suite: Suite, results_dir: Path = Path("results"), run_id: str | None = None,
              resume: bool = False, only: str | None = None,
              progress: TextIO = sys.stderr) -> Path:
    """Run ``suite`` (or the cells matching ``only``); returns the JSONL store path."""
    run_id = run_id or new_run_id()
    runs = Path(results_dir) / "runs"
    store = runs / f"{run_id}.jsonl"
    if store.exists() and not resume:
        raise FileExistsError(f"{store} exists: pass --resume to finish that run, or "
                              f"choose another --run-id")
    done = {r["cell_id"] for r in read_records(store)} if store.exists() else set()
    cells = select(suite.cells, only)
    if not cells:
        raise ValueError(f"--only {only!r} matches no cell of suite {suite.name}")
    limits_path = runs / f"{run_id}.limits.json"
    record_limits(limits_path, "resume" if limits_path.exists() else "start")
    print(f"sweep {suite.name}: {len(cells)} cells, run {run_id}, records in {store}",
          file=progress, flush=True)
    for number, spec in enumerate(cells, 1):
        label = f"[{number}/{len(cells)}] {spec.cell_id}"
        if spec.cell_id in done:
            print(f"{label}: already recorded, skipped (--resume)", file=progress, flush=True)
            continue
        reason = skip_reason(spec)
        if reason:
            record = unmeasured_record(spec, run_id, suite.name, reason)
        else:
            data = None if spec.base_run.online.enabled else cached_dataset(
                Path(results_dir) / "cache", spec.data, progress=progress)
            record = run_cell_process(spec, data, run_id, suite, limits_path,
                                      runs / run_id / f"{spec.cell_id}.log")
        append_record(store, record)
        print(f"{label}: {describe(record)}", file=progress, flush=True)
    record_limits(limits_path, "end")
    return store


def run_cell_process(spec: CellSpec, data: Path | None, run_id: str, suite: Suite,
                     limits_path: Path, log_path: Path) -> dict:
    """Run one cell via ``python -m bench.job.cell``; a crash or time-out gives ``failed``.
    The cell, and with it its msrun job, dies with this process (thread)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.with_suffix(".json")
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.job.cell", "--spec", json.dumps(spec.to_dict()),
               *(["--data", str(data)] if data is not None else []),
               "--run-id", run_id, "--suite", suite.name,
               "--limits", str(limits_path), "--out", str(out),
               "--job-dir", str(log_path.with_suffix(".job")),
               "--timeout", str(_JOB_TIMEOUT_SHARE * suite.timeout_s)]
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = start_tied(command, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code = process.wait(timeout=suite.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    if code == 0 and out.is_file():
        return cell_output_record(out, spec, run_id, suite.name)
    why = (f"timed out after {suite.timeout_s:.0f} s" if code is None
           else f"exited with code {code} after {time.monotonic() - started:.0f} s")
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    # The last line of a crashed cell's log is its exception: it leads the reason.
    last = next((line.strip() for line in reversed(tail) if line.strip()), "no output")
    return unmeasured_record(spec, run_id, suite.name,
                             f"cell {why}: {last}\nlog {log_path}:\n" + "\n".join(tail),
                             status="failed")


def cell_output_record(out: Path, spec: CellSpec, run_id: str, suite: str) -> dict:
    """The record a cell wrote to ``out`` (then removed), or, if it breaks the schema (a
    bug in the cell), a ``failed`` record naming the problem, ``out`` kept for a look."""
    try:
        record = validate(json.loads(out.read_text()))
    except (ValueError, RecordError) as exc:
        return unmeasured_record(spec, run_id, suite, f"the cell wrote a record that breaks "
                                 f"the schema ({exc}); kept in {out}", status="failed")
    out.unlink()
    return record


def describe(record: dict) -> str:
    """One line about a record for progress output."""
    if record["status"] != "ok":
        return f"{record['status']}: {record['reason'].splitlines()[0]}"
    return (f"ok: {metric(record, 'samples_per_s'):,.0f} samples/s, AUC "
            f"{metric(record, 'auc'):.4f}, peak RSS {metric(record, 'peak_rss_mb'):,.0f} MiB")
