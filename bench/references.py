"""Published reference figures (``reference/published.yaml``): loading and validation.

Each entry is one published figure (an AUC, a logloss or a throughput) with the model,
dataset, split, hardware and settings it was measured with and the source it comes from.
The report sets measured results beside them; a gate may check against them. Unknown
keys are errors, as are duplicate ids and sources without an ``https://`` address.

Example::

    >>> from bench.references import load_published, published_auc
    >>> len(load_published()) > 0
    True
    >>> {e["model"] for e in published_auc("dcn")}
    {'dcn'}
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

SCHEMA = "mindrec-bench/published/1"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "reference" / "published.yaml"

MODELS = ("wide_deep", "dcn", "dcnv2", "deepfm", "dlrm", "dlrmv2")
DATASETS = ("criteo", "criteo-kaggle", "criteo-1tb", "criteo-x1", "criteo-x4-001",
            "criteo-1tb-multihot")
METRICS = ("auc", "logloss", "samples_per_s")
KINDS = ("measured", "target", "range")
COMPARISONS = (">=", "<=")

_OPT_STR = (str, type(None))
_NUM = (int, float)
# Key -> allowed types. Keys in _OPTIONAL may be absent; the others are required.
_ENTRY = {"id": str, "model": str, "dataset": str, "split": _OPT_STR, "metric": str,
          "unit": str, "kind": str, "value": _NUM + (type(None),), "value_min": _NUM,
          "value_max": _NUM, "comparison": str, "hardware": _OPT_STR,
          "devices": (int, type(None)), "software": _OPT_STR, "settings": dict,
          "source": dict}
_OPTIONAL = {"value", "value_min", "value_max", "comparison"}
_SOURCE = {"url": str, "file": _OPT_STR, "note": str}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _fail(where: str, key: str, problem: str) -> None:
    raise ValueError(f"{where}: {key}: {problem}")


def _check_keys(block: dict, spec: dict, optional: set, where: str) -> None:
    for key in block:
        if key not in spec:
            _fail(where, key, "unknown key")
    for key, types in spec.items():
        if key not in block:
            if key not in optional:
                _fail(where, key, "missing")
            continue
        allowed = types if isinstance(types, tuple) else (types,)
        value = block[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            _fail(where, key, f"{value!r} has the wrong type")


def _check_value(entry: dict, where: str) -> None:
    kind = entry["kind"]
    if kind == "range":
        for key in ("value_min", "value_max"):
            if key not in entry:
                _fail(where, key, "missing (kind: range needs value_min and value_max)")
        if entry["value_min"] > entry["value_max"]:
            _fail(where, "value_min", "greater than value_max")
    elif entry.get("value") is None:
        _fail(where, "value", f"missing (kind: {kind} needs a number)")
    if kind == "target" and entry.get("comparison") not in COMPARISONS:
        _fail(where, "comparison", f"kind: target needs one of {COMPARISONS}")
    if kind != "target" and "comparison" in entry:
        _fail(where, "comparison", "only a kind: target entry has a comparison")


def validate_entry(entry: object, index: int) -> dict:
    """Check one entry; raises ValueError naming the entry (id or index) and the key."""
    where = f"published entry #{index}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: not a mapping")
    if isinstance(entry.get("id"), str):
        where = f"published entry {entry['id']!r} (#{index})"
    _check_keys(entry, _ENTRY, _OPTIONAL, where)
    if not _SLUG.match(entry["id"]):
        _fail(where, "id", "must be a lowercase slug (a-z, 0-9, -)")
    for key, allowed in (("model", MODELS), ("dataset", DATASETS), ("metric", METRICS),
                         ("kind", KINDS)):
        if entry[key] not in allowed:
            _fail(where, key, f"{entry[key]!r} is not one of {', '.join(allowed)}")
    _check_value(entry, where)
    _check_keys(entry["source"], _SOURCE, set(), f"{where}.source")
    if not entry["source"]["url"].startswith("https://"):
        _fail(f"{where}.source", "url", "must start with https://")
    return entry


def load_published(path: str | Path | None = None) -> list[dict]:
    """All entries of the published-figures file, validated (default: the repo's file).

    Args:
        path: a YAML file with ``schema`` and ``entries``; None for
            ``reference/published.yaml`` of this repository.

    Raises ValueError naming the entry and key of the first problem found.
    """
    path = Path(path) if path is not None else DEFAULT_PATH
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or set(doc) != {"schema", "entries"}:
        raise ValueError(f"{path}: expected exactly the keys 'schema' and 'entries'")
    if doc["schema"] != SCHEMA:
        raise ValueError(f"{path}: schema: {doc['schema']!r}, expected {SCHEMA!r}")
    if not isinstance(doc["entries"], list):
        raise ValueError(f"{path}: entries: expected a list")
    seen: dict[str, int] = {}
    for index, entry in enumerate(doc["entries"]):
        try:
            validate_entry(entry, index)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if entry["id"] in seen:
            raise ValueError(f"{path}: published entry {entry['id']!r} (#{index}): id: "
                             f"duplicate of entry #{seen[entry['id']]}")
        seen[entry["id"]] = index
    return doc["entries"]


def published_auc(model: str, entries: list[dict] | None = None) -> list[dict]:
    """The AUC entries for ``model`` (from ``entries``, default the repo's file)."""
    entries = load_published() if entries is None else entries
    return [e for e in entries if e["model"] == model and e["metric"] == "auc"]


def format_value(entry: dict) -> str:
    """The figure as text: ``0.80937``, ``>= 0.80275``, ``0.8025-0.8032``, ``267,558``."""
    def num(x: float) -> str:
        return f"{x:,.0f}" if entry["metric"] == "samples_per_s" else str(x)
    if entry["kind"] == "range":
        return f"{num(entry['value_min'])}-{num(entry['value_max'])}"
    if entry["kind"] == "target":
        return f"{entry['comparison']} {num(entry['value'])}"
    return num(entry["value"])


def source_label(entry: dict) -> str:
    """Short link text for an entry's source: the host and the repository and file
    (``github.com: mindrec benchmarks/README.md``) or the page's last two path parts."""
    url = urlsplit(entry["source"]["url"])
    parts = [p for p in url.path.split("/") if p]
    if "blob" in parts:  # OWNER/REPO/blob/BRANCH/PATH: the repository and the file
        at = parts.index("blob")
        return f"{url.netloc}: {parts[at - 1]} {'/'.join(parts[at + 2:][-2:])}"
    return f"{url.netloc}: {'/'.join(parts[-2:])}"
