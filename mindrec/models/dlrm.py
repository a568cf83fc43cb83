"""DLRM (Naumov et al., 2019) as the reference implementation trains it on Criteo.

The 13 dense features (their values) go through a bottom MLP to an ``emb_dim``-wide
vector; the 26 categorical features are looked up (scaled by their values, 1 for a
category). The dot product of every pair among these 27 vectors, beside the bottom
MLP's output, feeds a top MLP that ends in the logit. SGD (the reference's) or Adam;
sparse tables take LazyAdam (MindSpore's CPU SGD has no row-wise form).
"""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn, ops

from mindrec.config import ConfigError, DLRMConfig
from mindrec.data.criteo import NUM_DENSE, NUM_FIELDS
from mindrec.embedding.tables import TableFactory
from mindrec.models.blocks import MLP, FeatureEmbedding, mlp_flops
from mindrec.models.optimizers import adam


def pair_count(vectors: int) -> int:
    """Distinct pairs among ``vectors`` vectors."""
    return vectors * (vectors - 1) // 2


class DLRM(nn.Cell):
    """DLRM CTR model with dot-product interactions.

    Args:
        config (DLRMConfig): MLP widths, embedding width and optimizer.
        tables (TableFactory): makes the embedding table (one id space; the dense
            fields' ids are not looked up).
        num_fields (int): fields per sample (39 for Criteo: 13 dense first).

    Shapes:
        ids (B, F) int32, vals (B, F) float32 -> logits (B, 1).
    """

    def __init__(self, config: DLRMConfig, tables: TableFactory,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.config = config
        self.embedding = FeatureEmbedding(tables(config.emb_dim, config.init_std))
        self.bottom = MLP(NUM_DENSE, config.bottom_layers)
        vectors = num_fields - NUM_DENSE + 1
        self.top = MLP(config.emb_dim + pair_count(vectors), (*config.top_layers, 1),
                       last_activation=False)
        lower = np.tril_indices(vectors, -1)
        self.pairs = Tensor((lower[0] * vectors + lower[1]).astype(np.int32))
        self.vectors = vectors
        self.batch_matmul = ops.BatchMatMul(transpose_b=True)

    def construct(self, ids, vals):
        dense = self.bottom(vals[:, :NUM_DENSE])
        rows = self.embedding(ids[:, NUM_DENSE:], vals[:, NUM_DENSE:])
        every = ops.concat((ops.expand_dims(dense, 1), rows), 1)
        dots = ops.reshape(self.batch_matmul(every, every), (-1, self.vectors * self.vectors))
        return self.top(ops.concat((dense, ops.gather(dots, self.pairs, 1)), 1))

    @staticmethod
    def flops_per_sample(config: DLRMConfig, num_fields: int = NUM_FIELDS) -> int:
        """Forward FLOPs per sample: the bottom MLP, value scaling, the (vectors x
        vectors) dot products as computed, and the top MLP."""
        vectors = num_fields - NUM_DENSE + 1
        return (mlp_flops(NUM_DENSE, config.bottom_layers)
                + (num_fields - NUM_DENSE) * config.emb_dim
                + 2 * vectors * vectors * config.emb_dim
                + mlp_flops(config.emb_dim + pair_count(vectors), (*config.top_layers, 1)))

    @staticmethod
    def table_values_per_id(config: DLRMConfig) -> int:
        """Table values per id: one ``emb_dim``-wide row."""
        return config.emb_dim

    def optimizers(self) -> list[nn.Optimizer]:
        """SGD or Adam over all parameters (LazyAdam when the table is sparse)."""
        cfg = self.config
        sparse = self.embedding.table.sparse
        if cfg.optimizer == "sgd":
            if sparse:
                raise ConfigError("model_config.optimizer sgd: MindSpore's CPU SGD has no "
                                  "row-wise (sparse) form; use adam, or train.sparse off")
            return [nn.SGD(self.trainable_params(), learning_rate=cfg.lr)]
        return [adam(self.trainable_params(), sparse, cfg.lr, cfg.adam_eps)]
