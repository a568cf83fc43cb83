"""Synthetic datasets for sweep cells, generated once and cached by their parameters."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from mindrec.config import ConfigError
from mindrec.data import synthetic
from mindrec.data.criteo import DEFAULT_THRESHOLD
from mindrec.data.dataset import META_SCHEMA


@dataclass(frozen=True)
class DataSpec:
    """The synthetic dataset of a cell (suite keys ``data.*``)."""

    rows: int = 300_000
    vocab: int = synthetic.SyntheticSpec.vocab
    threshold: int = DEFAULT_THRESHOLD
    seed: int = 0
    zipf_exponent: float = synthetic.SyntheticSpec.zipf_exponent

    def __post_init__(self):
        for name in ("rows", "vocab"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.threshold < 0:
            raise ConfigError(f"data.threshold must not be negative, got {self.threshold}")
        if not 0.0 <= self.zipf_exponent <= 5.0:
            raise ConfigError(f"data.zipf_exponent must lie in [0, 5], got "
                              f"{self.zipf_exponent}")


def dataset_key(data: DataSpec) -> str:
    """Cache key: every parameter that changes the converted bytes, plus format versions."""
    params = {**dataclasses.asdict(data), "generator": synthetic.SCHEMA, "dataset": META_SCHEMA}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    zipf = "" if data.zipf_exponent == DataSpec.zipf_exponent else f"-z{data.zipf_exponent:g}"
    return (f"synth-r{data.rows}-v{data.vocab}-s{data.seed}-t{data.threshold}{zipf}"
            f"-{digest}")


def cached_dataset(cache_dir: Path, data: DataSpec,
                   progress: TextIO | None = sys.stderr) -> Path:
    """Converted synthetic dataset ``data``, made on first use.

    Conversion is atomic, so a dataset whose ``meta.json`` exists is complete; the raw
    text is deleted once converted (the truth it carried lives on in ``meta.json``).
    """
    from mindrec.data.convert import convert
    root = Path(cache_dir) / dataset_key(data)
    converted = root / "converted"
    if (converted / "meta.json").is_file():
        return converted
    raw = root / "raw"
    if progress is not None:
        print(f"making dataset {root.name}", file=progress, flush=True)
    synthetic.generate(synthetic.SyntheticSpec(rows=data.rows, vocab=data.vocab,
                                               seed=data.seed,
                                               zipf_exponent=data.zipf_exponent),
                       raw, progress=progress)
    convert(raw / "train.txt", converted, threshold=data.threshold, overwrite=True,
            progress=progress)
    shutil.rmtree(raw)
    return converted
