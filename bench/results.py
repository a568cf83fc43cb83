"""Result records: the schema, declared once; validation; migration; an atomic JSONL store.

One record per sweep cell (or per ``mindrec-bench train --out``)::

    {"schema", "run_id", "cell_id", "suite", "started_at", "status", "reason",
     "git": {...}, "env": {...}, "spec": {...}, "metrics": {...}}

Every key of every block is declared below, once, as a :class:`Key` (type, unit, the
report section that shows it, required or optional). :func:`validate` rejects unknown
keys, wrong types and missing required keys, naming the key; readers look values up
through :func:`metric` and :func:`spec_value`, which refuse undeclared names, so a
misspelt key is an error instead of an empty column. Keys ending in ``_mb`` are MiB
(2**20 bytes).

Versions: records are written as :data:`SCHEMA` (``mindrec-bench/result/2``). Records of
``mindrec-bench/result/1`` load through :func:`migrate` (tested on real /1 records);
any other version is refused with a message naming it.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

from mindrec.files import write_durably

SCHEMA = "mindrec-bench/result/2"
SCHEMA_V1 = "mindrec-bench/result/1"
STATUSES = ("ok", "skipped", "failed")

_NUMBER = (int, float)


@dataclass(frozen=True)
class Key:
    """One declared key of a record block.

    Args:
        name: the key.
        types: the JSON types its value may have (``bool`` never passes for a number).
        doc: what it means, for the reader of a record.
        unit: its unit ("" when it has none); ``_mb`` keys are MiB.
        label: the report's column header (defaults to the name).
        section: the report section that shows it, or None (kept in the record only).
        required: spec keys: in every record; metric keys: in every ``ok`` record.
        nullable: None is allowed.
    """

    name: str
    types: tuple[type, ...]
    doc: str
    unit: str = ""
    label: str = ""
    section: str | None = None
    required: bool = False
    nullable: bool = False

    @property
    def header(self) -> str:
        """Column header with the unit, e.g. ``peak RSS (MiB)``."""
        label = self.label or self.name
        return f"{label} ({self.unit})" if self.unit and self.unit not in label.split() else label

    def check(self, value, where: str) -> None:
        """Raise RecordError when ``value`` is not of this key's types."""
        if value is None:
            if not self.nullable:
                raise RecordError(f"{where}.{self.name}: null is not allowed")
            return
        if isinstance(value, bool) and bool not in self.types:
            raise RecordError(f"{where}.{self.name}: {value!r} is not a "
                              f"{'/'.join(t.__name__ for t in self.types)}")
        if not isinstance(value, self.types):
            raise RecordError(f"{where}.{self.name}: {value!r} is not a "
                              f"{'/'.join(t.__name__ for t in self.types)}")


def _keys(*keys: Key) -> dict[str, Key]:
    return {key.name: key for key in keys}


def _spec(name: str, types, doc: str, *, required: bool = True, nullable: bool = False,
          unit: str = "", label: str = "") -> Key:
    types = types if isinstance(types, tuple) else (types,)
    return Key(name, types, doc, unit=unit, label=label, section="cells",
               required=required, nullable=nullable)


def _metric(name: str, doc: str, *, unit: str, section: str | None, label: str = "",
            required: bool = False, types=_NUMBER) -> Key:
    types = types if isinstance(types, tuple) else (types,)
    return Key(name, types, doc, unit=unit, label=label, section=section,
               required=required, nullable=True)


TOP = _keys(
    Key("schema", (str,), "the record schema version", required=True),
    Key("run_id", (str,), "the sweep run (or train command) that wrote it", required=True),
    Key("cell_id", (str,), "the cell's stable id (resume and comparison key)", required=True),
    Key("suite", (str,), "the suite of the run; null for `train --out`", required=True,
        nullable=True),
    Key("started_at", (str,), "UTC start, ISO 8601", required=True),
    Key("status", (str,), f"one of {', '.join(STATUSES)}", required=True),
    Key("reason", (str,), "why a cell was skipped or failed", required=True, nullable=True),
    Key("git", (dict,), "the commit measured", required=True),
    Key("env", (dict,), "the machine and versions", required=True),
    Key("spec", (dict,), "what was trained", required=True),
    Key("metrics", (dict,), "what was measured (empty unless ok)", required=True),
)

GIT = _keys(
    Key("commit", (str,), "HEAD of the checkout", required=True, nullable=True),
    Key("dirty", (bool,), "uncommitted changes to tracked files", required=True,
        nullable=True),
)

