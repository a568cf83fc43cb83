"""Peer backends: the reference models in another framework, trained on the same
batches and measured by the same harness, for the report's peer column.

A cell's ``backend`` axis picks the framework: ``mindspore`` (the project's models) or
``torch`` (their PyTorch twins, the optional ``peers`` extra). This module needs
neither framework: the sweep asks it which cells a backend can run, and why not.
"""
from __future__ import annotations

import importlib.util

from mindrec.config import ConfigError, EmbeddingKind, ParallelMode, RunConfig

BACKENDS = ("mindspore", "torch")
DEFAULT_BACKEND = "mindspore"


def check_backend(run: RunConfig, backend: str) -> None:
    """Raise ConfigError when ``backend`` is unknown or cannot train ``run``."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == DEFAULT_BACKEND:
        return
    reasons = []
    if run.embedding.kind is not EmbeddingKind.STATIC:
        reasons.append("embedding.kind hash (the dynamic hash embedding is MindSpore's)")
    if run.cache.enabled:
        reasons.append("a cache (the multi-level cache serves MindSpore's hash tables)")
    if run.parallel.mode is not ParallelMode.STANDALONE:
        reasons.append(f"parallel mode {run.parallel.mode.value} (the peer runs one "
                       f"process)")
    if run.online.enabled:
        reasons.append("online.stream (online learning is MindSpore's)")
    if reasons:
        raise ConfigError(f"backend {backend}: the peer trains static tables in one "
                          f"process; this run asks for {'; '.join(reasons)}")


def backend_unavailable(backend: str) -> str | None:
    """Why ``backend`` cannot run on this machine (its package is missing), or None."""
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (the peers extra: pip install -e '.[peers]')"
    return None


def twin_id(measurement_id: str, backend: str) -> str:
    """The measurement id of the MindSpore cell that a ``backend`` cell is the twin of
    (cell ids differ only by the backend's suffix); a MindSpore cell's own."""
    suffix = f"-{backend}"
    if backend != DEFAULT_BACKEND and measurement_id.endswith(suffix):
        return measurement_id[:-len(suffix)]
    return measurement_id
