"""Regression and quality gates: a run checked against a committed baseline.

Throughput is the best over the repeats of a cell (a neighbour on a shared machine can
only slow a run down, so the best run is the closest to what the code can do), both raw
and divided by the sgemm rate (a machine-limit kernel) that each cell measured just before
it trained; a slowdown fails only when both show it. So a uniformly slower machine (raw
drops, the normalised rate does not) and a noisy kernel reading (normalised drops, raw
does not) both pass, while a code regression (both drop) fails. Several runs can be
pooled (``make gate`` re-measures once before it reports a regression). AUC is checked
against the baseline and against the Bayes-optimal AUC of the synthetic test split;
peak memory (anonymous: RSS less mapped files) against the baseline.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.job.limits import read_limits
from bench.results import metric, now_iso, read_records, spec_value, write_atomic

SCHEMA = "mindrec-bench/baseline/1"
PASS, FAIL, NEW = "pass", "FAIL", "new"


@dataclass(frozen=True)
class Thresholds:
    """Allowed changes before a check fails (fractions, AUC points)."""

    max_slowdown: float = 0.25
    max_auc_drop: float = 0.005
    max_memory_growth: float = 0.15
    max_bayes_gap: float = 0.05


@dataclass(frozen=True)
class Check:
    """One gate line: a metric of a cell, baseline against now."""

    cell: str
    metric: str
    baseline: float | None
    now: float | None
    verdict: str
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0) or self.now is None:
            return None
        return self.now / self.baseline


def run_paths(runs_dir: Path, run_id: str) -> tuple[Path, Path]:
    """The record store and limits file of ``run_id``."""
    store = Path(runs_dir) / f"{run_id}.jsonl"
    limits = Path(runs_dir) / f"{run_id}.limits.json"
    for path in (store, limits):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (is {run_id!r} a finished sweep run?)")
    return store, limits


def summarize(records: list[dict], sgemm_gflops: float) -> dict[str, dict]:
    """Per measurement (repeats pooled): best throughput (raw, and per GFLOP/s of the
    cell's own sgemm or else the run's ``sgemm_gflops``); medians of AUC and memory."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        if record["status"] == "ok":
            groups.setdefault(spec_value(record, "measurement_id"), []).append(record)
    return {cell: _pooled(repeats, sgemm_gflops) for cell, repeats in sorted(groups.items())}


_BASELINE_CELL_KEYS = ("repeats", "samples_per_s", "samples_per_gflop", "auc", "bayes_auc",
                       "peak_memory_mb")


def _pooled(repeats: list[dict], sgemm_gflops: float) -> dict:
    """One measurement's repeats: best throughput, medians of AUC and memory."""
    def values(name: str) -> list:
        return [metric(r, name) for r in repeats]

    def sgemm(record: dict) -> float:
        return metric(record, "sgemm_gflops") or sgemm_gflops

    # Anonymous memory (RSS less mapped files) where recorded: see PeakMemorySampler.
    memory = [metric(r, "peak_anon_mb") or metric(r, "peak_rss_mb") for r in repeats]
    return {
        "repeats": len(repeats),
        "samples_per_s": max(values("samples_per_s")),
        "samples_per_gflop": max(metric(r, "samples_per_s") / sgemm(r) for r in repeats),
        "auc": statistics.median(values("auc")),
        "bayes_auc": values("bayes_auc")[0],
        "peak_memory_mb": statistics.median(memory),
    }


def make_baseline(runs_dir: Path, run_id: str) -> dict:
    """A baseline document from a finished run."""
    store, limits_path = run_paths(runs_dir, run_id)
    records = read_records(store)
    limits = read_limits(limits_path).in_force
    cells = summarize(records, limits["sgemm_gflops"])
    if not cells:
        raise ValueError(f"{store}: no ok cells to make a baseline from")
    return {"schema": SCHEMA, "created_at": now_iso(), "run_id": run_id,
            "suite": records[0]["suite"], "git": records[0]["git"], "env": records[0]["env"],
            "limits": limits, "cells": cells}


def write_baseline(path: Path, baseline: dict) -> None:
    """Write a baseline document atomically."""
    write_atomic(path, json.dumps(baseline, indent=2, sort_keys=True) + "\n")