ENV = _keys(
    Key("python", (str,), "Python version", required=True),
    Key("mindspore", (str,), "MindSpore version", required=True, nullable=True),
    Key("numpy", (str,), "numpy version", required=True, nullable=True),
    Key("torch", (str,), "PyTorch version (the peers extra); null when not installed",
        nullable=True),
    Key("os", (str,), "operating system and kernel", required=True),
    Key("cpu_model", (str,), "CPU name", required=True),
    Key("cores", (int,), "logical CPUs", required=True),
    Key("ram_gb", _NUMBER, "memory, GiB", required=True),
    Key("accelerator", (str,), "gpu or none", required=True),
    Key("gpus", (list,), "GPUs seen through NVML", required=True),
)

SPEC = _keys(
    _spec("model", str, "model name (registry)"),
    _spec("preset", str, "the preset the run started from", required=False, nullable=True),
    _spec("dataset", str, "converted dataset directory, or the synthetic parameters"),
    _spec("rows", int, "training rows of the dataset"),
    _spec("data_vocab", int, "ids in the dataset's vocabulary (after the threshold)",
          required=False, nullable=True, label="data vocabulary"),
    _spec("table_size", int, "rows of each embedding table; null: the dataset's vocabulary "
          "(a cell that did not run)", nullable=True, label="table size", unit="rows"),
    _spec("emb_dim", int, "embedding width"),
    _spec("batch_size", int, "global batch size", label="batch"),
    _spec("embedding", str, "static or hash"),
    _spec("mode", str, "standalone, data_parallel or hybrid"),
    _spec("workers", int, "msrun workers (1 standalone)"),
    _spec("hardware", str, "cpu, gpu or ascend"),
    _spec("steps", int, "training steps run (or asked for, when the cell did not run)",
          nullable=True),
    _spec("seed", int, "training seed"),
    _spec("epochs", int, "epochs asked for", required=False),
    _spec("sparse", bool, "sparse lookups with lazy optimizers", required=False,
          nullable=True),
    _spec("permit_filter_value", int, "hash: hits before a key gets a row", required=False,
          nullable=True, label="permit"),
    _spec("evict_filter_value", int, "hash: idle steps before a row goes (null: never)",
          required=False, nullable=True, label="evict after"),
    _spec("capacity", int, "hash: rows available (null: the table size)", required=False,
          nullable=True, label="hash capacity", unit="rows"),
    _spec("cache_device_rows", int, "cache: rows of the device tier (null: no cache)",
          required=False, nullable=True, label="device rows", unit="rows"),
    _spec("cache_device_fraction", (int, float), "cache: device rows asked for, as a "
          "fraction of the rows the data touches", required=False, nullable=True,
          label="device fraction"),
    _spec("cache_tiers", str, "cache: the tiers behind the device, top to bottom",
          required=False, nullable=True, label="tiers behind"),
    _spec("cache_policy", str, "cache: lru or lfu", required=False, nullable=True,
          label="policy"),
    _spec("cache_lookahead", int, "cache: batches staged ahead by the prefetch thread",
          required=False, nullable=True, label="lookahead"),
    _spec("online_rate", (int, float), "online: rows/s the producer sent (null: as fast "
          "as it could)", required=False, nullable=True, label="rate", unit="rows/s"),
    _spec("online_publish_every_s", (int, float), "online: seconds between versions",
          required=False, nullable=True, label="publish every", unit="s"),
    _spec("backend", str, "mindspore, or torch: the model's PyTorch twin (bench/peers); "
          "absent in records older than the peers: mindspore", required=False),
    _spec("peer_variant", str, "torch cells: the PyTorch version, optimizers and threads",
          required=False, label="PyTorch variant"),
    _spec("measurement_id", str, "the id shared by the repeats of one measurement (the "
          "gate pools them)"),
    _spec("cell", dict, "the suite cell's definition (axes and config overrides)",
          required=False),
    _spec("run_config", dict, "the complete RunConfig trained (RunConfig.to_dict)",
          required=False),
)

