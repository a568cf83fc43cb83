"""Runs a parallel (data_parallel or hybrid) training job through msrun and merges what
its workers measured (see bench/job/worker.py).

Steps are synchronous, so a step takes as long as its slowest worker: step times are
the element-wise maximum over workers, and throughput counts the global batch. The
job's memory is the sum of the workers' peaks (msrun's scheduler, a MindSpore process
doing no training, is not counted); the per-worker figure is the largest worker's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mindrec.config import RunConfig
from bench.job.launcher import launch
from mindrec.train.trainer import EvalResult, TrainResult, quality

WORKER_SCRIPT = Path(__file__).resolve().parent / "worker.py"


@dataclass
class ParallelResult:
    """The merged measurements of one parallel job."""

    train: TrainResult
    quality: EvalResult
    launch_s: float  # msrun start to exit, training and evaluation included
    workers: list[dict] = field(default_factory=list)  # each worker's own rank_<r>.json

    @property
    def peak_rss_mb(self) -> float:
        return sum(w["peak_rss_mb"] for w in self.workers)

    @property
    def peak_anon_mb(self) -> float:
        return sum(w["peak_anon_mb"] for w in self.workers)

    def per_worker(self, key: str) -> float:
        """The largest worker's value of ``key`` (e.g. ``peak_rss_mb``, ``table_mb``)."""
        return max(w[key] for w in self.workers)


def run_parallel(run: RunConfig, data_dir: Path, job_dir: Path, timeout_s: float,
                 save_params: bool = False, init_from: Path | None = None,
                 device: str = "CPU") -> ParallelResult:
    """Train and evaluate ``run`` on ``run.parallel.workers`` msrun workers, optionally
    starting from a standalone checkpoint and saving each worker's parameters.

    Raises :class:`mindrec.train.distributed.DistributedJobError` when a worker dies
    (within seconds, with its log tail) or the job outlives ``timeout_s``.
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "run.json").write_text(json.dumps(run.to_dict()))
    (job_dir / "data").write_text(str(Path(data_dir).resolve()))
    (job_dir / "device").write_text(device)
    args = [str(WORKER_SCRIPT), "--job", str(job_dir.resolve())]
    if save_params:
        args.append("--save-params")
    if init_from is not None:
        args += ["--init-from", str(Path(init_from).resolve())]
    launched = launch(args, run.parallel.workers, job_dir / "logs", timeout_s)
    ranks = range(run.parallel.workers)
    workers = [json.loads((job_dir / f"rank_{r}.json").read_text()) for r in ranks]
    outputs = [np.load(job_dir / f"rank_{r}.npz") for r in ranks]
    train = TrainResult(
        batch_size=run.train.batch_size, steps=workers[0]["steps"],
        compile_s=max(w["compile_s"] for w in workers),
        step_s=np.max([w["step_s"] for w in workers], axis=0).tolist(),
        step_cpu_s=np.sum([w["step_cpu_s"] for w in workers], axis=0).tolist(),
        input_s=max(w["input_s"] for w in workers), wall_s=max(w["wall_s"] for w in workers),
        losses=np.mean([w["losses"] for w in workers], axis=0).tolist())
    merged = quality(np.concatenate([o["predictions"] for o in outputs]),
                     np.concatenate([o["labels"] for o in outputs]))
    return ParallelResult(train=train, quality=merged, launch_s=launched.elapsed_s,
                          workers=workers)
