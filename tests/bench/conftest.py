"""Fixtures of the harness tests: hand-made result records (one factory for every test)."""
from __future__ import annotations

import copy

import pytest

from bench.results import SCHEMA, validate

ENV = {"python": "3.11.7", "mindspore": "2.10.0", "numpy": "1.26.4", "os": "Linux",
       "cpu_model": "AMD EPYC", "cores": 2, "ram_gb": 23.4, "accelerator": "none",
       "gpus": []}
SPEC = {"model": "dcn", "preset": "cpu-small", "dataset": "synthetic", "rows": 300_000,
        "data_vocab": 32_000, "table_size": 32_000, "emb_dim": 16, "batch_size": 1000,
        "embedding": "static", "mode": "standalone", "workers": 1, "hardware": "cpu",
        "steps": 270, "seed": 0}
METRICS = {"samples_per_s": 10_000.0, "step_ms_p50": 100.0, "step_ms_p90": 110.0,
           "compile_s": 1.2, "peak_rss_mb": 800.0, "peak_device_mb": None, "auc": 0.78,
           "logloss": 0.45, "bayes_auc": 0.80}


def make_record(*, run_id: str = "r1", cell_id: str | None = None, status: str = "ok",
                reason: str | None = None, suite: str | None = "quick",
                spec: dict | None = None, metrics: dict | None = None) -> dict:
    """A valid record; ``spec`` and ``metrics`` update the defaults (metrics are dropped
    for a record that is not ok). The measurement id is the cell id less ``-repN``."""
    spec = {**SPEC, **(spec or {})}
    cell_id = cell_id or f"{spec['model']}-{spec['hardware']}-t{spec['table_size']}"
    spec.setdefault("measurement_id", cell_id.split("-rep")[0])
    record = {"schema": SCHEMA, "run_id": run_id, "cell_id": cell_id, "suite": suite,
              "started_at": "2026-11-29T00:00:00+00:00", "status": status,
              "reason": reason if status == "ok" or reason else f"{status} for a test",
              "git": {"commit": "0123456789abcdef", "dirty": False},
              "env": copy.deepcopy(ENV), "spec": spec,
              "metrics": {**METRICS, **(metrics or {})} if status == "ok" else {}}
    return validate(record)


@pytest.fixture
def record_factory():
    """:func:`make_record`: ``record_factory(status=..., spec={...}, metrics={...})``."""
    return make_record


# One small suite that makes every kind of record a sweep writes: ok (static, its PyTorch
# twin, a larger table, hash tables, hash tables through the cache with all its tiers, a
# 2-worker hybrid job), skipped (absent hardware) and failed (a batch larger than the
# data). Run once per session and shared by the tests that read it.
TINY_SUITE = """
timeout_s: 300
fixed:
  data: {rows: 4000, vocab: 2000}
  train: {batch_size: 200, max_steps: 8, warmup_steps: 2}
cells:
  - {model: wide_deep}
  - {model: wide_deep, backend: torch}
  - {model: dcn, train.table_size: 50000}
  - {model: wide_deep, embedding: {kind: hash, permit_filter_value: 2, evict_filter_value: 5}}
  - {model: wide_deep, parallel: {mode: hybrid, workers: 2}}
  - {model: wide_deep, embedding.kind: hash,
     cache: {device_rows: 1200, tiers: host+remote+ssd, host_rows: 200}}
  - {model: dcn, hardware: gpu}
  - {model: dcn, hardware: ascend}
  - {model: dcn, train.batch_size: 100000}
"""


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """(results dir, record store) of :data:`TINY_SUITE`, swept once per session."""
    from bench.suite import load_suite
    from bench.sweep import run_sweep
    root = tmp_path_factory.mktemp("tiny-sweep")
    suite = root / "tiny.yaml"
    suite.write_text(TINY_SUITE)
    results = root / "results"
    return results, run_sweep(load_suite(str(suite)), results, run_id="tiny")