def _tier_metrics(tier: str) -> tuple[Key, ...]:
    """The record metrics of one cache tier below the device."""
    return (
        _metric(f"cache_{tier}_hit_rate", f"cache: share of the keys asked of the {tier} "
                "tier that it held", unit="", section="cache", label=f"{tier} hit rate"),
        _metric(f"cache_{tier}_rows_held", f"cache: rows in the {tier} tier at the end",
                unit="rows", section="cache", label=f"{tier} rows", types=int),
        _metric(f"cache_{tier}_mb_held", f"cache: bytes of the rows in the {tier} tier at "
                "the end", unit="MiB", section="cache", label=f"{tier} held"),
        _metric(f"cache_{tier}_mb_read", f"cache: bytes read from the {tier} tier",
                unit="MiB", section="cache", label=f"{tier} read"),
        _metric(f"cache_{tier}_mb_written", f"cache: bytes written to the {tier} tier",
                unit="MiB", section="cache", label=f"{tier} written"),
    )


def _online_metrics() -> tuple[Key, ...]:
    """The record metrics of an online cell (bench/job/online_metrics.py)."""
    parts = {"lag": "consumer lag (event -> batch taken)",
             "train": "training (batch taken -> trained)",
             "publish": "waiting for and exporting a version (trained -> published)",
             "apply": "the serving process applying it (published -> answering)",
             "total": "freshness (event -> served by a version trained on it)"}
    freshness = tuple(
        _metric(f"online_freshness_{part}_{q}_s", f"online: {q} of {doc}, over sampled rows",
                unit="s", section="online", label=f"{part} {q}")
        for part, doc in parts.items() for q in ("p50", "p99"))
    return freshness + (
        _metric("online_rows_followed", "online: rows whose freshness was followed",
                unit="rows", section=None, types=int),
        _metric("online_lag_p50_s", "online: median consumer lag", unit="s",
                section="online", label="lag p50"),
        _metric("online_lag_p99_s", "online: 99th percentile of the consumer lag", unit="s",
                section="online", label="lag p99"),
        _metric("online_lag_curve", "online: median consumer lag in each tenth of the run",
                unit="s", section="online", types=list),
        _metric("online_lag_growth_s", "online: median lag of the last tenth of the run "
                "less the second's (about 0 when the trainer keeps up)", unit="s",
                section="online", label="lag growth"),
        _metric("online_auc_curve", "online: progressive AUC (each row predicted before "
                "training on it) per tenth of the stream", unit="", section="online",
                types=list),
        _metric("online_frozen_auc_curve", "online: the same for the model frozen after "
                "the first fifth (null before)", unit="", section="online", types=list),
        _metric("online_bayes_auc_curve", "online: Bayes-optimal AUC per tenth of the "
                "stream", unit="", section="online", types=list),
        _metric("online_frozen_auc", "online: the frozen model's AUC on the last tenth "
                "(auc is the online model's)", unit="", section="online",
                label="frozen AUC"),
        _metric("online_versions", "online: model versions published", unit="versions",
                section="online", label="versions", types=int),
        _metric("online_publish_s_p50", "online: median time to export and write a "
                "version", unit="s", section="online", label="publish p50"),
        _metric("online_delta_rows_p50", "online: median rows changed per delta",
                unit="rows", section="online", label="delta rows"),
        _metric("online_delta_mb_p50", "online: median size of a delta file", unit="MiB",
                section="online", label="delta size"),
        _metric("online_rows_trained", "online: rows trained (all processes)", unit="rows",
                section=None, types=int),
        _metric("online_bad_rows", "online: malformed events skipped", unit="rows",
                section="online", label="bad events", types=int),
        _metric("serving_requests", "online: one-row predictions timed against the "
                "serving process", unit="requests", section=None, types=int),
        _metric("serving_p99_ms", "online: p99 latency of a one-row prediction while no "
                "version was being applied", unit="ms", section="online",
                label="serving p99"),
        _metric("serving_p99_ms_applying", "online: the same while a published version "
                "was being applied", unit="ms", section="online",
                label="serving p99 (applying)"),
    )


_T, _M, _Q, _R, _P, _H, _L, _C = ("throughput", "memory", "quality", "roofline",
                                  "parallel", "hash", "machine", "cache")
