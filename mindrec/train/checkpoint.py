"""Checkpoints in safetensors format, written atomically.

FACTS.md: safetensors saves a 135 MiB model in 0.04 s (the ckpt format takes 0.3 s).
Only the network's parameters are saved (optimizer state is not part of a checkpoint).
Parameters are keyed by their path in the network (``deep_tower.net.0.weight``), not by
``Parameter.name``: graph compilation of a step with two optimizers renames parameters
(``loss_cell.network....``), which would make checkpoints depend on how they were trained.
"""
from __future__ import annotations

import os
from pathlib import Path

import mindspore as ms
from mindspore import nn


def save(network: nn.Cell, path: str | Path) -> Path:
    """Save the parameters of ``network`` to ``path`` (.safetensors) atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: checkpoint files must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.safetensors")
    try:
        ms.save_checkpoint([{"name": name, "data": param}
                            for name, param in network.parameters_and_names()],
                           str(tmp), format="safetensors")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(network: nn.Cell, path: str | Path) -> None:
    """Load ``path`` into ``network``; every parameter of the network must be present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    params = ms.load_checkpoint(str(path), format="safetensors")
    names = dict(network.parameters_and_names())
    missing = sorted(set(names) - set(params))
    if missing:
        raise KeyError(f"{path}: checkpoint lacks parameters {', '.join(missing)}")
    for name, param in names.items():
        param.set_data(params[name])
