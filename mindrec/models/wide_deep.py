"""Wide&Deep (Cheng et al., 2016) as trained by the original MindRec on Criteo.

The wide part is one weight per id (a table of width 1) summed over the fields, trained
with FTRL; the deep part is a value-scaled embedding per field fed to an MLP, trained
with Adam (LazyAdam when the tables are sparse). The logit is wide + deep.

Deviation from the original, on purpose: the L2 penalty (``deep_l2``) applies to the
deep rows looked up in the batch rather than to the whole deep table on every step.
Penalising the whole table makes every step's gradient table-sized, which FACTS.md
measures as the main reason the original network is slower; per-row decay keeps the
gradient sparse. The penalty enters through its gradient only (:class:`L2Gradient`), so
the loss reported is the data loss. Loss scaling (1024 in the original) is omitted:
training is fp32.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import Zero, initializer

from mindrec.config import WideDeepConfig
from mindrec.data.criteo import NUM_FIELDS
from mindrec.embedding.tables import TableFactory
from mindrec.models.blocks import MLP, FeatureEmbedding, L2Gradient, mlp_flops
from mindrec.models.optimizers import DenseFTRL, adam


class WideDeep(nn.Cell):
    """Wide&Deep CTR model.

    Args:
        config (WideDeepConfig): widths, regularisation and optimizer settings.
        tables (TableFactory): makes both tables (the dataset's one id space).
        num_fields (int): fields per sample (39 for Criteo).

    Shapes:
        ids (B, F) int32, vals (B, F) float32 -> logits (B, 1).
    """

    def __init__(self, config: WideDeepConfig, tables: TableFactory,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.config = config
        # Wide weights start at zero, the state FTRL itself implies (its weights are a
        # function of its accumulators): dense FTRL would zero any other start on the
        # first step while sparse FTRL keeps it for untouched rows.
        self.wide_table = tables(1, init_std=0.0)
        self.wide_bias = Parameter(initializer(Zero(), (1,), ms.float32), name="wide_bias")
        self.deep_embedding = FeatureEmbedding(tables(config.emb_dim, config.init_std))
        self.deep_tower = MLP(num_fields * config.emb_dim, config.deep_layers)
        self.deep_head = nn.Dense(self.deep_tower.out_dim, 1)
        self.deep_l2 = L2Gradient(config.deep_l2)

    def construct(self, ids, vals):
        wide = ops.reduce_sum(ops.squeeze(self.wide_table(ids), -1) * vals, 1)
        wide = ops.expand_dims(wide, -1) + self.wide_bias
        rows = self.deep_l2(self.deep_embedding(ids, vals))
        deep = self.deep_head(self.deep_tower(ops.reshape(rows, (rows.shape[0], -1))))
        return wide + deep

    @staticmethod
    def flops_per_sample(config: WideDeepConfig, num_fields: int = NUM_FIELDS) -> int:
        """Forward FLOPs per sample: value scaling, the wide sum and the deep MLP."""
        x0 = num_fields * config.emb_dim
        return x0 + 2 * num_fields + mlp_flops(x0, (*config.deep_layers, 1))

    @staticmethod
    def table_values_per_id(config: WideDeepConfig) -> int:
        """Table values per id: a deep row of ``emb_dim`` plus one wide weight."""
        return config.emb_dim + 1

    def optimizers(self) -> list[nn.Cell]:
        """FTRL on the wide part, (Lazy)Adam on the deep part, as in the original (FTRL
        in elementwise ops when the wide table is dense: :class:`DenseFTRL`)."""
        cfg = self.config
        wide = [self.wide_table.table, self.wide_bias]
        wide_ids = {id(p) for p in wide}
        deep = [p for p in self.trainable_params() if id(p) not in wide_ids]
        ftrl = nn.FTRL if self.wide_table.sparse else DenseFTRL
        return [
            ftrl(wide, learning_rate=cfg.wide_lr, l1=cfg.ftrl_l1, l2=cfg.ftrl_l2,
                 initial_accum=cfg.ftrl_initial_accum),
            adam(deep, self.deep_embedding.table.sparse, cfg.deep_lr, cfg.adam_eps),
        ]
