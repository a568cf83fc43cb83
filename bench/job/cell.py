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
from bench.job.limits import read_limits
from bench.job.runner import spec_block, train_and_measure
from bench.results import new_record, write_record
from bench.suite import CellSpec, cell_from_dict
from mindrec.data.dataset import open_dataset


def run_cell(spec: CellSpec, data_dir: Path | None, run_id: str, suite: str | None,
             limits: dict | None, job_dir: Path | None = None,
             timeout_s: float = 3600.0) -> dict:
    """Train and measure ``spec`` here; a cell that cannot run here becomes ``skipped``,
    a parallel job that fails (a worker died, time ran out) becomes ``failed`` with the
    failing worker's log tail. Parallel jobs keep their logs in ``job_dir``; an online
    cell (no dataset: it streams) its services' logs."""
    if spec.base_run.online.enabled:
        return _run_online_cell(spec, run_id, suite, job_dir)
    run = spec.run_config(int(open_dataset(data_dir)["rows"]["train"]))
    try:
        record = train_and_measure(run, data_dir, hardware=spec.hardware, run_id=run_id,
                                   cell_id=spec.cell_id, measurement_id=spec.measurement_id,
                                   preset=spec.preset, suite=suite, limits=limits,
                                   job_dir=job_dir, timeout_s=timeout_s,
                                   backend=spec.backend)
    except Unavailable as exc:
        return unmeasured_record(spec, run_id, suite, str(exc))
    except DistributedJobError as exc:
        return unmeasured_record(spec, run_id, suite, f"parallel job failed: {exc}",
                                 status="failed")
    record["spec"]["cell"] = spec.to_dict()
    return record


def _run_online_cell(spec: CellSpec, run_id: str, suite: str | None,
                     job_dir: Path | None) -> dict:
    """An online cell: the drifting stream of its ``data`` axes and ``online`` section."""
    from bench.job.online import online_and_measure
    from mindrec.data.drifting import DriftingSpec
    run = spec.base_run
    drifting = DriftingSpec(rows=spec.data.rows, vocab=spec.data.vocab,
                            seed=spec.data.seed, zipf_exponent=spec.data.zipf_exponent,
                            drift=run.online.drift,
                            new_value_fraction=run.online.new_value_fraction)
    if job_dir is not None:
        job_dir.mkdir(parents=True, exist_ok=True)
    record = online_and_measure(run, drifting, run_id=run_id, cell_id=spec.cell_id,
                                measurement_id=spec.measurement_id, preset=spec.preset,
                                suite=suite, work_dir=job_dir)
    record["spec"]["cell"] = spec.to_dict()
    return record


def unmeasured_record(spec: CellSpec, run_id: str, suite: str | None, reason: str,
                      status: str = "skipped") -> dict:
    """A ``skipped`` or ``failed`` record: a cell that produced no measurements."""
    return new_record(run_id=run_id, cell_id=spec.cell_id, suite=suite, status=status,
                      reason=reason, spec=summary_spec(spec))


def summary_spec(spec: CellSpec) -> dict:
    """The record ``spec`` block of a cell that did not run (no dataset measured)."""
    data = spec.data
    return {**spec_block(spec.base_run, dataset=f"synthetic rows={data.rows} "
                         f"vocab={data.vocab} seed={data.seed} threshold={data.threshold}",
                         rows=data.rows, data_vocab=None,
                         table_size=spec.base_run.train.table_size, hardware=spec.hardware,
                         steps=spec.steps, preset=spec.preset,
                         measurement_id=spec.measurement_id, backend=spec.backend),
            "cell": spec.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.job.cell")
    parser.add_argument("--spec", required=True, help="the CellSpec as JSON")
    parser.add_argument("--data", type=Path, help="the cell's dataset (none: an online cell)")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--suite")
    parser.add_argument("--limits", type=Path,
                        help="the run's limits file (its latest start or resume is used)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--job-dir", type=Path, help="parallel cells: the msrun job's files")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="parallel cells: kill the msrun job after this many seconds")
    args = parser.parse_args(argv)
    spec = cell_from_dict(json.loads(args.spec), "--spec")
    limits = read_limits(args.limits).in_force if args.limits else None
    write_record(args.out, run_cell(spec, args.data, args.run_id, args.suite, limits,
                                    args.job_dir, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
