"""Declarative sweep suites: YAML files that fix, list or cross-multiply cells.

A cell is the dataset, hardware and repeat axes plus overrides of the run's config
sections by their real field names (``mindrec.config.SECTIONS``: ``model_config``,
``train``, ``embedding``, ``parallel``, ``cache``), applied over a preset. Keys may be nested
mappings or dotted names; grids use dotted names::

    description: text
    timeout_s: 900                       # per cell
    rounds: 3                            # run every cell 3 times, round after round
    include: [cache]                     # the cells of other suites, as they define them
    fixed:                               # applies to every cell
      preset: cpu-small
      data: {rows: 300000, vocab: 200000}
      train: {max_steps: 270, warmup_steps: 10}
    grid:                                # cross-multiplied
      model: [wide_deep, dcn]
      train.table_size: [null, 10000000]
    cells:                               # listed one by one, each over `fixed`
      - {model: wide_deep, embedding.kind: hash, embedding.permit_filter_value: 3}
      - {model: wide_deep, parallel: {mode: hybrid, workers: 2}}

Axes: ``model``, ``preset``, ``hardware`` (cpu, gpu, ascend), ``backend`` (mindspore, or
torch: the PyTorch twin of the model, bench/peers), ``repeat`` (a repeated measurement of
the same cell), ``data.rows``, ``data.vocab``, ``data.threshold``,
``data.seed``, ``data.zipf_exponent`` (the synthetic dataset), and ``SECTION.FIELD``
for any field of the run's config. Every cell is validated by building its ``RunConfig``, so an unknown key or an
impossible value is an error naming the file, the cell and the key. With
``train.max_steps`` set and ``train.epochs`` not, a cell runs as many epochs as its steps
need.
"""
from __future__ import annotations

import dataclasses
import enum
import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from bench.datasets import DataSpec
from bench.job.hardware import HARDWARE
from bench.peers import DEFAULT_BACKEND, check_backend
from mindrec.config import (DEFAULT_PRESET, MODEL_CONFIGS, SECTIONS, ConfigError, RunConfig,
                            from_dict, reject_unknown, run_config_from_sections)

SUITES_DIR = Path(__file__).resolve().parent / "suites"
_SUITE_KEYS = {"description", "timeout_s", "rounds", "include", "fixed", "grid", "cells"}
_AXES = ("model", "preset", "hardware", "backend", "repeat")
# Fields that change which steps are timed or logged, not what is trained: left out of
# the cell id.
_NOT_IN_ID = {"train.warmup_steps", "train.log_every"}


