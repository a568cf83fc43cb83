"""Model registry: name -> network class. Every model takes (config, tables), where
``tables`` is a :class:`~mindrec.embedding.tables.TableFactory`, and returns
its logits from ``construct(ids, vals)`` and its optimizers from
``optimizers()``."""
from __future__ import annotations

from mindrec.config import (SPARSE_AUTO_MIN_ROWS, ConfigError, ParallelMode, RunConfig,
                            SparseMode)
from mindrec.embedding.tables import TableFactory


def _classes() -> dict[str, type]:
    from mindrec.models.dcn import DCN
    from mindrec.models.dcnv2 import DCNV2
    from mindrec.models.deepfm import DeepFM
    from mindrec.models.dlrm import DLRM
    from mindrec.models.wide_deep import WideDeep
    return {"wide_deep": WideDeep, "dcn": DCN, "deepfm": DeepFM, "dcnv2": DCNV2,
            "dlrm": DLRM}


def use_sparse(run: RunConfig, vocab_size: int) -> bool:
    """Resolve the sparse setting of ``run`` for tables of ``vocab_size`` rows.

    Data-parallel training averages gradients with AllReduce, which has no sparse form
    on CPU, so its tables take dense updates (large tables belong in hybrid mode).
    """
    mode = run.train.sparse
    if run.parallel.mode is ParallelMode.DATA_PARALLEL:
        return False
    if mode is SparseMode.AUTO:
        return vocab_size >= SPARSE_AUTO_MIN_ROWS
    return mode is SparseMode.ON


def build_model(run: RunConfig, vocab_size: int, rank: int = 0):
    """Instantiate ``run.model`` for a dataset with ``vocab_size`` ids, as worker
    ``rank`` of ``run.parallel.workers`` (hybrid mode shards the tables by rank).

    The network's ``hash_index`` is the key index of its CPU hash tables (None for
    static tables): its ids must be turned into slots before each step.
    """
    classes = _classes()
    if run.model not in classes:
        raise ConfigError(f"unknown model {run.model!r}; choose from {', '.join(classes)}")
    shard = (rank, run.parallel.workers) if run.parallel.mode is ParallelMode.HYBRID else None
    tables = TableFactory(run.embedding, vocab_size, use_sparse(run, vocab_size),
                          seed=run.train.seed, shard=shard, cache=run.cache)
    network = classes[run.model](run.model_config, tables)
    network.hash_index = tables.index
    return network


def flops_per_sample(run: RunConfig) -> int:
    """Forward FLOPs per sample of ``run.model`` (the roofline's numerator)."""
    return _classes()[run.model].flops_per_sample(run.model_config)


# Every optimizer here keeps two float32 slots per table value (Adam m and v, FTRL
# accum and linear) beside the value itself.
_TABLE_BYTES_PER_VALUE = 4 * 3


def table_memory_bytes(run: RunConfig, rows: int) -> int:
    """Bytes of ``run``'s embedding tables of ``rows`` ids with their optimizer state,
    summed over the workers: every data-parallel worker holds whole tables, hybrid
    workers a share each."""
    per_id = _classes()[run.model].table_values_per_id(run.model_config)
    copies = run.parallel.workers if run.parallel.mode is ParallelMode.DATA_PARALLEL else 1
    return copies * rows * per_id * _TABLE_BYTES_PER_VALUE
