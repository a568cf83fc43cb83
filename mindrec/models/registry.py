"""Model registry: name -> network class. Every model takes (config, tables), where
``tables`` is a :class:`~mindrec.embedding.tables.TableFactory`, and returns
``(logits, penalty)`` from ``construct(ids, vals)`` and its optimizers from
``optimizers()``."""
from __future__ import annotations

from mindrec.config import SPARSE_AUTO_MIN_ROWS, ConfigError, RunConfig, SparseMode
from mindrec.embedding.tables import TableFactory


def _classes() -> dict[str, type]:
    from mindrec.models.dcn import DCN
    from mindrec.models.wide_deep import WideDeep
    return {"wide_deep": WideDeep, "dcn": DCN}


def use_sparse(mode: SparseMode, vocab_size: int) -> bool:
    """Resolve the sparse setting for a table of ``vocab_size`` rows."""
    if mode is SparseMode.AUTO:
        return vocab_size >= SPARSE_AUTO_MIN_ROWS
    return mode is SparseMode.ON


def build_model(run: RunConfig, vocab_size: int):
    """Instantiate ``run.model`` for a dataset with ``vocab_size`` ids.

    The network's ``hash_index`` is the key index of its CPU hash tables (None for
    static tables): its ids must be turned into slots before each step.
    """
    classes = _classes()
    if run.model not in classes:
        raise ConfigError(f"unknown model {run.model!r}; choose from {', '.join(classes)}")
    tables = TableFactory(run.embedding, vocab_size, use_sparse(run.train.sparse, vocab_size),
                          seed=run.train.seed)
    network = classes[run.model](run.model_config, tables)
    network.hash_index = tables.index
    return network


def flops_per_sample(run: RunConfig) -> int:
    """Forward FLOPs per sample of ``run.model`` (the roofline's numerator)."""
    return _classes()[run.model].flops_per_sample(run.model_config)
