"""Runs a suite: expands it into cells and runs each cell in its own subprocess.

Records go to ``results/runs/<run-id>.jsonl`` (appended atomically, one per cell), the
machine limits of the run to ``<run-id>.limits.json`` and each cell's log to
``<run-id>/<cell-id>.log``. ``resume=True`` skips cells that already have a record, so an
interrupted sweep rerun with the same run id finishes without duplicates.
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

from bench.job.cell import unmeasured_record
from bench.datasets import cached_dataset
from bench.job.hardware import unavailable_reason
from bench.job.limits import measure_limits
from bench.results import append_record, new_run_id, read_records, write_atomic
from bench.suite import CellSpec, Suite, select
from mindrec.config import build_run_config

LOG_TAIL_LINES = 40
# A parallel cell's own msrun deadline, inside the sweep's: msrun and its workers run in
# sessions of their own, which the sweep's kill of the cell's process group misses.
_JOB_TIMEOUT_SHARE = 0.9
# Parameter + two optimizer slots per table value, float32, plus a margin for the rest.
_BYTES_PER_TABLE_VALUE = 4 * 3 * 1.25


def table_memory_bytes(spec: CellSpec) -> float | None:
    """Rough memory of the cell's tables and optimizer state, summed over its workers
    (None: sized by the data). Every data-parallel worker holds whole tables; hybrid
    workers hold a share each."""
    if spec.table_size is None:
        return None
    dim = build_run_config(spec.model, spec.preset).model_config.emb_dim
    wide = 1 if spec.model == "wide_deep" else 0
    copies = spec.workers if spec.mode == "data_parallel" else 1
    return copies * spec.table_size * (dim + wide) * _BYTES_PER_TABLE_VALUE


def skip_reason(spec: CellSpec) -> str | None:
    """Why ``spec`` cannot run on this machine, or None."""
    reason = unavailable_reason(spec.hardware)
    if reason:
        return reason
    need = table_memory_bytes(spec)
    total = psutil.virtual_memory().total
    if need is not None and need > 0.8 * total:
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
    limits_path = runs / f"{run_id}.limits.json"
    if not limits_path.exists():
        write_atomic(limits_path, json.dumps(measure_limits(), indent=2) + "\n")
    cells = select(suite.cells, only)
    if not cells:
        raise ValueError(f"--only {only!r} matches no cell of suite {suite.name}")
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
            data = cached_dataset(Path(results_dir) / "cache", spec.rows, spec.vocab,
                                  spec.seed, spec.threshold, progress=progress)
            record = run_cell_process(spec, data, run_id, suite, limits_path,
                                      runs / run_id / f"{spec.cell_id}.log")
        append_record(store, record)
        print(f"{label}: {describe(record)}", file=progress, flush=True)
    return store


def run_cell_process(spec: CellSpec, data: Path, run_id: str, suite: Suite,
                     limits_path: Path, log_path: Path) -> dict:
    """Run one cell via ``python -m bench.job.cell``; a crash or time-out gives ``failed``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.with_suffix(".json")
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.job.cell", "--spec", json.dumps(spec.to_dict()),
               "--data", str(data), "--run-id", run_id, "--suite", suite.name,
               "--limits", str(limits_path), "--out", str(out),
               "--job-dir", str(log_path.with_suffix(".job")),
               "--timeout", str(_JOB_TIMEOUT_SHARE * suite.timeout_s)]
    started = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ,
                                                                "PYTHONUNBUFFERED": "1"})
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
        record = json.loads(out.read_text())
        out.unlink()
        return record
    why = (f"timed out after {suite.timeout_s:.0f} s" if code is None
           else f"exited with code {code} after {time.monotonic() - started:.0f} s")
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return unmeasured_record(spec, run_id, suite.name, f"cell {why}; log {log_path}:\n"
                          + "\n".join(tail), status="failed")


def describe(record: dict) -> str:
    """One line about a record for progress output."""
    if record["status"] != "ok":
        return f"{record['status']}: {record['reason'].splitlines()[0]}"
    m = record["metrics"]
    return (f"ok: {m['samples_per_s']:,.0f} samples/s, AUC {m['auc']:.4f}, peak RSS "
            f"{m['peak_rss_mb']:,.0f} MB")
