"""Synthetic datasets for sweep cells, generated once and cached by their parameters."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import TextIO

from mindrec.data import synthetic
from mindrec.data.convert import convert
from mindrec.data.dataset import META_SCHEMA


def dataset_key(rows: int, vocab: int, seed: int, threshold: int) -> str:
    """Cache key: every parameter that changes the converted bytes, plus format versions."""
    params = {"rows": rows, "vocab": vocab, "seed": seed, "threshold": threshold,
              "generator": synthetic.SCHEMA, "dataset": META_SCHEMA}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return f"synth-r{rows}-v{vocab}-s{seed}-t{threshold}-{digest}"


def cached_dataset(cache_dir: Path, rows: int, vocab: int, seed: int, threshold: int,
                   progress: TextIO | None = sys.stderr) -> Path:
    """Converted synthetic dataset for these parameters, made on first use.

    Conversion is atomic, so a dataset whose ``meta.json`` exists is complete; the raw
    text is deleted once converted (the truth it carried lives on in ``meta.json``).
    """
    root = Path(cache_dir) / dataset_key(rows, vocab, seed, threshold)
    converted = root / "converted"
    if (converted / "meta.json").is_file():
        return converted
    raw = root / "raw"
    if progress is not None:
        print(f"making dataset {root.name}", file=progress, flush=True)
    synthetic.generate(synthetic.SyntheticSpec(rows=rows, vocab=vocab, seed=seed), raw,
                       progress=progress)
    convert(raw / "train.txt", converted, threshold=threshold, overwrite=True,
            progress=progress)
    shutil.rmtree(raw)
    return converted
