"""Runs one training job (in this process, or as an msrun job of workers) and turns
what it measured into a record."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import TextIO

from bench.job.cache import cache_metrics, cache_services
from bench.job.hardware import select_device
from bench.job.limits import sgemm_gflops
from bench.job.measure import OtherLoad, PeakMemorySampler, nvml_used_mb_probe
from bench.job.parallel import run_parallel
from bench.peers import DEFAULT_BACKEND
from bench.results import new_record, new_run_id, now_iso
from mindrec.config import ParallelMode, RunConfig
from mindrec.data.dataset import open_dataset
from mindrec.embedding.cache.device import DeviceCache
from mindrec.embedding.tables import table_bytes
from mindrec.models.registry import flops_per_sample, use_sparse
from mindrec.train.trainer import EVAL_BATCH, build, evaluate, fit, table_rows


def train_and_measure(run: RunConfig, data_dir: str | Path, *, hardware: str = "cpu",
                      run_id: str | None = None, cell_id: str | None = None,
                      measurement_id: str | None = None, preset: str | None = None,
                      suite: str | None = None, limits: dict | None = None,
                      checkpoint_path: str | Path | None = None,
                      resume_from: str | Path | None = None,
                      progress: TextIO | None = sys.stderr, job_dir: str | Path | None = None,
                      timeout_s: float = 3600.0, backend: str = DEFAULT_BACKEND) -> dict:
    """Train ``run`` on ``data_dir``, evaluate on its test split, return a result record.

    ``limits`` (the run's measurement in force, :func:`bench.job.limits.read_limits`) adds
    the roofline fraction. A
    parallel run is an msrun job whose files go to ``job_dir`` (a temporary directory
    when None) and which is killed after ``timeout_s``. ``cell_id`` defaults to the model
    and dataset names, ``measurement_id`` (what repeats share) to ``cell_id``; ``preset``
    is recorded as given. ``backend`` ``torch`` trains the model's PyTorch twin
    (bench/peers) on the same batches instead.

    Raises :class:`bench.job.hardware.Unavailable` when ``hardware`` cannot be selected, and
    :class:`bench.job.launcher.DistributedJobError` when a parallel job fails.
    """
    data_dir = Path(data_dir)
    meta = open_dataset(data_dir)
    parallel = run.parallel.mode is not ParallelMode.STANDALONE
    if parallel and (checkpoint_path is not None or resume_from is not None):
        raise ValueError("--checkpoint and --resume are for standalone runs (each worker of "
                         "a parallel run holds a different shard)")
    started_at = now_iso()
    peer = backend != DEFAULT_BACKEND
    device = None if peer else select_device(hardware)
    # The same kernel as the run's limits, measured here just before training: the gate
    # normalises throughput by the machine's state at this moment, not at run start.
    cell_sgemm = sgemm_gflops(repeats=10)
    peer_variant = None
    with OtherLoad() as load:
        if peer:
            result, quality, memory, peer_variant = _train_peer(run, data_dir, hardware,
                                                                progress)
        elif parallel:
            result, quality, memory = _train_parallel(run, data_dir, device, job_dir,
                                                      timeout_s)
        else:
            result, quality, memory = _train_standalone(run, data_dir, device, hardware,
                                                        checkpoint_path, resume_from,
                                                        progress, job_dir)
    rows = table_rows(run, data_dir)
    flops = flops_per_sample(run)
    metrics = {
        "samples_per_s": result.samples_per_s,
        "samples_per_cpu_s": result.samples_per_cpu_s,
        "step_ms_p50": result.step_ms(50),
        "step_ms_p90": result.step_ms(90),
        "compile_s": result.compile_s,
        "input_s": result.input_s,
        "train_wall_s": result.wall_s,
        **memory,
        "train_loss_first": result.losses[0],
        "train_loss_last": result.losses[-1],
        "auc": quality.auc,
        "logloss": quality.logloss,
        "eval_rows": quality.rows,
        "bayes_auc": meta.get("bayes_auc"),
        "flops_per_sample": flops,
        "sgemm_gflops": cell_sgemm,
        "other_cpu_fraction": load.other_cpu_fraction,
        "load_avg_1m": load.load_avg_1m,
    }
    if result.table_stats is not None:
        metrics.update(hash_metrics(result.table_stats))
    if limits is not None:
        ceiling = limits["sgemm_gflops"] * 1e9 / (3.0 * flops)
        metrics["roofline_samples_per_s"] = ceiling
        metrics["roofline_fraction"] = result.samples_per_s / ceiling
    cell_id = cell_id or f"{run.model}-{data_dir.name}"
    spec = spec_block(run, dataset=str(data_dir), rows=int(meta["rows"]["train"]),
                      data_vocab=int(meta["vocab_size"]), table_size=rows, hardware=hardware,
                      steps=result.steps, preset=preset,
                      measurement_id=measurement_id or cell_id, backend=backend)
    spec["sparse"] = use_sparse(run, rows)
    if peer_variant is not None:
        spec["peer_variant"] = peer_variant
    return new_record(run_id=run_id or new_run_id(), cell_id=cell_id, suite=suite,
                      spec=spec, metrics=metrics, started_at=started_at)


def spec_block(run: RunConfig, *, dataset: str, rows: int, data_vocab: int | None,
               table_size: int | None, hardware: str, steps: int | None,
               preset: str | None, measurement_id: str,
               backend: str = DEFAULT_BACKEND) -> dict:
    """The record's ``spec`` block of ``run`` (bench/results.py SPEC), with the facts of
    the dataset and the run that the config alone does not hold."""
    spec = {
        "model": run.model, "preset": preset, "dataset": dataset, "rows": rows,
        "data_vocab": data_vocab, "table_size": table_size,
        "emb_dim": run.model_config.emb_dim, "batch_size": run.train.batch_size,
        "embedding": run.embedding.kind.value, "mode": run.parallel.mode.value,
        "workers": run.parallel.workers, "hardware": hardware, "steps": steps,
        "seed": run.train.seed, "epochs": run.train.epochs,
        "permit_filter_value": run.embedding.permit_filter_value,
        "evict_filter_value": run.embedding.evict_filter_value,
        "capacity": run.embedding.capacity, "measurement_id": measurement_id,
        "backend": backend, "run_config": run.to_dict(),
    }
    cache = run.cache
    if cache.enabled:
        sized = cache if data_vocab is None else cache.sized(data_vocab)
        spec.update(cache_device_rows=sized.device_rows,
                    cache_device_fraction=cache.device_fraction, cache_tiers=cache.tiers,
                    cache_policy=cache.policy.value, cache_lookahead=cache.lookahead)
    if run.online.enabled:
        spec.update(online_rate=run.online.rate,
                    online_publish_every_s=run.online.publish_every_s)
    return spec


def _train_standalone(run: RunConfig, data_dir: Path, device: str, hardware: str,
                      checkpoint_path: str | Path | None, resume_from: str | Path | None,
                      progress: TextIO | None, work_dir: str | Path | None = None):
    """Train and evaluate in this process: (TrainResult, EvalResult, memory and cache
    metrics). A cache's services (its server, its SSD directory in ``work_dir``) live as
    long as the run."""
    probe = nvml_used_mb_probe() if hardware == "gpu" else None
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    with (cache_services(run, work_dir) as services,
          PeakMemorySampler(device_probe=probe) as sampler):
        network = build(services.run, data_dir, device)
        if isinstance(network.hash_index, DeviceCache):
            network.hash_index.record_trace()  # replayed offline for Belady's optimum
        result = fit(network, services.run, data_dir, progress=progress,
                     checkpoint_path=checkpoint_path, resume_from=resume_from)
        # Through a cache, an evaluation batch's keys must fit the device tier as a
        # training batch's do.
        eval_batch = run.train.batch_size if run.cache.enabled else EVAL_BATCH
        quality = evaluate(network, data_dir, batch_size=eval_batch,
                           table_size=run.train.table_size)
        cache = network.hash_index if isinstance(network.hash_index, DeviceCache) else None
        extra = {} if cache is None else cache_metrics(cache, services.server)
        if cache is not None:
            cache.chain.close()
    return result, quality, {
        "peak_rss_mb": sampler.peak_rss_mb, "peak_anon_mb": sampler.peak_anon_mb,
        "peak_device_mb": sampler.peak_device_mb,
        "peak_rss_mb_per_worker": sampler.peak_rss_mb,
        "peak_anon_mb_per_worker": sampler.peak_anon_mb,
        "table_mb_per_worker": table_bytes(network) / 2**20, **extra}


def _train_peer(run: RunConfig, data_dir: Path, hardware: str, progress: TextIO | None):
    """Train and evaluate the model's PyTorch twin in this process: (TrainResult,
    EvalResult, memory metrics, the PyTorch side's optimizers and threads)."""
    from bench.peers.torch_train import train_torch
    probe = nvml_used_mb_probe() if hardware == "gpu" else None
    with PeakMemorySampler(device_probe=probe) as sampler:
        result, quality, facts = train_torch(run, data_dir, hardware, progress)
    return result, quality, {
        "peak_rss_mb": sampler.peak_rss_mb, "peak_anon_mb": sampler.peak_anon_mb,
        "peak_device_mb": sampler.peak_device_mb,
        "peak_rss_mb_per_worker": sampler.peak_rss_mb,
        "peak_anon_mb_per_worker": sampler.peak_anon_mb,
        "table_mb_per_worker": facts["table_mb"]}, facts["variant"]


def _train_parallel(run: RunConfig, data_dir: Path, device: str,
                    job_dir: str | Path | None, timeout_s: float):
    """Train and evaluate as an msrun job: (TrainResult, EvalResult, memory metrics)."""
    with tempfile.TemporaryDirectory(prefix="mindrec-job-") as scratch:
        job = run_parallel(run, data_dir, Path(job_dir or scratch), timeout_s, device=device)
    return job.train, job.quality, {
        "peak_rss_mb": job.peak_rss_mb, "peak_anon_mb": job.peak_anon_mb,
        "peak_device_mb": None,
        "peak_rss_mb_per_worker": job.per_worker("peak_rss_mb"),
        "peak_anon_mb_per_worker": job.per_worker("peak_anon_mb"),
        "table_mb_per_worker": job.per_worker("table_mb"), "launch_s": job.launch_s}


def hash_metrics(stats: dict) -> dict:
    """Record metrics of a hash table's end-of-training counters (IndexStats)."""
    return {
        "hash_live_rows": stats["live_rows"], "hash_admitted": stats["admitted"],
        "hash_evicted": stats["evicted"], "hash_candidates": stats["candidates"],
        "hash_rejected_full": stats["rejected_full"],
        "hash_default_fraction": stats["default_lookups"] / max(1, stats["lookups"]),
        "hash_index_mb": stats["index_bytes"] / 2**20,
    }
