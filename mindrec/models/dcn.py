"""Deep & Cross Network (Wang et al., 2017) as in MindSpore's deep_and_cross model.

Value-scaled field embeddings are flattened into x0, which feeds both a cross network
(``x_{l+1} = x0 (x_l^T w_l) + b_l + x_l``) and an MLP; a linear head on their
concatenation gives the logit. One Adam (LazyAdam when sparse) trains everything.
"""
from __future__ import annotations

from mindspore import nn, ops

from mindrec.config import DCNConfig
from mindrec.data.criteo import NUM_FIELDS
from mindrec.embedding.tables import TableFactory
from mindrec.models.blocks import MLP, CrossNet, FeatureEmbedding, mlp_flops
from mindrec.models.optimizers import adam


class DCN(nn.Cell):
    """Deep & Cross Network CTR model.

    Args:
        config (DCNConfig): widths, depth and optimizer settings.
        tables (TableFactory): makes the embedding table.
        num_fields (int): fields per sample (39 for Criteo).

    Shapes:
        ids (B, F) int32, vals (B, F) float32 -> logits (B, 1).
    """

    def __init__(self, config: DCNConfig, tables: TableFactory, num_fields: int = NUM_FIELDS):
        super().__init__()
        self.config = config
        init_std = config.init_std if config.init_std is not None else config.emb_dim ** -0.5
        self.embedding = FeatureEmbedding(tables(config.emb_dim, init_std))
        x0_dim = num_fields * config.emb_dim
        self.cross = CrossNet(x0_dim, config.cross_layers)
        self.deep_tower = MLP(x0_dim, config.deep_layers)
        self.head = nn.Dense(x0_dim + self.deep_tower.out_dim, 1)

    def construct(self, ids, vals):
        rows = self.embedding(ids, vals)
        x0 = ops.reshape(rows, (rows.shape[0], -1))
        both = ops.concat((self.cross(x0), self.deep_tower(x0)), 1)
        return self.head(both)

    @staticmethod
    def flops_per_sample(config: DCNConfig, num_fields: int = NUM_FIELDS) -> int:
        """Forward FLOPs per sample: value scaling, cross layers, MLP and head."""
        x0 = num_fields * config.emb_dim
        return (x0 + CrossNet.flops(x0, config.cross_layers)
                + mlp_flops(x0, config.deep_layers) + 2 * (x0 + config.deep_layers[-1]))

    @staticmethod
    def table_values_per_id(config: DCNConfig) -> int:
        """Table values per id: one ``emb_dim``-wide row."""
        return config.emb_dim

    def optimizers(self) -> list[nn.Optimizer]:
        """One Adam over all parameters (LazyAdam when the table is sparse)."""
        return [adam(self.trainable_params(), self.embedding.table.sparse, self.config.lr,
                     self.config.adam_eps)]
