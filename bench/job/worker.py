"""One worker of a parallel run, started by msrun: ``python bench/job/worker.py --job DIR``.

``DIR/run.json`` holds the run (``RunConfig.to_dict``), ``DIR/data`` names the
dataset and ``DIR/device`` the MindSpore device (CPU, GPU, Ascend). Each worker trains
on its slice of every global batch, predicts its slice of the test split, and writes
``rank_<r>.json`` (its measurements) and ``rank_<r>.npz`` (its test predictions and
labels); :mod:`bench.job.parallel` merges them into one record.
With ``--save-params`` it also saves its parameters to ``rank_<r>.safetensors``; with
``--init-from CKPT`` it starts from a standalone checkpoint instead of its own random
initialisation (hybrid workers take their rows of each full table).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from bench.job.lifetime import die_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/job/worker.py")
    parser.add_argument("--job", type=Path, required=True, help="the job directory")
    parser.add_argument("--save-params", action="store_true")
    parser.add_argument("--init-from", type=Path,
                        help="start from this standalone checkpoint (.safetensors)")
    args = parser.parse_args(argv)
    die_with_parent()  # with msrun, the scheduler and the workers die (before MindSpore loads)
    # msrun runs this script in its scheduler too, which init_worker() never returns from.
    from mindrec.train.distributed import configure_parallel, init_worker
    device = (args.job / "device").read_text().strip()
    rank, workers = init_worker(device)

    from bench.job.measure import PeakMemorySampler
    from bench.results import write_atomic
    from mindrec.config import ParallelMode, run_config_from_dict
    from mindrec.embedding.tables import table_bytes
    from mindrec.train import checkpoint
    from mindrec.train.trainer import build, fit, predict_split

    job = args.job
    run = run_config_from_dict(json.loads((job / "run.json").read_text()))
    configure_parallel(run.parallel.mode is ParallelMode.HYBRID, device, workers)
    data = Path((job / "data").read_text().strip())
    with PeakMemorySampler() as memory:
        network = build(run, data, device, rank)
        if args.init_from:
            checkpoint.load(network, args.init_from)
        result = fit(network, run, data, progress=sys.stderr if rank == 0 else None, rank=rank)
        predictions, labels = predict_split(network, data, table_size=run.train.table_size,
                                            rank=rank, workers=workers)
    np.savez(job / f"rank_{rank}.npz", predictions=predictions, labels=labels)
    if args.save_params:
        checkpoint.save(network, job / f"rank_{rank}.safetensors")
    write_atomic(job / f"rank_{rank}.json", json.dumps({
        "rank": rank, "workers": workers, "steps": result.steps, "step_s": result.step_s,
        "step_cpu_s": result.step_cpu_s, "compile_s": result.compile_s,
        "input_s": result.input_s, "wall_s": result.wall_s, "losses": result.losses,
        "peak_rss_mb": memory.peak_rss_mb, "peak_anon_mb": memory.peak_anon_mb,
        "table_mb": table_bytes(network) / 2**20}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