METRICS = _keys(
    _metric("samples_per_s", "global batch size / median timed step", unit="samples/s",
            section=_T, label="samples/s", required=True),
    _metric("samples_per_cpu_s", "samples per second of process CPU time (all threads)",
            unit="samples/CPU-s", section=None),
    _metric("step_ms_p50", "median timed step", unit="ms", section=_T, label="step p50",
            required=True),
    _metric("step_ms_p90", "90th percentile of the timed steps", unit="ms", section=_T,
            label="step p90", required=True),
    _metric("compile_s", "the first step (graph compilation)", unit="s", section=_T,
            label="compile", required=True),
    _metric("input_s", "time spent reading batches", unit="s", section=None),
    _metric("train_wall_s", "wall time of the training loop", unit="s", section=None),
    _metric("peak_rss_mb", "peak resident memory of the process tree (all workers)",
            unit="MiB", section=_M, label="peak RSS", required=True),
    _metric("peak_anon_mb", "peak RSS less mapped files (what the gate compares)",
            unit="MiB", section=_M, label="peak anonymous"),
    _metric("peak_device_mb", "peak GPU memory (NVML); null without a GPU", unit="MiB",
            section=_M, label="peak device", required=True),
    _metric("peak_rss_mb_per_worker", "the largest worker's peak RSS", unit="MiB",
            section=_P, label="peak RSS per worker"),
    _metric("peak_anon_mb_per_worker", "the largest worker's peak anonymous memory",
            unit="MiB", section=None),
    _metric("table_mb_per_worker", "embedding-table bytes held by the largest worker",
            unit="MiB", section=_P, label="tables per worker"),
    _metric("launch_s", "msrun job from start to exit", unit="s", section=_P,
            label="msrun job"),
    _metric("train_loss_first", "loss of the first step", unit="", section=None),
    _metric("train_loss_last", "loss of the last step", unit="", section=None),
    _metric("auc", "ROC AUC over the whole test split", unit="", section=_Q, label="AUC",
            required=True),
    _metric("logloss", "binary log loss over the test split", unit="", section=_Q,
            required=True),
    _metric("eval_rows", "rows evaluated", unit="rows", section=None, types=int),
    _metric("bayes_auc", "AUC of the true click probabilities (synthetic data; null "
            "otherwise)", unit="", section=_Q, label="Bayes AUC", required=True),
    _metric("flops_per_sample", "forward FLOPs per sample", unit="FLOP", section=_R,
            label="forward FLOPs per sample"),
    _metric("sgemm_gflops", "sgemm rate measured just before this cell trained",
            unit="GFLOP/s", section=_L, label="sgemm"),
    _metric("roofline_samples_per_s", "the machine's ceiling for this model: sgemm rate / "
            "(3 x forward FLOPs)", unit="samples/s", section=_R, label="roofline"),
    _metric("roofline_fraction", "samples_per_s / roofline_samples_per_s", unit="",
            section=_R, label="roofline fraction"),
    _metric("other_cpu_fraction", "share of the machine's CPU time used by processes "
            "outside the cell while it trained", unit="", section=_L,
            label="other load"),
    _metric("load_avg_1m", "1-minute load average when the cell started", unit="",
            section=_L, label="load average"),
    _metric("hash_live_rows", "hash: rows live at the end", unit="rows", section=_H,
            label="live rows", types=int),
    _metric("hash_admitted", "hash: keys admitted", unit="keys", section=_H,
            label="admitted", types=int),
    _metric("hash_evicted", "hash: rows evicted", unit="rows", section=_H,
            label="evicted", types=int),
    _metric("hash_candidates", "hash: keys seen but never admitted", unit="keys",
            section=_H, label="not admitted", types=int),
    _metric("hash_rejected_full", "hash: admissions refused by a full table", unit="keys",
            section=_H, label="refused, table full", types=int),
    _metric("hash_default_fraction", "hash: share of lookups answered by the default row",
            unit="", section=_H, label="default lookups"),
    _metric("hash_index_mb", "hash: memory of the host key index", unit="MiB",
            section=_H, label="index"),
    _metric("cache_hit_rate", "cache: key lookups of training steps answered by the "
            "device tier", unit="", section=_C, label="device hit rate"),
    _metric("cache_hit_rate_unique", "cache: distinct keys of training steps already in "
            "the device tier", unit="", section=_C, label="device hit rate (distinct keys)"),
    _metric("cache_hit_curve", "cache: the device hit rate of each step's distinct keys "
            "(the warm-up curve)", unit="", section=_C, types=list),
    _metric("cache_cold_misses", "cache: rows created (no tier held the key: first use "
            "or an admission)", unit="rows", section=_C, label="cold misses", types=int),
    _metric("cache_capacity_misses", "cache: rows fetched into the device from a tier "
            "below (held before, evicted for room)", unit="rows", section=_C,
            label="capacity misses", types=int),
    _metric("cache_victims", "cache: rows evicted from the device for room", unit="rows",
            section=_C, label="victims", types=int),
    _metric("cache_written_back", "cache: victims that were dirty, written below",
            unit="rows", section=_C, label="written back", types=int),
    _metric("cache_fetched_per_step", "cache: rows fetched into the device per step",
            unit="rows", section=_C, label="fetched per step"),
    _metric("cache_written_back_per_step", "cache: rows written back per step",
            unit="rows", section=_C, label="written back per step"),
    _metric("cache_exposed_fetch_ms", "cache: per step, the time training waited for "
            "rows from below (and for its batch)", unit="ms", section=_C,
            label="exposed fetch"),
    _metric("cache_hidden_fetch_ms", "cache: per step, fetch time the prefetch thread "
            "spent while training ran", unit="ms", section=_C, label="hidden fetch"),
    _metric("cache_bulk_load_s", "cache: loading the initial rows into the SSD tier "
            "before training (null: none)", unit="s", section=_C, label="bulk load"),
    _metric("cache_device_mb", "cache: bytes of the device tier (rows and optimizer "
            "state)", unit="MiB", section=_C, label="device tier"),
    _metric("cache_remote_peak_rss_mb", "cache: peak RSS of the Redis-protocol server "
            "the run started (null: none, or the user's)", unit="MiB", section=_C,
            label="server peak RSS"),
    *(key for tier in ("host", "remote", "ssd") for key in _tier_metrics(tier)),
    _metric("cache_touched_keys", "cache: distinct keys the training steps looked up",
            unit="keys", section=_C, label="keys touched", types=int),
    _metric("cache_belady_hit_rate_unique", "cache: Belady's optimal (MIN) hit rate of "
            "the recorded key trace at the device size, distinct keys per step",
            unit="", section=_C, label="Belady hit rate"),
    _metric("cache_lru_hit_rate_unique", "cache: LRU's hit rate on the same trace and "
            "size (offline replay)", unit="", section=_C, label="LRU (replay)"),
    _metric("cache_lfu_hit_rate_unique", "cache: LFU's hit rate on the same trace and "
            "size (offline replay)", unit="", section=_C, label="LFU (replay)"),
    _metric("cache_hit_rate_vs_belady", "cache: the run's device hit rate (distinct keys) "
            "as a fraction of Belady's", unit="", section=_C, label="of Belady"),
    _metric("cache_mrc", "cache: LRU miss ratio of the trace at device sizes, as "
            "[fraction of the touched rows, miss ratio] pairs", unit="", section=_C,
            types=list),
    *_online_metrics(),
)


