"""The record metrics of an online cell, from what its processes logged: the trainer's
rows (``progressive-*.npz``: event, taken and trained times, predictions), its versions
(``online.json``), the times the serving process was first seen answering with each
version, and the latency of predictions sampled meanwhile.

Freshness of a row: from its event time to the moment serving first answers with a
version trained on it. Version ``v`` holds the rows trained before its export started
(the trainer is one thread), so a row's version is the first whose export started at or
after the row was trained. The time splits into consumer lag (event -> batch taken),
training (taken -> trained), waiting for and exporting a version (trained -> published)
and the serving process's apply (published -> answering).
"""
from __future__ import annotations

import numpy as np

from mindrec.metrics import log_loss, roc_auc

FRESHNESS_SAMPLE = 100  # every this many rows is followed through
QUALITY_WINDOWS = 10
WARMUP_SHARE = 0.1  # rows left out of the sustained rate (compile, first steps)
MIN_FROZEN_ROWS = 1000


def freshness(rows: dict[str, np.ndarray], versions: list[dict],
              first_seen_ms: dict[int, int]) -> dict:
    """Freshness p50/p99 and its parts, seconds (see the module docstring)."""
    sample = {name: values[::FRESHNESS_SAMPLE] for name, values in rows.items()}
    starts = np.array([v["publish_start_ms"] for v in versions], np.int64)
    published = np.array([v["published_ms"] for v in versions], np.int64)
    seen = _first_seen_at_or_after([v["version"] for v in versions], first_seen_ms)
    which = np.searchsorted(starts, sample["trained_ms"], side="left")  # each row's version
    followed = which < len(versions)
    followed[followed] = seen[which[followed]] >= 0  # ... and serving answered with it
    which = which[followed]
    event, taken, trained = (sample[name][followed]
                             for name in ("event_ms", "taken_ms", "trained_ms"))
    served, done = seen[which], published[which]
    parts = {"lag": taken - event, "train": trained - taken, "publish": done - trained,
             "apply": served - done, "total": served - event}
    out = {"online_rows_followed": int(followed.sum())}
    for name, ms in parts.items():
        if len(ms):
            out[f"online_freshness_{name}_p50_s"] = float(np.percentile(ms, 50)) / 1e3
            out[f"online_freshness_{name}_p99_s"] = float(np.percentile(ms, 99)) / 1e3
    return out


def _first_seen_at_or_after(versions: list[int], first_seen_ms: dict[int, int]) -> np.ndarray:
    """For each version, when serving first answered with it or a later one (-1: never)."""
    seen = np.full(len(versions), -1, np.int64)
    earliest = -1
    for i in range(len(versions) - 1, -1, -1):
        t = first_seen_ms.get(versions[i], -1)
        if t >= 0 and (earliest < 0 or t < earliest):
            earliest = t
        seen[i] = earliest
    return seen


def throughput(rows: dict[str, np.ndarray]) -> dict:
    """Sustained rows/s (after the first WARMUP_SHARE of rows; as ``samples_per_s``), the
    time of a step (predict and train one batch; the first is the compile) and the
    consumer lag."""
    trained = np.sort(rows["trained_ms"])
    start = trained[int(WARMUP_SHARE * len(trained))]
    span_s = (trained[-1] - start) / 1e3
    steady = trained >= start
    lag_s = (rows["taken_ms"] - rows["event_ms"]) / 1e3
    by_time = np.argsort(rows["taken_ms"], kind="stable")
    curve = _window_medians(lag_s[by_time], QUALITY_WINDOWS)
    steps = np.unique(np.stack([rows["taken_ms"], rows["trained_ms"]], axis=1), axis=0)
    step_ms = (steps[:, 1] - steps[:, 0]).astype(np.float64)
    return {"samples_per_s": float(steady.sum() / span_s) if span_s > 0 else None,
            "step_ms_p50": float(np.percentile(step_ms[1:], 50)),
            "step_ms_p90": float(np.percentile(step_ms[1:], 90)),
            "compile_s": float(step_ms[0]) / 1e3,
            "online_lag_p50_s": float(np.percentile(lag_s, 50)),
            "online_lag_p99_s": float(np.percentile(lag_s, 99)),
            "online_lag_curve": curve,
            # median lag of the last tenth minus that of the second: ~0 when bounded
            "online_lag_growth_s": curve[-1] - curve[1] if len(curve) > 2 else None}


