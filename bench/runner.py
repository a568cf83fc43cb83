"""Runs one training job in this process and turns what it measured into a record."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from bench.measure import PeakRSSSampler, environment, git_state
from bench.results import SCHEMA, new_run_id, now_iso
from mindrec.config import RunConfig
from mindrec.data.convert import load_meta
from mindrec.models.registry import use_sparse
from mindrec.train import checkpoint
from mindrec.train.trainer import build, evaluate, fit


def train_and_measure(run: RunConfig, data_dir: str | Path, *, run_id: str | None = None,
                      cell_id: str | None = None, suite: str | None = None,
                      checkpoint_path: str | Path | None = None,
                      progress: TextIO | None = sys.stderr) -> dict:
    """Train ``run`` on ``data_dir``, evaluate on its test split, return a result record."""
    data_dir = Path(data_dir)
    meta = load_meta(data_dir)
    started_at = now_iso()
    with PeakRSSSampler() as sampler:
        network = build(run, data_dir)
        result = fit(network, run, data_dir, progress=progress)
        quality = evaluate(network, data_dir)
    if checkpoint_path is not None:
        checkpoint.save(network, checkpoint_path)
    run_id = run_id or new_run_id()
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "cell_id": cell_id or f"{run.model}-{data_dir.name}",
        "suite": suite,
        "started_at": started_at,
        "status": "ok",
        "reason": None,
        "git": git_state(Path(__file__).resolve().parent),
        "env": environment(),
        "spec": {
            "model": run.model,
            "dataset": str(data_dir),
            "rows": int(meta["rows"]["train"]),
            "vocab_size": int(meta["vocab_size"]),
            "emb_dim": run.model_config.emb_dim,
            "batch_size": run.train.batch_size,
            "embedding": "static",
            "mode": "standalone",
            "workers": 1,
            "hardware": "cpu",
            "steps": result.steps,
            "seed": run.train.seed,
            "epochs": run.train.epochs,
            "sparse": use_sparse(run.train.sparse, int(meta["vocab_size"])),
        },
        "metrics": {
            "samples_per_s": result.samples_per_s,
            "step_ms_p50": result.step_ms(50),
            "step_ms_p90": result.step_ms(90),
            "compile_s": result.compile_s,
            "input_s": result.input_s,
            "train_wall_s": result.wall_s,
            "peak_rss_mb": sampler.peak_mb,
            "peak_device_mb": None,
            "train_loss_first": result.losses[0],
            "train_loss_last": result.losses[-1],
            "auc": quality.auc,
            "logloss": quality.logloss,
            "eval_rows": quality.rows,
            "bayes_auc": meta.get("bayes_auc"),
        },
    }