def load_baseline(path: Path) -> dict:
    """Read a baseline document, checking its schema."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such baseline (make one with "
                                f"`mindrec-bench baseline --run ID --out {path}`)")
    try:
        baseline = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}); a truncated "
                         f"or damaged baseline") from None
    if not isinstance(baseline, dict) or baseline.get("schema") != SCHEMA:
        found = baseline.get("schema") if isinstance(baseline, dict) else None
        raise ValueError(f"{path}: schema {found!r}, expected {SCHEMA!r}")
    cells = baseline.get("cells")
    if not isinstance(cells, dict) or not cells:
        raise ValueError(f"{path}: no cells")
    for cell, values in cells.items():
        missing = sorted(set(_BASELINE_CELL_KEYS) - set(values or {}))
        if missing:
            raise ValueError(f"{path}: cell {cell} lacks {', '.join(missing)}")
    return baseline


def compare(baseline: dict, current: dict[str, dict], limits: Thresholds) -> list[Check]:
    """Every check of ``current`` (from :func:`summarize`) against ``baseline``."""
    checks = []
    for cell, base in baseline["cells"].items():
        now = current.get(cell)
        if now is None:
            checks.append(Check(cell, "present", None, None, FAIL, "cell missing from run"))
            continue
        checks.append(_throughput(cell, base, now, 1 - limits.max_slowdown))
        checks.append(_at_least(cell, "auc vs baseline", base["auc"], now["auc"],
                                base["auc"] - limits.max_auc_drop))
        if now["bayes_auc"] is not None:
            checks.append(_at_least(cell, "auc vs Bayes optimum", now["bayes_auc"],
                                    now["auc"], now["bayes_auc"] - limits.max_bayes_gap))
        growth_limit = base["peak_memory_mb"] * (1 + limits.max_memory_growth)
        checks.append(Check(cell, "peak_memory_mb", base["peak_memory_mb"],
                            now["peak_memory_mb"],
                            PASS if now["peak_memory_mb"] <= growth_limit else FAIL,
                            f"limit {growth_limit:,.0f}"))
    for cell in sorted(set(current) - set(baseline["cells"])):
        checks.append(Check(cell, "present", None, None, NEW, "not in the baseline"))
    return checks


def _throughput(cell: str, base: dict, now: dict, min_ratio: float) -> Check:
    raw = now["samples_per_s"] / base["samples_per_s"]
    normalised = now["samples_per_gflop"] / base["samples_per_gflop"]
    slower = raw < min_ratio and normalised < min_ratio
    return Check(cell, "samples/s", base["samples_per_s"], now["samples_per_s"],
                 FAIL if slower else PASS,
                 f"per GFLOP/s ratio {normalised:.3f}; both below {min_ratio:.2f} fails")


def _at_least(cell: str, metric: str, base: float, now: float, floor: float) -> Check:
    return Check(cell, metric, base, now, PASS if now >= floor else FAIL,
                 f"floor {floor:.4g}")


def format_checks(checks: list[Check]) -> str:
    """The gate table: cell, metric, baseline, now, ratio, verdict."""
    rows = [(c.cell, c.metric, _fmt(c.baseline), _fmt(c.now),
             "" if c.ratio is None else f"{c.ratio:.3f}", c.verdict, c.note) for c in checks]
    return tabulate(rows, headers=["cell", "metric", "baseline", "now", "ratio", "verdict",
                                   "note"])


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def gate(baseline_path: Path, runs_dir: Path, run_ids: list[str],
         limits: Thresholds) -> tuple[list[Check], bool]:
    """Checks of the pooled runs ``run_ids`` against the baseline, and whether all passed."""
    baseline = load_baseline(baseline_path)
    records = []
    for run_id in run_ids:
        store, limits_path = run_paths(runs_dir, run_id)
        sgemm = read_limits(limits_path).in_force["sgemm_gflops"]
        for record in read_records(store):
            if record["status"] == "ok" and metric(record, "sgemm_gflops") is None:
                record["metrics"]["sgemm_gflops"] = sgemm
            records.append(record)
    checks = compare(baseline, summarize(records, sgemm), limits)
    return checks, all(c.verdict != FAIL for c in checks)