class RecordError(ValueError):
    """A record does not match the schema; the message names the key."""


def metric(record: dict, name: str):
    """Value of the declared metric ``name`` in ``record`` (None when absent)."""
    if name not in METRICS:
        raise KeyError(f"{name!r} is not a declared metric (bench/results.py METRICS)")
    return record["metrics"].get(name)


def spec_value(record: dict, name: str):
    """Value of the declared spec key ``name`` in ``record`` (None when absent)."""
    if name not in SPEC:
        raise KeyError(f"{name!r} is not a declared spec key (bench/results.py SPEC)")
    return record["spec"].get(name)


def _check_block(block, keys: dict[str, Key], where: str, required: bool = True) -> None:
    if not isinstance(block, dict):
        raise RecordError(f"{where}: expected a mapping, got {type(block).__name__}")
    unknown = sorted(set(block) - set(keys))
    if unknown:
        raise RecordError(f"{where}: undeclared key(s) {', '.join(map(repr, unknown))} "
                          f"(declared in bench/results.py)")
    for key in keys.values():
        if key.name in block:
            key.check(block[key.name], where)
        elif required and key.required:
            raise RecordError(f"{where}: missing key {key.name!r}")


def validate(record: dict) -> dict:
    """Check ``record`` against the schema; returns it unchanged or raises RecordError."""
    if not isinstance(record, dict):
        raise RecordError(f"record: expected a JSON object, got {type(record).__name__}")
    if record.get("schema") != SCHEMA:
        raise RecordError(f"record.schema: {record.get('schema')!r}, expected {SCHEMA!r}")
    _check_block(record, TOP, "record")
    if record["status"] not in STATUSES:
        raise RecordError(f"record.status: {record['status']!r} not in {STATUSES}")
    if record["status"] != "ok" and not record["reason"]:
        raise RecordError(f"record.reason: a {record['status']} record needs a reason")
    _check_block(record["git"], GIT, "record.git")
    _check_block(record["env"], ENV, "record.env")
    _check_block(record["spec"], SPEC, "record.spec")
    _check_block(record["metrics"], METRICS, "record.metrics",
                 required=record["status"] == "ok")
    return record


