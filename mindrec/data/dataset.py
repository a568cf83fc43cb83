"""A converted dataset directory: its file names and its ``meta.json``.

Readers (the trainer, the harness) use this module; only the converter writes datasets.
"""
from __future__ import annotations

import json
from pathlib import Path

META_SCHEMA = "mindrec-dataset/1"
META_FILE = "meta.json"
FILES = {"train": "train.mindrecord", "test": "test.mindrecord", "vocabulary": "vocabulary.npz"}


def load_meta(data_dir: str | Path) -> dict:
    """Read ``meta.json`` of a converted dataset directory."""
    path = Path(data_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{data_dir}: not a converted dataset (no {META_FILE})")
    meta = json.loads(path.read_text())
    if meta.get("schema") != META_SCHEMA:
        raise ValueError(f"{path}: schema {meta.get('schema')!r}, expected {META_SCHEMA!r}")
    return meta
