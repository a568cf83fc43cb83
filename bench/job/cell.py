"""One sweep cell in its own process: ``python -m bench.job.cell --spec JSON ...``.

Its own process gives the cell its own peak memory, a fresh MindSpore context (device,
mode), and turns a crash into a ``failed`` record instead of a dead sweep. The record
is written to ``--out``; exit code 0 means the record is there.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.job.hardware import Unavailable
from bench.job.launcher import DistributedJobError
from bench.job.runner import train_and_measure
from bench.results import new_record, write_record
from bench.suite import CellSpec
from mindrec.config import build_run_config, from_dict
from mindrec.data.dataset import load_meta


def run_cell(spec: CellSpec, data_dir: Path, run_id: str, suite: str | None,
             limits: dict | None, job_dir: Path | None = None,
             timeout_s: float = 3600.0) -> dict:
    """Train and measure ``spec`` here; a cell that cannot run here becomes ``skipped``,
    a parallel job that fails (a worker died, time ran out) becomes ``failed`` with the
    failing worker's log tail. Parallel jobs keep their logs in ``job_dir``."""
    run = spec.run_config(int(load_meta(data_dir)["rows"]["train"]))
    try:
        record = train_and_measure(run, data_dir, hardware=spec.hardware, run_id=run_id,
                                   cell_id=spec.cell_id, suite=suite, limits=limits,
                                   job_dir=job_dir, timeout_s=timeout_s)
    except Unavailable as exc:
        return unmeasured_record(spec, run_id, suite, str(exc))
    except DistributedJobError as exc:
        return unmeasured_record(spec, run_id, suite, f"parallel job failed: {exc}",
                                 status="failed")
    record["spec"].update(cell_spec=spec.to_dict(), mode=spec.mode, workers=spec.workers,
                          embedding=spec.embedding)
    return record


def unmeasured_record(spec: CellSpec, run_id: str, suite: str | None, reason: str,
                      status: str = "skipped") -> dict:
    """A ``skipped`` or ``failed`` record: a cell that produced no measurements."""
    return new_record(run_id=run_id, cell_id=spec.cell_id, suite=suite, status=status,
                      reason=reason, spec=summary_spec(spec))


def summary_spec(spec: CellSpec) -> dict:
    """The record ``spec`` block of a cell that did not run (no dataset measured)."""
    return {"model": spec.model, "dataset": f"synthetic rows={spec.rows} vocab={spec.vocab}",
            "rows": spec.rows, "vocab_size": spec.table_size or spec.vocab,
            "table_size": spec.table_size,
            "emb_dim": build_run_config(spec.model, spec.preset).model_config.emb_dim,
            "batch_size": spec.batch_size,
            "embedding": spec.embedding, "mode": spec.mode, "workers": spec.workers,
            "hardware": spec.hardware, "steps": spec.steps, "seed": spec.seed,
            "cell_spec": spec.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.job.cell")
    parser.add_argument("--spec", required=True, help="the CellSpec as JSON")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--suite")
    parser.add_argument("--limits", type=Path, help="machine-limit JSON of the run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--job-dir", type=Path, help="parallel cells: the msrun job's files")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="parallel cells: kill the msrun job after this many seconds")
    args = parser.parse_args(argv)
    spec = from_dict(CellSpec, json.loads(args.spec), "--spec")
    limits = json.loads(args.limits.read_text()) if args.limits else None
    write_record(args.out, run_cell(spec, args.data, args.run_id, args.suite, limits,
                                    args.job_dir, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