@dataclass(frozen=True)
class CellSpec:
    """One benchmark cell: a dataset, a hardware target, a repeat number and a run.

    ``overrides`` maps config sections to the fields a cell sets, e.g.
    ``{"train": {"max_steps": 270}}``; everything else comes from ``preset``.

    Example::

        >>> cell = CellSpec(model="dcn", overrides={"train": {"max_steps": 20},
        ...                                         "parallel": {"mode": "hybrid",
        ...                                                      "workers": 2}})
        >>> cell.cell_id
        'dcn-cpu-hybridx2-static-r300000-v200000-tdata-b1000-n20-s0-cpu-small-auto'
        >>> cell.run_config(train_rows=5000).train.epochs  # 20 steps of 5 batches each
        4
    """

    model: str
    preset: str = DEFAULT_PRESET
    hardware: str = "cpu"
    repeat: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    backend: str = DEFAULT_BACKEND
    overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.hardware not in HARDWARE:
            raise ConfigError(f"hardware: {self.hardware!r} is not one of "
                              f"{', '.join(HARDWARE)}")
        if self.repeat < 0:
            raise ConfigError(f"repeat: must not be negative, got {self.repeat}")
        check_backend(self.base_run, self.backend)  # validates model, preset, overrides

    @cached_property
    def base_run(self) -> RunConfig:
        """The run before the dataset is known (epochs as the preset or cell says)."""
        return run_config_from_sections(self.model, self.preset, self.overrides, "cell")

    @property
    def steps(self) -> int | None:
        """Training steps of the cell (``train.max_steps``), None for whole epochs."""
        return self.base_run.train.max_steps

    @property
    def cell_id(self) -> str:
        """Stable, readable identity of the cell (the resume and comparison key).

        Made of the resolved values, so a cell that sets a field to its preset's value
        has the same id as one that leaves it; fields outside the fixed pattern that
        differ from the preset are appended as ``-SECTION.FIELD=VALUE``.
        """
        run = self.base_run
        embedding = run.embedding.kind.value
        if embedding == "hash":
            embedding += (f"p{run.embedding.permit_filter_value}"
                          f"e{run.embedding.evict_filter_value or 0}")
        table = "data" if run.train.table_size is None else f"{run.train.table_size}"
        steps = f"n{self.steps}" if self.steps is not None else f"e{run.train.epochs}"
        extras = "".join(f"-{key}={_id_value(value)}" for key, value in self._extras())
        return (f"{self.model}-{self.hardware}-{run.parallel.mode.value}x"
                f"{run.parallel.workers}-{embedding}-r{self.data.rows}-v{self.data.vocab}"
                f"-t{table}-b{run.train.batch_size}-{steps}-s{run.train.seed}-{self.preset}"
                f"-{run.train.sparse.value}{extras}"
                + (f"-{self.backend}" if self.backend != DEFAULT_BACKEND else "")
                + (f"-rep{self.repeat}" if self.repeat else ""))

    def _extras(self) -> list[tuple[str, object]]:
        """(dotted key, value) of settings the fixed id pattern does not show."""
        in_pattern = {"train.batch_size", "train.max_steps", "train.seed", "train.table_size",
                      "train.sparse", "embedding.kind", "embedding.permit_filter_value",
                      "embedding.evict_filter_value", "parallel.mode", "parallel.workers",
                      *_NOT_IN_ID}
        if self.steps is None:
            in_pattern.add("train.epochs")
        base = run_config_from_sections(self.model, self.preset, {})
        extras = [(f"data.{name}", value) for name, value in
                  dataclasses.asdict(self.data).items()
                  if name not in ("rows", "vocab") and value != getattr(DataSpec(), name)]
        for section, values in sorted(self.overrides.items()):
            for name in sorted(values):
                key = f"{section}.{name}"
                now = getattr(getattr(self.base_run, section), name)
                if key not in in_pattern and now != getattr(getattr(base, section), name):
                    extras.append((key, now))
        return extras

    @property
    def measurement_id(self) -> str:
        """The cell id shared by all repeats of this cell."""
        return dataclasses.replace(self, repeat=0).cell_id

    def to_dict(self) -> dict:
        """JSON-ready nested form; :func:`cell_from_dict` reads it back."""
        return {"model": self.model, "preset": self.preset, "hardware": self.hardware,
                "backend": self.backend, "repeat": self.repeat,
                "data": dataclasses.asdict(self.data),
                **{section: {k: _plain(v) for k, v in values.items()}
                   for section, values in self.overrides.items()}}

    def resolved(self) -> dict[str, object]:
        """Every axis and config field by its dotted name, as this cell resolves it
        (what ``--only`` matches)."""
        run = self.base_run
        values = {"model": self.model, "preset": self.preset, "hardware": self.hardware,
                  "backend": self.backend, "repeat": self.repeat,
                  **{f"data.{k}": v for k, v in dataclasses.asdict(self.data).items()}}
        for section in SECTIONS:
            config = getattr(run, section)
            values.update({f"{section}.{f.name}": getattr(config, f.name)
                           for f in dataclasses.fields(config)})
        return values

    def run_config(self, train_rows: int) -> RunConfig:
        """The run on a dataset of ``train_rows`` training rows: with ``max_steps`` set
        and no ``epochs`` of its own, enough epochs for its steps of full batches, and a
        progress line every fifth of them."""
        batch = self.base_run.train.batch_size
        per_epoch = train_rows // batch
        if per_epoch == 0:
            raise ConfigError(f"train.batch_size {batch} exceeds the {train_rows} training "
                              f"rows of cell {self.cell_id}")
        train = dict(self.overrides.get("train", {}))
        if self.steps is not None:
            train.setdefault("epochs", math.ceil(self.steps / per_epoch))
            train.setdefault("log_every", max(1, self.steps // 5))
        return run_config_from_sections(self.model, self.preset,
                                        {**self.overrides, "train": train}, self.cell_id)


def cell_from_dict(values: dict, where: str = "cell") -> CellSpec:
    """A cell from its nested or dotted form (suite entries, ``CellSpec.to_dict``)."""
    flat = _flatten(values, where)
    data, overrides, axes = {}, {}, {}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if key in _AXES:
            axes[key] = value
        elif head == "data" and rest:
            data[rest] = value
        elif head in SECTIONS and rest:
            overrides.setdefault(head, {})[rest] = value
        else:
            raise ConfigError(f"{where}: unknown key {key!r}; valid keys: "
                              f"{', '.join(_AXES)}, data.FIELD, "
                              f"{', '.join(s + '.FIELD' for s in SECTIONS)}")
    if "model" not in axes:
        raise ConfigError(f"{where}: no model (one of {', '.join(MODEL_CONFIGS)})")
    try:
        return CellSpec(data=from_dict(DataSpec, data, f"{where}: data"), overrides=overrides,
                        **dataclasses.asdict(from_dict(_Axes, axes, where)))
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where)
                          else f"{where}: {message.removeprefix('cell.')}") \
            from None