def quality(rows: dict[str, np.ndarray], bayes_p: np.ndarray) -> dict:
    """Progressive AUC of the online and the frozen model and the Bayes-optimal AUC, per
    window of the stream (row order); ``bayes_p`` is the true click probability of each
    row of ``rows`` (same order). The frozen model's AUC is over the rows it predicted
    (NaN elsewhere), when a window has at least MIN_FROZEN_ROWS of them. The last
    window's are the record's ``auc``, ``logloss``, ``bayes_auc`` and
    ``online_frozen_auc``."""
    order = np.argsort(rows["rows"], kind="stable")
    labels = rows["labels"][order]
    online, frozen, p = rows["online"][order], rows["frozen"][order], bayes_p[order]
    curves = {"online": [], "frozen": [], "bayes": []}
    last = np.array_split(np.arange(len(order)), QUALITY_WINDOWS)[-1]
    for part in np.array_split(np.arange(len(order)), QUALITY_WINDOWS):
        y = labels[part]
        both = y.min() != y.max()
        curves["online"].append(roc_auc(y, online[part]) if both else None)
        curves["bayes"].append(roc_auc(y, p[part]) if both else None)
        scored = ~np.isnan(frozen[part])  # the frozen model predicts some batches only
        y_scored = y[scored]
        enough = scored.sum() >= MIN_FROZEN_ROWS and y_scored.min() != y_scored.max()
        curves["frozen"].append(roc_auc(y_scored, frozen[part][scored]) if enough else None)
    return {"online_auc_curve": curves["online"], "online_frozen_auc_curve": curves["frozen"],
            "online_bayes_auc_curve": curves["bayes"],
            "auc": curves["online"][-1], "logloss": log_loss(labels[last], online[last]),
            "bayes_auc": curves["bayes"][-1], "online_frozen_auc": curves["frozen"][-1]}


def deltas(versions: list[dict]) -> dict:
    """Sizes of the published deltas (full versions apart) and the time to publish."""
    changed = [v for v in versions if v["kind"] == "delta"]
    out = {"online_versions": len(versions),
           "online_publish_s_p50": float(np.median([v["publish_s"] for v in versions]))
           if versions else None}
    if changed:
        out["online_delta_rows_p50"] = float(np.median([v["rows"] for v in changed]))
        out["online_delta_mb_p50"] = float(np.median([v["bytes"] for v in changed])) / 2**20
    return out


def serving_latency(samples: list[tuple[int, float]], versions: list[dict],
                    first_seen_ms: dict[int, int]) -> dict:
    """p99 latency of the prediction probes (sent at ms, took ms), apart for those sent
    while a published version was being applied (published -> first answered with)."""
    if not samples:
        return {}
    sent = np.array([s[0] for s in samples], np.int64)
    took = np.array([s[1] for s in samples], np.float64)
    seen = _first_seen_at_or_after([v["version"] for v in versions], first_seen_ms)
    applying = np.zeros(len(sent), bool)
    for v, t in zip(versions, seen):
        end = t if t >= 0 else np.iinfo(np.int64).max
        applying |= (sent >= v["published_ms"]) & (sent < end)
    out = {"serving_requests": len(samples)}
    if (~applying).any():
        out["serving_p99_ms"] = float(np.percentile(took[~applying], 99))
    if applying.any():
        out["serving_p99_ms_applying"] = float(np.percentile(took[applying], 99))
    return out


def _window_medians(values: np.ndarray, windows: int) -> list[float]:
    return [float(np.median(part)) for part in np.array_split(values, windows) if len(part)]
