"""Typed configurations and the named presets that mirror the original MindRec settings.

Configs are frozen dataclasses. Dicts from YAML files or command lines are loaded with
:func:`from_dict`, which rejects unknown keys by name (a misspelt key must never be
silently ignored). Precedence when building a run: command line > file > preset > default.

Presets:
    ``mindrec``   the original hyperparameters (FACTS.md, MindSpore model zoo).
    ``cpu-small`` sized for a 2-core CPU: embedding dim 16, narrower towers, batch 1000,
                  one epoch, so a 300k-row synthetic run ends in about a minute. Chosen
                  by measurement (300k synthetic rows, seed 0): a second epoch already
                  overfits (test AUC falls 0.001-0.002), a third by 0.01; W&D's wide
                  FTRL rate 1e-2 (not 5e-2) and Adam 3e-4 gave the best first epoch.
"""
from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


class SparseMode(str, enum.Enum):
    """How embedding gradients are applied."""

    AUTO = "auto"  # sparse when the table has at least SPARSE_AUTO_MIN_ROWS rows
    ON = "on"      # sparse lookups + lazy optimizers: only touched rows update
    OFF = "off"    # dense gather; every row's optimizer state updates each step


# Measured in FACTS.md: dense Gather + Adam/FTRL on every row falls to ~2k samples/s at
# 10M rows while sparse lookups keep ~7.5k; below ~1M rows the dense path is as fast.
SPARSE_AUTO_MIN_ROWS = 1_000_000


@dataclass(frozen=True)
class WideDeepConfig:
    """Wide&Deep: a linear (wide) part on FTRL plus an MLP (deep) part on Adam."""

    emb_dim: int = 80
    deep_layers: tuple[int, ...] = (1024, 512, 256, 128)
    deep_l2: float = 8e-5
    deep_lr: float = 3.5e-4
    adam_eps: float = 1e-8
    wide_lr: float = 5e-2
    ftrl_l1: float = 1e-8
    ftrl_l2: float = 1e-8
    ftrl_initial_accum: float = 1.0
    init_std: float = 0.01

    def __post_init__(self):
        _check_widths("model_config", self.emb_dim, self.deep_layers)
        _check_positive("model_config", deep_lr=self.deep_lr, adam_eps=self.adam_eps,
                        wide_lr=self.wide_lr, ftrl_initial_accum=self.ftrl_initial_accum)
        _check_not_negative("model_config", deep_l2=self.deep_l2, ftrl_l1=self.ftrl_l1,
                            ftrl_l2=self.ftrl_l2, init_std=self.init_std)


@dataclass(frozen=True)
class DCNConfig:
    """Deep & Cross Network: cross layers beside an MLP, head on their concatenation."""

    emb_dim: int = 30
    deep_layers: tuple[int, ...] = (1024, 1024)
    cross_layers: int = 6
    lr: float = 1e-4
    adam_eps: float = 1e-8
    # None means the original N(0, emb_dim ** -0.5).
    init_std: float | None = None

    def __post_init__(self):
        _check_widths("model_config", self.emb_dim, self.deep_layers)
        _check_positive("model_config", lr=self.lr, adam_eps=self.adam_eps)
        _check_not_negative("model_config", cross_layers=self.cross_layers,
                            init_std=0.0 if self.init_std is None else self.init_std)


def _check_widths(where: str, emb_dim: int, layers: tuple[int, ...],
                  name: str = "deep_layers") -> None:
    if emb_dim < 1:
        raise ConfigError(f"{where}.emb_dim must be at least 1, got {emb_dim}")
    if not layers or min(layers) < 1:
        raise ConfigError(f"{where}.{name} must be one or more widths of at least 1, "
                          f"got {list(layers)}")


