"""Quality metrics on numpy arrays: ROC AUC (tie-aware) and binary log loss.

Kept free of MindSpore so the data tools can use them (e.g. the Bayes-optimal AUC of a
synthetic test split) without loading the framework.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-7


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, ties scored as half (Mann-Whitney U).

    Args:
        labels: 0/1 array of shape (n,).
        scores: real-valued array of shape (n,); higher means more likely positive.

    Raises:
        ValueError: if shapes differ or only one class is present.
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    positive = labels > 0.5
    n_pos = int(positive.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average 1-based rank of each run of tied scores.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], sorted_scores.size]
    average_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat(average_rank, ends - starts)
    rank_sum = ranks[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean binary cross-entropy of predicted probabilities (clipped to [1e-7, 1-1e-7])."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probabilities, dtype=np.float64).reshape(-1), _EPS, 1.0 - _EPS)
    if labels.shape != p.shape:
        raise ValueError(f"labels {labels.shape} and probabilities {p.shape} differ in shape")
    return float(-np.mean(labels * np.log(p) + (1.0 - labels) * np.log1p(-p)))
