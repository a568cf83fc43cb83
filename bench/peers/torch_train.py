"""Trains and evaluates a PyTorch twin (bench/peers/torch_models.py) as the MindSpore
trainer does: the same batches from the same MindRecord reader in the same order, the
same step timing (mindrec.train.trainer.record_step), the same evaluation."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from bench.job.hardware import Unavailable
from mindrec.config import RunConfig
from mindrec.models.registry import use_sparse
from mindrec.train.trainer import (EVAL_BATCH, EvalResult, TrainResult, batches,
                                   check_timed, next_batch, quality, record_step,
                                   report_progress, table_rows, train_batches)


def torch_device(hardware: str):
    """The torch device of ``hardware``; raises Unavailable where this torch build or
    machine cannot run it."""
    import torch
    if hardware == "cpu":
        return torch.device("cpu")
    if hardware == "gpu":
        if not torch.cuda.is_available():
            raise Unavailable(f"PyTorch {torch.__version__} sees no CUDA device (the peers "
                              f"extra installs the CPU build)")
        return torch.device("cuda")
    raise Unavailable(f"the PyTorch peer runs on cpu and gpu only, not {hardware} "
                      f"(Ascend needs torch_npu, which the peers extra does not install)")


def train_torch(run: RunConfig, data_dir: Path, hardware: str,
                progress: TextIO | None) -> tuple[TrainResult, EvalResult, dict]:
    """Train and evaluate ``run``'s model in PyTorch: (TrainResult, EvalResult, facts of
    the PyTorch side: its optimizers, threads and table bytes)."""
    import torch
    from bench.peers.torch_models import build_torch_model, optimizers, tables

    device = torch_device(hardware)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    torch.manual_seed(run.train.seed)
    rows = table_rows(run, data_dir)
    sparse = use_sparse(run, rows)
    module = build_torch_model(run.model, run.model_config, rows, sparse).to(device)
    opts, variant = optimizers(run.model, module, run.model_config, sparse)
    result = fit_torch(module, opts, run, data_dir, device, progress)
    quality_ = evaluate_torch(module, data_dir, device, run.train.table_size)
    table_mb = sum(t.numel() * t.element_size() for t in tables(module)) / 2**20
    return result, quality_, {
        "variant": f"torch {torch.__version__}, {variant}, {threads} threads",
        "table_mb": table_mb}


def fit_torch(module, opts, run: RunConfig, data_dir: Path, device,
              progress: TextIO | None) -> TrainResult:
    """Train ``module`` with ``opts`` for ``run.train.epochs`` (or ``max_steps``) on the
    batches :func:`mindrec.train.trainer.fit` trains on, timed the same way."""
    import torch
    import torch.nn.functional as F

    cfg = run.train
    module.train()
    result = TrainResult(batch_size=cfg.batch_size)
    started = last_report = time.perf_counter()
    for epoch in range(cfg.epochs):
        epoch_batches = train_batches(run, data_dir, epoch)
        while cfg.max_steps is None or result.steps < cfg.max_steps:
            batch = next_batch(epoch_batches, result)
            if batch is None:
                break
            step_start, cpu_start = time.perf_counter(), time.process_time()
            ids, vals, labels = (torch.from_numpy(a).to(device) for a in batch)
            loss = F.binary_cross_entropy_with_logits(module(ids, vals), labels)
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            record_step(result, time.perf_counter() - step_start,
                        time.process_time() - cpu_start, loss.item(), cfg.warmup_steps)
            last_report = report_progress(progress, run, epoch, result, last_report)
        if cfg.max_steps is not None and result.steps >= cfg.max_steps:
            break
    check_timed(result, run, data_dir)
    result.wall_s = time.perf_counter() - started
    return result


def evaluate_torch(module, data_dir: Path, device, table_size: int | None,
                   split: str = "test") -> EvalResult:
    """AUC and logloss of ``module`` over every row of ``split``."""
    import torch
    module.eval()
    preds, labels = [], []
    with torch.no_grad():
        for ids, vals, lab in batches(data_dir, split, EVAL_BATCH, table_size):
            logits = module(torch.from_numpy(ids).to(device),
                            torch.from_numpy(vals).to(device))
            preds.append(torch.sigmoid(logits)[:, 0].cpu().numpy())
            labels.append(lab[:, 0])
    if not preds:
        raise ValueError(f"{data_dir}: the {split} split is empty")
    return quality(np.concatenate(preds), np.concatenate(labels))