_REPEAT_SUFFIX = re.compile(r"-rep\d+$")


def _migrate_v1(record: dict) -> dict:
    """/1 -> /2: the spec gains ``measurement_id`` (the cell id less its ``-repN``);
    ``vocab_size`` (equal to ``table_size``) goes; the old flat ``cell_spec`` becomes the
    ``cell`` of today's suites (axes, ``data`` and the config sections it set)."""
    spec = {k: v for k, v in record["spec"].items() if k not in ("vocab_size", "cell_spec")}
    spec["measurement_id"] = _REPEAT_SUFFIX.sub("", record["cell_id"])
    if "cell_spec" in record["spec"]:
        spec["cell"] = _cell_from_v1(record["spec"]["cell_spec"])
    return {**record, "schema": SCHEMA, "spec": spec}


def _cell_from_v1(old: dict) -> dict:
    """A /1 ``cell_spec`` (flat axes) in the nested form of ``CellSpec.to_dict``."""
    cell = {"model": old["model"], "preset": old["preset"], "hardware": old["hardware"],
            "repeat": old["repeat"],
            "data": {"rows": old["rows"], "vocab": old["vocab"],
                     "threshold": old["threshold"], "seed": old["seed"]},
            "train": {"batch_size": old["batch_size"], "max_steps": old["steps"],
                      "warmup_steps": old["warmup_steps"], "seed": old["seed"],
                      "table_size": old["table_size"], "sparse": old["sparse"]}}
    if old["embedding"] == "hash":
        cell["embedding"] = {"kind": "hash", "permit_filter_value": old["permit"],
                             "evict_filter_value": old["evict"]}
    if old["mode"] != "standalone":
        cell["parallel"] = {"mode": old["mode"], "workers": old["workers"]}
    return cell


_MIGRATIONS = {SCHEMA_V1: _migrate_v1}


def migrate(record: dict) -> dict:
    """``record`` in the current schema: as it is, or migrated from an older version."""
    schema = record.get("schema") if isinstance(record, dict) else None
    if schema == SCHEMA:
        return record
    if schema in _MIGRATIONS:
        return _MIGRATIONS[schema](record)
    readable = ", ".join([SCHEMA, *_MIGRATIONS])
    raise RecordError(f"record.schema: {schema!r} cannot be read by this version of "
                      f"mindrec-bench (it reads {readable})")


def new_record(*, run_id: str, cell_id: str, suite: str | None, spec: dict,
               status: str = "ok", reason: str | None = None, metrics: dict | None = None,
               started_at: str | None = None) -> dict:
    """A record with this machine's environment and git state filled in."""
    from bench.job.measure import environment, git_state
    return {
        "schema": SCHEMA, "run_id": run_id, "cell_id": cell_id, "suite": suite,
        "started_at": started_at or now_iso(), "status": status, "reason": reason,
        "git": git_state(Path(__file__).resolve().parent), "env": environment(),
        "spec": spec, "metrics": metrics or {},
    }


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """A sortable run id from the current UTC time."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` (its directory made if missing) durably: a reader
    finds the old file or the whole new one (:func:`mindrec.files.write_durably`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durably(path, text.encode())


def write_record(path: str | Path, record: dict) -> None:
    """Validate and write one record as a JSON document."""
    write_atomic(path, json.dumps(validate(record), indent=2) + "\n")


def append_record(path: str | Path, record: dict) -> None:
    """Validate and append one record to a JSONL store; the file is replaced atomically,
    so a crash leaves either the old or the new file, never a torn line."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    write_atomic(path, old + json.dumps(validate(record), separators=(",", ":")) + "\n")


def read_records(path: str | Path) -> list[dict]:
    """All records of a JSONL store (or a single-record JSON file), migrated to the
    current schema and validated; a bad line fails with ``FILE:LINE: reason``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such result file")
    text = path.read_text(errors="replace")
    lines = [text] if path.suffix == ".json" else text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = str(path) if path.suffix == ".json" else f"{path}:{number}"
        try:
            records.append(validate(migrate(json.loads(line))))
        except json.JSONDecodeError as exc:
            raise RecordError(f"{where}: not JSON ({exc.msg} at column {exc.colno}); "
                              f"a truncated or damaged result file") from exc
        except RecordError as exc:
            raise RecordError(f"{where}: {exc}") from exc
    return records
