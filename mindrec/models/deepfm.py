"""DeepFM (Guo et al., 2017) as in MindRec's DeepFM on Criteo.

A factorization machine and an MLP share the value-scaled field embeddings: the logit is
a bias, the first-order term (one weight per id, scaled by the field's value), the FM's
pairwise interactions ``sum_{i<j} <v_i, v_j>`` (computed as ``((sum v)^2 - sum v^2) / 2``
over the embedding width) and the MLP's output. The sum over fields is a matmul with a
stack of identity matrices: with MindSpore 2.10's CPU ReduceSum over the middle axis
of (B, F, dim) the FM term took 5.3 ms forward and backward at B=1000, with the matmul
and last-axis sums 3.7 (docs/pytorch-peer.md). One Adam (LazyAdam when the tables are
sparse) trains everything.

Deviations from MindRec's, on purpose, as for Wide&Deep: the L2 penalty (``deep_l2``)
applies to the embedding rows looked up in the batch, through its gradient only
(:class:`L2Gradient`), rather than to whole tables; tables start from N(0, std^2) rather
than U(-0.01, 0.01); the MLP has no dropout (MindRec keeps 0.9) and training is fp32
without loss scaling.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Zero, initializer

from mindrec.config import DeepFMConfig
from mindrec.data.criteo import NUM_FIELDS
from mindrec.embedding.tables import TableFactory
from mindrec.models.blocks import MLP, FeatureEmbedding, L2Gradient, mlp_flops
from mindrec.models.optimizers import adam


class DeepFM(nn.Cell):
    """DeepFM CTR model.

    Args:
        config (DeepFMConfig): widths, regularisation and optimizer settings.
        tables (TableFactory): makes both tables (the first-order weights, the
            embeddings) over the dataset's one id space.
        num_fields (int): fields per sample (39 for Criteo).

    Shapes:
        ids (B, F) int32, vals (B, F) float32 -> logits (B, 1).
    """

    def __init__(self, config: DeepFMConfig, tables: TableFactory,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.config = config
        self.first_order = tables(1, config.init_std)
        self.bias = Parameter(initializer(Zero(), (1,), ms.float32), name="bias")
        self.embedding = FeatureEmbedding(tables(config.emb_dim, config.init_std))
        self.deep_tower = MLP(num_fields * config.emb_dim, config.deep_layers)
        self.deep_head = nn.Dense(self.deep_tower.out_dim, 1)
        self.l2 = L2Gradient(config.deep_l2)
        # (F * dim, dim): row f * dim + k holds a one in column k.
        self.field_sum = Tensor(np.tile(np.eye(config.emb_dim, dtype=np.float32),
                                        (num_fields, 1)))
        self.matmul = ops.MatMul()

    def construct(self, ids, vals):
        first = ops.reduce_sum(ops.squeeze(self.first_order(ids), -1) * vals, 1)
        rows = self.l2(self.embedding(ids, vals))
        flat = ops.reshape(rows, (rows.shape[0], -1))
        summed = self.matmul(flat, self.field_sum)
        pairs = 0.5 * (ops.reduce_sum(summed * summed, 1) - ops.reduce_sum(flat * flat, 1))
        deep = self.deep_head(self.deep_tower(flat))
        return ops.expand_dims(first + pairs, -1) + deep + self.bias

    @staticmethod
    def flops_per_sample(config: DeepFMConfig, num_fields: int = NUM_FIELDS) -> int:
        """Forward FLOPs per sample: value scaling, the first-order sum, the FM term
        (sums, squares and the difference over the embedding width) and the MLP."""
        x0 = num_fields * config.emb_dim
        return x0 + 2 * num_fields + 3 * x0 + 3 * config.emb_dim + mlp_flops(
            x0, (*config.deep_layers, 1))

    @staticmethod
    def table_values_per_id(config: DeepFMConfig) -> int:
        """Table values per id: an embedding of ``emb_dim`` plus one first-order weight."""
        return config.emb_dim + 1

    def optimizers(self) -> list[nn.Optimizer]:
        """One Adam over all parameters (LazyAdam when the tables are sparse)."""
        return [adam(self.trainable_params(), self.embedding.table.sparse, self.config.lr,
                     self.config.adam_eps)]
