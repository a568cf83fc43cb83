"""Result records: the versioned schema, validation, and an atomic JSONL store.

One record per sweep cell (or per ``mindrec-bench train --out``). Keys carry their units
(``step_ms_p50``, ``peak_rss_mb``). A reader rejects records of another schema version.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

SCHEMA = "mindrec-bench/result/1"
STATUSES = ("ok", "skipped", "failed")

# Required keys per block and their JSON types (None allowed where the tuple has it).
_TOP = {"schema": str, "run_id": str, "cell_id": str, "suite": (str, type(None)),
        "started_at": str, "status": str, "reason": (str, type(None)), "git": dict,
        "env": dict, "spec": dict, "metrics": dict}
_GIT = {"commit": (str, type(None)), "dirty": (bool, type(None))}
_ENV = {"python": str, "mindspore": (str, type(None)), "numpy": (str, type(None)), "os": str,
        "cpu_model": str, "cores": int, "ram_gb": (int, float), "accelerator": str,
        "gpus": list}
_SPEC = {"model": str, "dataset": str, "rows": int, "vocab_size": int, "emb_dim": int,
         "batch_size": int, "embedding": str, "mode": str, "workers": int, "hardware": str,
         "steps": (int, type(None)), "seed": int}
_NUM = (int, float, type(None))
_OK_METRICS = {"samples_per_s": _NUM, "step_ms_p50": _NUM, "step_ms_p90": _NUM,
               "compile_s": _NUM, "peak_rss_mb": _NUM, "peak_device_mb": _NUM, "auc": _NUM,
               "logloss": _NUM, "bayes_auc": _NUM}


class RecordError(ValueError):
    """A record does not match the schema; the message names the key."""


def _check(block: dict, required: dict, where: str) -> None:
    for key, types in required.items():
        if key not in block:
            raise RecordError(f"{where}: missing key {key!r}")
        allowed = types if isinstance(types, tuple) else (types,)
        value = block[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise RecordError(f"{where}.{key}: {value!r} has the wrong type")


def validate(record: dict) -> dict:
    """Check ``record`` against the schema; returns it unchanged or raises RecordError."""
    _check(record, _TOP, "record")
    if record["schema"] != SCHEMA:
        raise RecordError(f"record.schema: {record['schema']!r}, expected {SCHEMA!r}")
    if record["status"] not in STATUSES:
        raise RecordError(f"record.status: {record['status']!r} not in {STATUSES}")
    if record["status"] != "ok" and not record["reason"]:
        raise RecordError(f"record.reason: a {record['status']} record needs a reason")
    _check(record["git"], _GIT, "record.git")
    _check(record["env"], _ENV, "record.env")
    _check(record["spec"], _SPEC, "record.spec")
    if record["status"] == "ok":
        _check(record["metrics"], _OK_METRICS, "record.metrics")
    return record


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
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    """All records of a JSONL store (or a single-record JSON file), validated."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        return [validate(json.loads(text))]
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(validate(json.loads(line)))
        except (json.JSONDecodeError, RecordError) as exc:
            raise RecordError(f"{path}:{number}: {exc}") from exc
    return records