def _check_positive(where: str, **values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{where}.{name} must be positive, got {value}")


def _check_not_negative(where: str, **values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ConfigError(f"{where}.{name} must not be negative, got {value}")


class CrossStructure(str, enum.Enum):
    """How DCN-V2 combines its cross network and its MLP."""

    STACKED = "stacked"    # the MLP on top of the cross network's output
    PARALLEL = "parallel"  # both on the embeddings, the head on their concatenation


@dataclass(frozen=True)
class DCNV2Config:
    """DCN-V2: matrix cross layers ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` (W_l full
    or ``low_rank`` U_l V_l^T) with an MLP, stacked or in parallel; one Adam."""

    emb_dim: int = 10
    deep_layers: tuple[int, ...] = (500, 500, 500)
    cross_layers: int = 3
    low_rank: int | None = None  # None: full-rank cross matrices
    structure: CrossStructure = CrossStructure.PARALLEL
    lr: float = 1e-3
    adam_eps: float = 1e-8
    init_std: float = 0.01

    def __post_init__(self):
        _check_widths("model_config", self.emb_dim, self.deep_layers)
        _check_positive("model_config", lr=self.lr, adam_eps=self.adam_eps)
        _check_not_negative("model_config", cross_layers=self.cross_layers,
                            init_std=self.init_std)
        if self.low_rank is not None and self.low_rank < 1:
            raise ConfigError(f"model_config.low_rank must be at least 1 (or null), got "
                              f"{self.low_rank}")


@dataclass(frozen=True)
class DeepFMConfig:
    """DeepFM: a factorization machine (first-order weights and pairwise interactions of
    the field embeddings) beside an MLP on the same embeddings, one Adam for all."""

    emb_dim: int = 80
    deep_layers: tuple[int, ...] = (1024, 512, 256, 128)
    deep_l2: float = 8e-5
    lr: float = 5e-4
    adam_eps: float = 5e-8
    init_std: float = 0.01

    def __post_init__(self):
        _check_widths("model_config", self.emb_dim, self.deep_layers)
        _check_positive("model_config", lr=self.lr, adam_eps=self.adam_eps)
        _check_not_negative("model_config", deep_l2=self.deep_l2, init_std=self.init_std)


@dataclass(frozen=True)
class DLRMConfig:
    """DLRM: a bottom MLP on the dense features, embeddings of the categorical ones,
    their pairwise dot products, a top MLP; SGD or Adam."""

    emb_dim: int = 16
    bottom_layers: tuple[int, ...] = (512, 256, 64, 16)  # the last is emb_dim
    top_layers: tuple[int, ...] = (512, 256)  # then the 1-wide output layer
    optimizer: str = "sgd"  # sgd or adam
    lr: float = 0.1
    adam_eps: float = 1e-8
    init_std: float = 0.01

    def __post_init__(self):
        _check_widths("model_config", self.emb_dim, self.top_layers, "top_layers")
        _check_widths("model_config", self.emb_dim, self.bottom_layers, "bottom_layers")
        if self.bottom_layers[-1] != self.emb_dim:
            raise ConfigError(f"model_config.bottom_layers must end at emb_dim "
                              f"({self.emb_dim}): the bottom MLP's output meets the "
                              f"embeddings in dot products; got {list(self.bottom_layers)}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"model_config.optimizer must be sgd or adam, got "
                              f"{self.optimizer!r}")
        _check_positive("model_config", lr=self.lr, adam_eps=self.adam_eps)
        _check_not_negative("model_config", init_std=self.init_std)


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings shared by all models."""

    batch_size: int = 16000
    epochs: int = 15
    seed: int = 0
    sparse: SparseMode = SparseMode.AUTO
    log_every: int = 50
    max_steps: int | None = None  # stop early (benchmarks); None = full epochs
    warmup_steps: int = 1  # excluded from step timing; the first one is the compile
    # Rows of the embedding tables; None = the dataset's vocabulary. A larger table
    # spreads the dataset's ids over all its rows (see mindrec.train.trainer.spread_ids).
    table_size: int | None = None
    checkpoint_every: int | None = None  # steps between checkpoints (given a path)

    def __post_init__(self):
        for name in ("batch_size", "epochs", "log_every", "warmup_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"train.checkpoint_every must be at least 1 (or null), got "
                              f"{self.checkpoint_every}")
        if self.max_steps is not None and self.max_steps <= self.warmup_steps:
            raise ConfigError(f"train.max_steps ({self.max_steps}) must exceed "
                              f"train.warmup_steps ({self.warmup_steps})")


class EmbeddingKind(str, enum.Enum):
    """How the models' embedding tables are stored."""

    STATIC = "static"  # fixed id space [0, rows)
    HASH = "hash"      # dynamic keys, admitted after N hits, evicted after N idle steps


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding tables of a run (see mindrec.embedding.hash for ``hash``)."""

    kind: EmbeddingKind = EmbeddingKind.STATIC
    permit_filter_value: int = 1  # hash: hits (steps) before a key gets a row
    evict_filter_value: int | None = None  # hash: idle steps before a row goes; None: never
    capacity: int | None = None  # hash: rows available; None = the table size

    def __post_init__(self):
        if self.permit_filter_value < 1:
            raise ConfigError(f"embedding.permit_filter_value must be at least 1, "
                              f"got {self.permit_filter_value}")
        for name in ("evict_filter_value", "capacity"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"embedding.{name} must be at least 1 (or null), got {value}")
        if self.kind is EmbeddingKind.STATIC:
            for name, unset in (("permit_filter_value", 1), ("evict_filter_value", None),
                                ("capacity", None)):
                if getattr(self, name) != unset:
                    raise ConfigError(f"embedding.{name} applies to kind hash only; this "
                                      f"run has static tables")


class ParallelMode(str, enum.Enum):
    """How training is spread over workers (processes launched by msrun)."""

    STANDALONE = "standalone"        # one process
    DATA_PARALLEL = "data_parallel"  # every worker holds the whole model; gradients averaged
    HYBRID = "hybrid"                # tables sharded by rows across workers; the rest data parallel


@dataclass(frozen=True)
class ParallelConfig:
    """The parallel mode and its number of workers."""

    mode: ParallelMode = ParallelMode.STANDALONE
    workers: int = 1

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError(f"parallel.workers must be at least 1, got {self.workers}")
        if (self.mode is ParallelMode.STANDALONE) != (self.workers == 1):
            raise ConfigError(f"parallel: mode {self.mode.value} with {self.workers} workers; "
                              f"standalone runs exactly one worker, the other modes two or more")


class CachePolicy(str, enum.Enum):
    """Which rows a cache tier evicts first."""

    LRU = "lru"  # the least recently used
    LFU = "lfu"  # the least frequently used (ties: the least recently used)


CACHE_TIERS = ("host", "remote", "ssd")
# Above the bottom tier the host tier holds this many times the device rows unless
# cache.host_rows says otherwise, as the original MindRec sizes its host cache.
HOST_ROWS_PER_DEVICE_ROW = 10


@dataclass(frozen=True)
class CacheConfig:
    """The multi-level cache in front of hash tables (docs/embedding-cache.md).

    Off unless the device tier is sized: ``device_rows``, or ``device_fraction`` of the
    rows the data touches (its vocabulary; see :meth:`sized`). ``tiers`` names the
    tiers behind the device, top to bottom, joined by "+" (``host``, ``host+ssd``,
    ``host+remote+ssd``...; always in the order host, remote, ssd); the bottom one keeps
    every row. A tier's capacity of None is unbounded at the bottom; above it, host holds
    ``10 x`` the device rows (the original MindRec's sizing) and remote is unbounded.
    """

    device_rows: int | None = None
    device_fraction: float | None = None
    tiers: str = "host"
    host_rows: int | None = None
    remote_rows: int | None = None
    remote_url: str | None = None  # None: the harness starts a local server
    ssd_path: str | None = None  # None: a directory the harness makes for the run
    policy: CachePolicy = CachePolicy.LRU
    lookahead: int = 1  # batches staged ahead by the prefetch thread (0: none)
    # Rows of keys 0..N-1 bulk-loaded into the SSD tier before training (a large table
    # that exists beforehand; with train.table_size N every key the data uses is there).
    initial_rows: int | None = None

    def __post_init__(self):
        for name in ("device_rows", "host_rows", "remote_rows", "initial_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"cache.{name} must be at least 1 (or null), got {value}")
        if self.lookahead < 0:
            raise ConfigError(f"cache.lookahead must not be negative, got {self.lookahead}")
        if self.device_fraction is not None and not 0 < self.device_fraction <= 1:
            raise ConfigError(f"cache.device_fraction must lie in (0, 1], got "
                              f"{self.device_fraction}")
        if self.device_rows is not None and self.device_fraction is not None:
            raise ConfigError("cache: set device_rows or device_fraction, not both")
        names = self.tiers.split("+")
        if self.initial_rows is not None and names[-1] != "ssd":
            raise ConfigError(f"cache.initial_rows: rows are bulk-loaded into an ssd tier at "
                              f"the bottom; tiers are {self.tiers!r}")
        if not names or any(n not in CACHE_TIERS for n in names) or names != sorted(
                set(names), key=CACHE_TIERS.index):
            raise ConfigError(f"cache.tiers {self.tiers!r}: name tiers among "
                              f"{', '.join(CACHE_TIERS)}, each once, in that order, joined "
                              f"by '+' (e.g. host+ssd)")

    @property
    def enabled(self) -> bool:
        return self.device_rows is not None or self.device_fraction is not None

    def tier_rows(self, tier: str, device_rows: int) -> int | None:
        """The rows ``tier`` may hold (None: unbounded), its own setting or the default."""
        rows = {"host": self.host_rows, "remote": self.remote_rows}.get(tier)
        if rows is None and tier == "host" and self.tier_names[-1] != "host":
            rows = HOST_ROWS_PER_DEVICE_ROW * device_rows
        return rows

    def sized(self, touched_rows: int) -> CacheConfig:
        """This config with ``device_rows`` set: ``device_fraction`` of ``touched_rows``
        (the rows the data touches: its vocabulary) resolved."""
        if self.device_fraction is None:
            return self
        return dataclasses.replace(self, device_fraction=None, device_rows=max(
            1, round(self.device_fraction * touched_rows)))

    @property
    def tier_names(self) -> tuple[str, ...]:
        """The tiers behind the device, top to bottom."""
        return tuple(self.tiers.split("+"))


@dataclass(frozen=True)
class OnlineConfig:
    """Online learning from a stream (docs/online-learning.md): how the online trainer
    publishes and checkpoints, and, for a benchmark cell, the stream the harness plays.

    A benchmark cell with ``stream`` on is an online cell: the harness streams its
    ``data.rows`` rows of the drifting synthetic stream (``drift``,
    ``new_value_fraction``) at ``rate`` rows/s through a broker to the trainer, and
    serves what it publishes.
    """

    stream: bool = False
    rate: float | None = 5000.0  # rows/s the harness produces (None: as fast as it can)
    drift: float = 0.3
    new_value_fraction: float = 0.2
    topic: str = "criteo"
    publish_every_s: float | None = 2.0  # publish a version this often (None: by steps)
    publish_every_steps: int | None = None  # ... or every this many steps
    checkpoint_every_steps: int = 100
    full_every: int = 20  # every this many versions is a full one
    freeze_after_rows: int | None = None  # freeze a copy of the model after these rows
    max_rows: int | None = None  # stop after training this many rows in all
    idle_stop_s: float | None = 10.0  # stop when no full batch came for this long
    batch_wait_s: float = 0.5  # how long one poll for a batch waits
    broker_wait_s: float = 30.0  # how long to wait for the broker at the start

    def __post_init__(self):
        for name in ("rate", "publish_every_s", "publish_every_steps",
                     "freeze_after_rows", "max_rows", "idle_stop_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"online.{name} must be positive (or null), got {value}")
        for name in ("checkpoint_every_steps", "full_every", "batch_wait_s", "broker_wait_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"online.{name} must be positive, got {getattr(self, name)}")
        for name in ("drift", "new_value_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"online.{name} must lie in [0, 1], got "
                                  f"{getattr(self, name)}")
        if self.publish_every_s is None and self.publish_every_steps is None:
            raise ConfigError("online: set publish_every_s or publish_every_steps")

    @property
    def enabled(self) -> bool:
        return self.stream


MODEL_CONFIGS: dict[str, type] = {"wide_deep": WideDeepConfig, "dcn": DCNConfig,
                                  "deepfm": DeepFMConfig, "dcnv2": DCNV2Config,
                                  "dlrm": DLRMConfig}
# The sections of a run that files, suite cells and the command line override, by the
# names of RunConfig's fields.
SECTIONS = ("model_config", "train", "embedding", "parallel", "cache", "online")
DEFAULT_PRESET = "cpu-small"

PRESETS: dict[str, dict[str, dict[str, dict]]] = {
    "mindrec": {
        "wide_deep": {"model": {}, "train": {"batch_size": 16000, "epochs": 15}},
        "dcn": {"model": {}, "train": {"batch_size": 16000, "epochs": 10}},
        "deepfm": {"model": {}, "train": {"batch_size": 16000, "epochs": 15}},
        "dcnv2": {"model": {}, "train": {"batch_size": 4096, "epochs": 10}},
        "dlrm": {"model": {}, "train": {"batch_size": 128, "epochs": 1}},
    },
    "cpu-small": {
        "wide_deep": {
            "model": {"emb_dim": 16, "deep_layers": (256, 128), "deep_lr": 3e-4,
                      "wide_lr": 1e-2, "deep_l2": 1e-4},
            "train": {"batch_size": 1000, "epochs": 1},
        },
        "dcn": {
            "model": {"emb_dim": 16, "deep_layers": (256, 256), "cross_layers": 3,
                      "lr": 3e-4, "init_std": 0.01},
            "train": {"batch_size": 1000, "epochs": 1},
        },
        "deepfm": {
            "model": {"emb_dim": 16, "deep_layers": (256, 128), "lr": 3e-4,
                      "deep_l2": 1e-4},
            "train": {"batch_size": 1000, "epochs": 1},
        },
        "dcnv2": {
            "model": {"emb_dim": 16, "deep_layers": (256, 256), "cross_layers": 3,
                      "low_rank": 64, "structure": "stacked", "lr": 3e-4},
            "train": {"batch_size": 1000, "epochs": 1},
        },
        "dlrm": {
            "model": {"emb_dim": 16, "bottom_layers": (64, 16), "top_layers": (256, 128),
                      "optimizer": "adam", "lr": 1e-3},
            "train": {"batch_size": 1000, "epochs": 1},
        },
    },
}


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to build and train one model."""

    model: str
    model_config: WideDeepConfig | DCNConfig | DeepFMConfig | DCNV2Config | DLRMConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)

    def __post_init__(self):
        if self.cache.enabled and self.embedding.kind is not EmbeddingKind.HASH:
            raise ConfigError("cache: the cache holds the rows of hash tables (keys, not "
                              "positions); set embedding.kind: hash")
        if self.cache.enabled and self.embedding.capacity is not None:
            raise ConfigError("embedding.capacity: with a cache, cache.device_rows sizes the "
                              "device tier and the tiers behind it hold the rest; leave "
                              "capacity unset")
        if (self.parallel.mode is not ParallelMode.STANDALONE
                and self.embedding.kind is EmbeddingKind.HASH):
            raise ConfigError(f"embedding: hash runs standalone only (each worker would keep "
                              f"its own key index); got mode {self.parallel.mode.value}")
        if (self.parallel.mode is ParallelMode.DATA_PARALLEL
                and self.train.sparse is SparseMode.ON):
            raise ConfigError("train.sparse on: data_parallel averages gradients with AllReduce, "
                              "which has no sparse form on CPU; use hybrid mode for large tables")
        if self.train.batch_size % self.parallel.workers:
            raise ConfigError(f"train.batch_size {self.train.batch_size} must be a multiple of "
                              f"the {self.parallel.workers} workers (each takes an equal slice "
                              f"of every global batch)")

    def to_dict(self) -> dict:
        """Plain values (JSON-ready); :func:`run_config_from_dict` reads them back."""
        return json_ready(dataclasses.asdict(self))


def reject_unknown(values: dict, allowed, where: str, what: str = "key") -> None:
    """Raise ConfigError naming every key of ``values`` that is not in ``allowed``."""
    unknown = sorted(map(str, set(values) - set(allowed)))
    if unknown:
        raise ConfigError(f"{where}: unknown {what}(s) {', '.join(unknown)}; valid "
                          f"{what}s: {', '.join(allowed)}")


def from_dict(cls, values: dict, where: str = "config"):
    """Build dataclass ``cls`` from ``values``, rejecting unknown keys and wrong types.

    Lists become tuples where the field is a tuple; strings become enums where the field
    is an enum. ``where`` prefixes error messages (e.g. a file name and section).
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    reject_unknown(values, sorted(f.name for f in dataclasses.fields(cls)), where)
    missing = sorted(f.name for f in dataclasses.fields(cls)
                     if f.name not in values and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()})


def _coerce(value, hint, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value.value if isinstance(value, enum.Enum) else value)
        except ValueError:
            choices = ", ".join(m.value for m in hint)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
        return tuple(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is float and isinstance(value, int):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def json_ready(value):
    """Enums to their values and tuples to lists, recursively."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def run_config_from_dict(values: dict) -> RunConfig:
    """The inverse of :meth:`RunConfig.to_dict` (workers receive their run this way)."""
    model = values["model"]
    if model not in MODEL_CONFIGS:
        raise ConfigError(f"unknown model {model!r}; choose from {', '.join(MODEL_CONFIGS)}")
    return RunConfig(
        model=model,
        model_config=from_dict(MODEL_CONFIGS[model], values["model_config"], "model_config"),
        train=from_dict(TrainConfig, values["train"], "train"),
        embedding=from_dict(EmbeddingConfig, values["embedding"], "embedding"),
        parallel=from_dict(ParallelConfig, values["parallel"], "parallel"),
        cache=from_dict(CacheConfig, values.get("cache", {}), "cache"),
        online=from_dict(OnlineConfig, values.get("online", {}), "online"))


def build_run_config(model: str, preset: str = DEFAULT_PRESET,
                     model_overrides: dict | None = None,
                     train_overrides: dict | None = None,
                     embedding: dict | None = None,
                     parallel: dict | None = None,
                     cache: dict | None = None,
                     online: dict | None = None) -> RunConfig:
    """Resolve ``preset`` for ``model`` and apply overrides (later wins)."""
    return run_config_from_sections(model, preset, {
        "model_config": model_overrides or {}, "train": train_overrides or {},
        "embedding": embedding or {}, "parallel": parallel or {}, "cache": cache or {},
        "online": online or {}})


def run_config_from_sections(model: str, preset: str, sections: dict,
                             where: str = "config") -> RunConfig:
    """``preset`` for ``model`` with ``sections`` applied over it.

    ``sections`` maps some of :data:`SECTIONS` to overrides of that section's fields by
    their names, e.g. ``{"train": {"batch_size": 500}, "embedding": {"kind": "hash"}}``.
    Unknown sections and fields are errors prefixed with ``where``.

    Example::

        >>> run = run_config_from_sections("dcn", "cpu-small",
        ...                                {"model_config": {"cross_layers": 2}})
        >>> run.model_config.cross_layers, run.model_config.emb_dim, run.train.batch_size
        (2, 16, 1000)
    """
    if model not in MODEL_CONFIGS:
        raise ConfigError(f"{where}: unknown model {model!r}; choose from "
                          f"{', '.join(MODEL_CONFIGS)}")
    if preset not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {preset!r}; choose from "
                          f"{', '.join(PRESETS)}")
    if not isinstance(sections, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(SECTIONS)}")
    reject_unknown(sections, SECTIONS, where, "section")
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{where}.{name}: expected a mapping of field: value, "
                              f"got {values!r}")
    base = PRESETS[preset][model]
    return RunConfig(
        model=model,
        model_config=from_dict(MODEL_CONFIGS[model],
                               {**base["model"], **sections.get("model_config", {})},
                               f"{where}.model_config"),
        train=from_dict(TrainConfig, {**base["train"], **sections.get("train", {})},
                        f"{where}.train"),
        embedding=from_dict(EmbeddingConfig, sections.get("embedding", {}),
                            f"{where}.embedding"),
        parallel=from_dict(ParallelConfig, sections.get("parallel", {}), f"{where}.parallel"),
        cache=from_dict(CacheConfig, sections.get("cache", {}), f"{where}.cache"),
        online=from_dict(OnlineConfig, sections.get("online", {}), f"{where}.online"),
    )


def load_config_file(path: str | Path) -> dict:
    """Read a run file (YAML): optional ``model`` and ``preset``, and override sections
    (:data:`SECTIONS`). Unknown keys and bad YAML are errors naming the file.

    Example of a file::

        model: dcn
        preset: cpu-small
        train: {batch_size: 500, max_steps: 200}
        embedding: {kind: hash, permit_filter_value: 2}
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    allowed = ("model", "preset", *SECTIONS)
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(allowed)}")
    reject_unknown(values, allowed, str(path))
    return values
