"""Checkpoints in safetensors format, written atomically.

FACTS.md: safetensors saves a 135 MiB model in 0.04 s (the ckpt format takes 0.3 s).
Only the network's parameters are saved (optimizer state is not part of a checkpoint),
plus, for hash embeddings, the key index (``hash_index.*`` entries) without which the
table rows mean nothing.
Parameters are keyed by their path in the network (``deep_tower.net.0.weight``), not by
``Parameter.name``: graph compilation of a step with two optimizers renames parameters
(``loss_cell.network....``), which would make checkpoints depend on how they were trained.
"""
from __future__ import annotations

import os
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from mindrec.embedding.sharded import ShardedEmbedding

_INDEX_PREFIX = "hash_index."


def save(network: nn.Cell, path: str | Path) -> Path:
    """Save the parameters of ``network`` to ``path`` (.safetensors) atomically."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: checkpoint files must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.safetensors")
    try:
        entries = [{"name": name, "data": param} for name, param in network.parameters_and_names()]
        index = getattr(network, "hash_index", None)
        if index is not None:
            entries += [{"name": _INDEX_PREFIX + key, "data": Tensor(array)}
                        for key, array in index.state().items()]
        ms.save_checkpoint(entries, str(tmp), format="safetensors")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(network: nn.Cell, path: str | Path) -> None:
    """Load ``path`` into ``network``; every parameter of the network must be present.

    A row-sharded table (a hybrid-parallel worker) takes its own rows of the full table
    saved by a standalone run, so a parallel job can start from a standalone checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    params = ms.load_checkpoint(str(path), format="safetensors")
    names = dict(network.parameters_and_names())
    missing = sorted(set(names) - set(params))
    if missing:
        raise KeyError(f"{path}: checkpoint lacks parameters {', '.join(missing)}")
    index = getattr(network, "hash_index", None)
    if index is not None:
        state = {name[len(_INDEX_PREFIX):]: np.asarray(value.asnumpy())
                 for name, value in params.items() if name.startswith(_INDEX_PREFIX)}
        if not state:
            raise KeyError(f"{path}: checkpoint has no hash index for the network's hash tables")
        index.load_state(state)
    shards = {id(cell.table): cell for _, cell in network.cells_and_names()
              if isinstance(cell, ShardedEmbedding)}
    for name, param in names.items():
        value = params[name]
        if id(param) in shards and value.shape != param.shape:
            shards[id(param)].load_full(value.asnumpy())
        else:
            param.set_data(value)