@dataclass(frozen=True)
class _Axes:
    """Type checking of a cell's top-level axes (through ``from_dict``)."""

    model: str
    preset: str = DEFAULT_PRESET
    hardware: str = "cpu"
    backend: str = DEFAULT_BACKEND
    repeat: int = 0


def _flatten(values, where: str, prefix: str = "") -> dict:
    """Nested mappings to dotted keys (``{"train": {"seed": 1}}`` -> ``{"train.seed": 1}``)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, where, f"{name}."))
        else:
            flat[name] = value
    return flat


def _plain(value):
    """Enums to values and tuples to lists (JSON and YAML ready)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def _id_value(value) -> str:
    """A setting as it appears in a cell id or an ``--only`` match."""
    value = _plain(value)
    if value is None:
        return "null"
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


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
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such suite file")
        return path
    path = SUITES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown suite {name_or_path!r}; known suites: {known}")
    return path


def load_suite(name_or_path: str) -> Suite:
    """Read and expand a suite into its cells (grid first, then listed cells)."""
    path = suite_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite is a mapping of {', '.join(sorted(_SUITE_KEYS))}")
    reject_unknown(data, sorted(_SUITE_KEYS), str(path))
    fixed = _flatten(data.get("fixed") or {}, f"{path}: fixed")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{path}: grid must map axes to lists of values")
    for axis, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{axis} must be a non-empty list")
    cells = []
    for combo in itertools.product(*grid.values()) if grid else ():
        values = {**fixed, **dict(zip(grid, combo))}
        cells.append(cell_from_dict(values, f"{path}: grid cell {values}"))
    for i, listed in enumerate(data.get("cells") or []):
        listed = _flatten(listed or {}, f"{path}: cells[{i}]")
        cells.append(cell_from_dict({**fixed, **listed}, f"{path}: cells[{i}]"))
    if not cells and fixed:
        cells.append(cell_from_dict(fixed, f"{path}: fixed"))
    cells += _included(data.get("include") or [], path)
    cells = _in_rounds(cells, data.get("rounds", 1), path)
    seen = set()
    for cell in cells:
        if cell.cell_id in seen:
            raise ConfigError(f"{path}: cell {cell.cell_id} appears twice")
        seen.add(cell.cell_id)
    if not cells:
        raise ConfigError(f"{path}: the suite has no cells")
    try:
        timeout_s = float(data.get("timeout_s", 900))
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: timeout_s must be a number of seconds, got "
                          f"{data.get('timeout_s')!r}") from None
    return Suite(name=path.stem, description=str(data.get("description", "")),
                 timeout_s=timeout_s, cells=tuple(cells))


def _in_rounds(cells: list[CellSpec], rounds, path: Path) -> list[CellSpec]:
    """``cells`` ``rounds`` times over, round after round (repeat k in round k), so that
    cells compared with each other are measured alternately, not one's repeats in a
    row while the machine's load drifts."""
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ConfigError(f"{path}: rounds must be a whole number of at least 1, got "
                          f"{rounds!r}")
    if rounds == 1:
        return cells
    if any(cell.repeat for cell in cells):
        raise ConfigError(f"{path}: rounds repeats every cell; leave the repeat axis unset")
    return [dataclasses.replace(cell, repeat=k) for k in range(rounds) for cell in cells]


def _included(names, path: Path) -> list[CellSpec]:
    """The cells of the suites named by ``include`` (each as its own file defines them)."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: include must be a list of suite names")
    cells = []
    for name in names:
        if suite_path(name).resolve() == path.resolve():
            raise ConfigError(f"{path}: a suite cannot include itself")
        cells += load_suite(name).cells
    return cells


def select(cells: tuple[CellSpec, ...], only: str | None) -> list[CellSpec]:
    """Cells matching every ``KEY=VALUE`` of ``only`` (comma-separated), where KEY is an
    axis or a dotted config field, e.g. ``model=dcn,embedding.kind=hash``."""
    if not only:
        return list(cells)
    wanted = {}
    keys = set(cells[0].resolved()) if cells else set()
    for term in only.split(","):
        key, sep, value = term.partition("=")
        if not sep or key.strip() not in keys:
            raise ConfigError(f"--only: {term!r} is not KEY=VALUE with KEY one of "
                              f"{', '.join(sorted(keys))}")
        wanted[key.strip()] = value.strip()
    return [c for c in cells
            if all(_id_value(c.resolved()[k]) == v for k, v in wanted.items())]
