"""DCN-V2 (Wang et al., 2021): matrix cross layers beside or beneath an MLP.

Value-scaled field embeddings are flattened into x0. The cross network applies
``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` with full or low-rank ``W_l``
(:class:`~mindrec.models.blocks.MatrixCrossNet`). ``stacked``: an MLP on the cross
network's output, then the head. ``parallel``: the cross network and an MLP both on x0,
the head on their concatenation. One Adam (LazyAdam when sparse) trains everything.
"""
from __future__ import annotations

from mindspore import nn, ops

from mindrec.config import CrossStructure, DCNV2Config
from mindrec.data.criteo import NUM_FIELDS
from mindrec.embedding.tables import TableFactory
from mindrec.models.blocks import MLP, FeatureEmbedding, MatrixCrossNet, mlp_flops
from mindrec.models.optimizers import adam


class DCNV2(nn.Cell):
    """DCN-V2 CTR model.

    Args:
        config (DCNV2Config): widths, cross layers, rank, structure and optimizer.
        tables (TableFactory): makes the embedding table.
        num_fields (int): fields per sample (39 for Criteo).

    Shapes:
        ids (B, F) int32, vals (B, F) float32 -> logits (B, 1).
    """

    def __init__(self, config: DCNV2Config, tables: TableFactory,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.config = config
        self.stacked = config.structure is CrossStructure.STACKED
        self.embedding = FeatureEmbedding(tables(config.emb_dim, config.init_std))
        x0_dim = num_fields * config.emb_dim
        self.cross = MatrixCrossNet(x0_dim, config.cross_layers, config.low_rank)
        self.deep_tower = MLP(x0_dim, config.deep_layers)
        head_in = self.deep_tower.out_dim + (0 if self.stacked else x0_dim)
        self.head = nn.Dense(head_in, 1)

    def construct(self, ids, vals):
        rows = self.embedding(ids, vals)
        x0 = ops.reshape(rows, (rows.shape[0], -1))
        crossed = self.cross(x0)
        if self.stacked:
            return self.head(self.deep_tower(crossed))
        return self.head(ops.concat((crossed, self.deep_tower(x0)), 1))

    @staticmethod
    def flops_per_sample(config: DCNV2Config, num_fields: int = NUM_FIELDS) -> int:
        """Forward FLOPs per sample: value scaling, cross layers, MLP and head."""
        x0 = num_fields * config.emb_dim
        stacked = config.structure is CrossStructure.STACKED
        head_in = config.deep_layers[-1] + (0 if stacked else x0)
        return (x0 + MatrixCrossNet.flops(x0, config.cross_layers, config.low_rank)
                + mlp_flops(x0, config.deep_layers) + 2 * head_in)

    @staticmethod
    def table_values_per_id(config: DCNV2Config) -> int:
        """Table values per id: one ``emb_dim``-wide row."""
        return config.emb_dim

    def optimizers(self) -> list[nn.Optimizer]:
        """One Adam over all parameters (LazyAdam when the table is sparse)."""
        return [adam(self.trainable_params(), self.embedding.table.sparse, self.config.lr,
                     self.config.adam_eps)]
