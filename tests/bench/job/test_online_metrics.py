"""The online cell's metrics, on hand-made logs: freshness follows each row to the first
version served that holds it; lag, throughput and quality per window."""
from __future__ import annotations

import numpy as np
import pytest

from bench.job import online_metrics
from bench.job.online_metrics import deltas, freshness, quality, serving_latency, throughput


def _rows(n=1000, batch=100):
    """``n`` rows in batches: event at 10 ms per row, taken 50 ms after the batch's last
    event, trained 20 ms later."""
    rows = np.arange(n)
    event = 10 * rows
    batch_end = (rows // batch + 1) * batch * 10
    taken = batch_end + 50
    return {"rows": rows, "event_ms": event, "taken_ms": taken, "trained_ms": taken + 20,
            "labels": (rows % 3 == 0).astype(np.float32),
            "online": np.linspace(0, 1, n).astype(np.float32),
            "frozen": np.full(n, np.nan, np.float32)}


def test_freshness_follows_each_row_to_the_first_version_served(monkeypatch):
    monkeypatch.setattr(online_metrics, "FRESHNESS_SAMPLE", 1)
    rows = _rows()
    # versions start exporting 5 ms after every second batch is trained, take 30 ms
    starts = [2 * (k + 1) * 1000 + 70 + 5 for k in range(5)]
    versions = [{"version": k + 1, "publish_start_ms": s, "published_ms": s + 30}
                for k, s in enumerate(starts)]
    seen = {1: starts[0] + 100, 2: starts[1] + 100, 4: starts[3] + 100, 5: starts[4] + 100}
    out = freshness(rows, versions, seen)
    assert out["online_rows_followed"] == 1000
    # row 0: event 0, batch taken at 1050, trained 1070; in version 1 (export at 2075),
    # which serving answered with at 2175
    assert out["online_freshness_total_p99_s"] == pytest.approx(
        np.percentile(_expected_total(rows, starts, seen), 99) / 1e3)
    assert out["online_freshness_lag_p50_s"] == pytest.approx(
        np.percentile(rows["taken_ms"] - rows["event_ms"], 50) / 1e3)
    assert out["online_freshness_train_p99_s"] == pytest.approx(0.02)
    assert out["online_freshness_apply_p50_s"] == pytest.approx(0.07)


def _expected_total(rows, starts, seen):
    """By hand: version 3 was never seen, so its rows are served by version 4."""
    served = []
    for trained, event in zip(rows["trained_ms"], rows["event_ms"]):
        v = next(k for k, s in enumerate(starts) if s >= trained) + 1
        while v not in seen:
            v += 1
        served.append(seen[v] - event)
    return np.array(served)


def test_rows_after_the_last_version_are_not_followed(monkeypatch):
    monkeypatch.setattr(online_metrics, "FRESHNESS_SAMPLE", 1)
    rows = _rows()
    versions = [{"version": 1, "publish_start_ms": 3075, "published_ms": 3100}]
    out = freshness(rows, versions, {1: 3200})
    assert out["online_rows_followed"] == 300  # the first three batches


def test_throughput_and_a_bounded_lag():
    out = throughput(_rows(n=10_000))
    assert out["samples_per_s"] == pytest.approx(100, rel=0.02)  # one row per 10 ms
    assert out["step_ms_p50"] == 20
    assert out["online_lag_growth_s"] == pytest.approx(0, abs=0.02)
    growing = _rows(n=10_000)
    growing["taken_ms"] = growing["taken_ms"] + growing["rows"]  # falls 1 ms/row behind
    assert throughput(growing)["online_lag_growth_s"] > 5


def test_quality_per_window_with_the_frozen_model_after_it_froze():
    rng = np.random.default_rng(0)
    n = 80_000
    p = rng.uniform(0.05, 0.6, n)
    labels = (rng.random(n) < p).astype(np.float32)
    # frozen after the first fifth, predicting every fourth row from then on
    scored = (np.arange(n) >= n // 5) & (np.arange(n) % 4 == 0)
    frozen = np.where(scored, p[::-1], np.nan).astype(np.float32)
    rows = {"rows": np.arange(n)[::-1].copy(), "labels": labels[::-1].copy(),
            "online": p[::-1].astype(np.float32), "frozen": frozen[::-1].copy()}
    out = quality(rows, p[::-1].copy())
    assert len(out["online_auc_curve"]) == online_metrics.QUALITY_WINDOWS
    assert out["online_auc_curve"] == pytest.approx(out["online_bayes_auc_curve"], abs=1e-6)
    assert out["online_frozen_auc_curve"][:2] == [None, None]
    assert out["online_frozen_auc"] < out["auc"] - 0.05  # reversed p: no skill
    assert out["auc"] == out["online_auc_curve"][-1]


def test_deltas_and_serving_latency_while_applying():
    versions = [{"version": 1, "kind": "full", "rows": 900, "bytes": 9 << 20, "publish_s": 0.5,
                 "published_ms": 1000},
                {"version": 2, "kind": "delta", "rows": 100, "bytes": 1 << 20,
                 "publish_s": 0.1, "published_ms": 2000},
                {"version": 3, "kind": "delta", "rows": 300, "bytes": 3 << 20,
                 "publish_s": 0.2, "published_ms": 3000}]
    out = deltas(versions)
    assert (out["online_versions"], out["online_delta_rows_p50"]) == (3, 200)
    assert out["online_delta_mb_p50"] == pytest.approx(2.0)
    samples = [(t, 50.0 if 2000 <= t < 2100 else 1.0) for t in range(1000, 4000, 10)]
    latency = serving_latency(samples, versions, {1: 1100, 2: 2100, 3: 3100})
    assert latency["serving_p99_ms_applying"] == 50.0
    assert latency["serving_p99_ms"] == 1.0
