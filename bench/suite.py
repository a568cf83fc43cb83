"""Declarative sweep suites: YAML files that fix, list or cross-multiply cell axes.

A suite file has these top-level keys (any other is an error naming it)::

    description: text
    timeout_s: 900          # per cell
    fixed: {axis: value}    # applies to every cell
    grid: {axis: [values]}  # cross-multiplied
    cells: [{axis: value}]  # listed one by one, each over `fixed`

Every cell is a :class:`CellSpec`; unknown axes and impossible values are errors that
name the file and the key.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.job.hardware import HARDWARE
from mindrec.config import (MODEL_CONFIGS, PRESETS, ConfigError, RunConfig, SparseMode,
                            build_run_config, from_dict)

SUITES_DIR = Path(__file__).resolve().parent / "suites"
MODES = ("standalone", "data_parallel", "hybrid")
EMBEDDINGS = ("static", "hash")
_SUITE_KEYS = {"description", "timeout_s", "fixed", "grid", "cells"}


@dataclass(frozen=True)
class CellSpec:
    """One benchmark cell: what to train, on what, for how long.

    ``vocab`` sizes the synthetic data (its categorical cardinality); ``table_size``
    sizes the model's tables (None: the converted vocabulary).
    """

    model: str
    preset: str = "cpu-small"
    hardware: str = "cpu"
    mode: str = "standalone"
    workers: int = 1
    embedding: str = "static"
    permit: int = 1  # hash: hits before a key gets a row
    evict: int | None = None  # hash: idle steps before a row is evicted (None: never)
    rows: int = 300_000
    vocab: int = 200_000
    table_size: int | None = None
    threshold: int = 2
    batch_size: int = 1000
    steps: int = 270
    warmup_steps: int = 10
    seed: int = 0
    sparse: SparseMode = SparseMode.AUTO
    repeat: int = 0  # repeated measurement of an otherwise identical cell (gates)

    def __post_init__(self):
        for name, allowed in (("model", tuple(MODEL_CONFIGS)), ("preset", tuple(PRESETS)),
                              ("hardware", HARDWARE), ("mode", MODES),
                              ("embedding", EMBEDDINGS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not one of "
                                  f"{', '.join(allowed)}")
        for name in ("workers", "rows", "vocab", "batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if (self.mode == "standalone") != (self.workers == 1):
            raise ConfigError(f"mode {self.mode} with {self.workers} workers: standalone runs "
                              f"one worker, data_parallel and hybrid two or more")
        if self.embedding != "hash" and (self.permit != 1 or self.evict is not None):
            raise ConfigError("permit and evict apply to embedding: hash only")
        if self.repeat < 0:
            raise ConfigError(f"repeat: must not be negative, got {self.repeat}")

    @property
    def cell_id(self) -> str:
        """Stable, readable identity of the cell (the resume and comparison key)."""
        table = "data" if self.table_size is None else f"{self.table_size}"
        embedding = self.embedding
        if embedding == "hash":
            embedding += f"p{self.permit}e{self.evict or 0}"
        return (f"{self.model}-{self.hardware}-{self.mode}x{self.workers}-{embedding}"
                f"-r{self.rows}-v{self.vocab}-t{table}-b{self.batch_size}-n{self.steps}"
                f"-s{self.seed}-{self.preset}-{self.sparse.value}"
                + (f"-rep{self.repeat}" if self.repeat else ""))

    @property
    def measurement_id(self) -> str:
        """The cell id shared by all repeats of this cell."""
        return dataclasses.replace(self, repeat=0).cell_id

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["sparse"] = self.sparse.value
        return values

    def run_config(self, train_rows: int) -> RunConfig:
        """The training configuration, with enough epochs over ``train_rows`` for
        ``steps`` full batches."""
        per_epoch = train_rows // self.batch_size
        if per_epoch == 0:
            raise ConfigError(f"batch_size {self.batch_size} exceeds the {train_rows} "
                              f"training rows of cell {self.cell_id}")
        return build_run_config(self.model, self.preset, train_overrides={
            "batch_size": self.batch_size, "seed": self.seed, "max_steps": self.steps,
            "warmup_steps": self.warmup_steps, "table_size": self.table_size,
            "sparse": self.sparse, "epochs": math.ceil(self.steps / per_epoch),
            "log_every": max(1, self.steps // 5)},
            embedding={"kind": self.embedding, "permit_filter_value": self.permit,
                       "evict_filter_value": self.evict},
            parallel={"mode": self.mode, "workers": self.workers})


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    timeout_s: float
    cells: tuple[CellSpec, ...]


def suite_path(name_or_path: str) -> Path:
    """A suite name (``quick``) resolves to bench/suites/quick.yaml; a path is kept."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown suite {name_or_path!r}; known suites: {known}")
    return path


def load_suite(name_or_path: str) -> Suite:
    """Read and expand a suite into its cells (grid first, then listed cells)."""
    path = suite_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite is a mapping of {', '.join(sorted(_SUITE_KEYS))}")
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: "
                          f"{', '.join(sorted(_SUITE_KEYS))}")
    fixed = data.get("fixed") or {}
    grid = data.get("grid") or {}
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{axis} must be a non-empty list")
    cells = []
    for combo in itertools.product(*grid.values()) if grid else ():
        values = {**fixed, **dict(zip(grid, combo))}
        cells.append(from_dict(CellSpec, values, f"{path}: grid cell {values}"))
    for i, listed in enumerate(data.get("cells") or []):
        cells.append(from_dict(CellSpec, {**fixed, **(listed or {})}, f"{path}: cells[{i}]"))
    if not cells and fixed:
        cells.append(from_dict(CellSpec, fixed, f"{path}: fixed"))
    seen = set()
    for cell in cells:
        if cell.cell_id in seen:
            raise ConfigError(f"{path}: cell {cell.cell_id} appears twice")
        seen.add(cell.cell_id)
    if not cells:
        raise ConfigError(f"{path}: the suite has no cells")
    return Suite(name=path.stem, description=str(data.get("description", "")),
                 timeout_s=float(data.get("timeout_s", 900)), cells=tuple(cells))


def select(cells: tuple[CellSpec, ...], only: str | None) -> list[CellSpec]:
    """Cells matching every ``K=V`` of ``only`` (comma-separated), e.g. ``model=dcn``."""
    if not only:
        return list(cells)
    wanted = {}
    axes = {f.name for f in dataclasses.fields(CellSpec)}
    for term in only.split(","):
        key, sep, value = term.partition("=")
        if not sep or key.strip() not in axes:
            raise ConfigError(f"--only: {term!r} is not AXIS=VALUE with AXIS one of "
                              f"{', '.join(sorted(axes))}")
        wanted[key.strip()] = value.strip()
    return [c for c in cells if all(str(c.to_dict()[k]) == v for k, v in wanted.items())]
