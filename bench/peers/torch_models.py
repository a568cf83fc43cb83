"""The reference models written in PyTorch, layer for layer as in ``mindrec.models``.

Same inputs (value-scaled field embeddings of ``(ids, vals)``), same layers, same
initial distributions (tables N(0, std^2), wide weights zero, dense layers PyTorch's
defaults, which MindSpore 2.x's ``nn.Dense`` shares), same loss (mean sigmoid
cross-entropy, Wide&Deep's L2 penalty entering through its gradient only, as
``mindrec.models.blocks.L2Gradient`` does). The optimizers are PyTorch's fastest correct
ones (:func:`optimizers`); the one difference of substance is the Wide&Deep wide part,
trained with FTRL on MindSpore and with Adam here (PyTorch has no FTRL).
"""
from __future__ import annotations

import torch
from torch import nn

from mindrec.config import (CrossStructure, DCNConfig, DCNV2Config, DeepFMConfig,
                            DLRMConfig, WideDeepConfig)
from mindrec.data.criteo import NUM_DENSE, NUM_FIELDS


def _table(rows: int, dim: int, sparse: bool, init_std: float) -> nn.Embedding:
    table = nn.Embedding(rows, dim, sparse=sparse)
    with torch.no_grad():
        if init_std > 0:
            table.weight.normal_(0.0, init_std)
        else:
            table.weight.zero_()
    return table


def _mlp(in_dim: int, layers: tuple[int, ...]) -> nn.Sequential:
    """Linear layers with a ReLU after each, as ``mindrec.models.blocks.MLP``."""
    cells, width = [], in_dim
    for out in layers:
        cells += [nn.Linear(width, out), nn.ReLU()]
        width = out
    return nn.Sequential(*cells)


def _scaled_rows(table: nn.Embedding, ids, vals):
    """(B, F) ids and values -> (B, F, dim) rows scaled by their field's value."""
    return table(ids) * vals.unsqueeze(-1)


class TorchWideDeep(nn.Module):
    """Wide&Deep (see ``mindrec.models.wide_deep``): logits (B, 1); training adds the
    gradient of the L2 penalty on the deep rows looked up in the batch."""

    def __init__(self, config: WideDeepConfig, rows: int, sparse: bool,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.wide_table = _table(rows, 1, sparse, 0.0)
        self.wide_bias = nn.Parameter(torch.zeros(1))
        self.deep_table = _table(rows, config.emb_dim, sparse, config.init_std)
        self.deep_tower = _mlp(num_fields * config.emb_dim, config.deep_layers)
        self.deep_head = nn.Linear(config.deep_layers[-1], 1)
        self.deep_l2 = config.deep_l2

    def forward(self, ids, vals):
        wide = (self.wide_table(ids).squeeze(-1) * vals).sum(1, keepdim=True) + self.wide_bias
        rows = _scaled_rows(self.deep_table, ids, vals)
        _add_l2_gradient(rows, self.deep_l2)
        return wide + self.deep_head(self.deep_tower(rows.flatten(1)))


class TorchDCN(nn.Module):
    """Deep & Cross Network (see ``mindrec.models.dcn``): logits (B, 1)."""

    def __init__(self, config: DCNConfig, rows: int, sparse: bool,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        init_std = config.init_std if config.init_std is not None else config.emb_dim ** -0.5
        self.table = _table(rows, config.emb_dim, sparse, init_std)
        x0_dim = num_fields * config.emb_dim
        std = x0_dim ** -0.5
        self.cross_w = nn.ParameterList(nn.Parameter(torch.randn(x0_dim, 1) * std)
                                        for _ in range(config.cross_layers))
        self.cross_b = nn.ParameterList(nn.Parameter(torch.zeros(x0_dim))
                                        for _ in range(config.cross_layers))
        self.deep_tower = _mlp(x0_dim, config.deep_layers)
        self.head = nn.Linear(x0_dim + config.deep_layers[-1], 1)

    def forward(self, ids, vals):
        x0 = _scaled_rows(self.table, ids, vals).flatten(1)
        return self.head(torch.cat((self._cross(x0), self.deep_tower(x0)), 1))

    def _cross(self, x0):
        """The cross layers in the factored form of ``mindrec.models.blocks.CrossNet``
        (the same function and gradients as the layer-by-layer form)."""
        if not len(self.cross_w):
            return x0
        projections = x0 @ torch.cat(tuple(self.cross_w), 1)
        scale = x0.new_ones((x0.shape[0], 1))
        bias_sum = x0.new_zeros((1, x0.shape[1]))
        for i, (w, b) in enumerate(zip(self.cross_w, self.cross_b)):
            dot = scale * projections[:, i:i + 1] + bias_sum @ w
            scale = scale + dot
            bias_sum = bias_sum + b
        return x0 * scale + bias_sum


class TorchDeepFM(nn.Module):
    """DeepFM (see ``mindrec.models.deepfm``): logits (B, 1); training adds the gradient
    of the L2 penalty on the embedding rows looked up in the batch."""

    def __init__(self, config: DeepFMConfig, rows: int, sparse: bool,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.first_order = _table(rows, 1, sparse, config.init_std)
        self.bias = nn.Parameter(torch.zeros(1))
        self.table = _table(rows, config.emb_dim, sparse, config.init_std)
        self.deep_tower = _mlp(num_fields * config.emb_dim, config.deep_layers)
        self.deep_head = nn.Linear(config.deep_layers[-1], 1)
        self.deep_l2 = config.deep_l2

    def forward(self, ids, vals):
        first = (self.first_order(ids).squeeze(-1) * vals).sum(1, keepdim=True)
        rows = _scaled_rows(self.table, ids, vals)
        _add_l2_gradient(rows, self.deep_l2)
        summed = rows.sum(1)
        pairs = 0.5 * (summed * summed - (rows * rows).sum(1)).sum(1, keepdim=True)
        return first + pairs + self.deep_head(self.deep_tower(rows.flatten(1))) + self.bias


def _add_l2_gradient(rows, l2: float) -> None:
    """Add the gradient of ``l2 * sum(rows^2) / B`` to ``rows``' when training, as
    ``mindrec.models.blocks.L2Gradient`` does."""
    if rows.requires_grad and l2:
        scale = 2.0 * l2 / rows.shape[0]
        kept = rows.detach()
        rows.register_hook(lambda grad: grad + scale * kept)


class TorchDCNV2(nn.Module):
    """DCN-V2 (see ``mindrec.models.dcnv2``): logits (B, 1)."""

    def __init__(self, config: DCNV2Config, rows: int, sparse: bool,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.stacked = config.structure is CrossStructure.STACKED
        self.table = _table(rows, config.emb_dim, sparse, config.init_std)
        x0_dim = num_fields * config.emb_dim
        rank = config.low_rank
        self.cross = nn.ModuleList(
            nn.Linear(x0_dim, x0_dim) if rank is None else
            nn.Sequential(nn.Linear(x0_dim, rank, bias=False), nn.Linear(rank, x0_dim))
            for _ in range(config.cross_layers))
        self.deep_tower = _mlp(x0_dim, config.deep_layers)
        self.head = nn.Linear(config.deep_layers[-1] + (0 if self.stacked else x0_dim), 1)

    def forward(self, ids, vals):
        x0 = _scaled_rows(self.table, ids, vals).flatten(1)
        x = x0
        for layer in self.cross:
            x = x0 * layer(x) + x
        if self.stacked:
            return self.head(self.deep_tower(x))
        return self.head(torch.cat((x, self.deep_tower(x0)), 1))


class TorchDLRM(nn.Module):
    """DLRM (see ``mindrec.models.dlrm``): logits (B, 1)."""

    def __init__(self, config: DLRMConfig, rows: int, sparse: bool,
                 num_fields: int = NUM_FIELDS):
        super().__init__()
        self.table = _table(rows, config.emb_dim, sparse, config.init_std)
        self.bottom = _mlp(NUM_DENSE, config.bottom_layers)
        vectors = num_fields - NUM_DENSE + 1
        self.top = _mlp(config.emb_dim + vectors * (vectors - 1) // 2, config.top_layers)
        self.top.append(nn.Linear(config.top_layers[-1], 1))
        lower = torch.tril_indices(vectors, vectors, -1)
        self.register_buffer("pairs", lower[0] * vectors + lower[1], persistent=False)

    def forward(self, ids, vals):
        dense = self.bottom(vals[:, :NUM_DENSE])
        rows = _scaled_rows(self.table, ids[:, NUM_DENSE:], vals[:, NUM_DENSE:])
        every = torch.cat((dense.unsqueeze(1), rows), 1)
        dots = torch.bmm(every, every.transpose(1, 2)).flatten(1)
        return self.top(torch.cat((dense, dots[:, self.pairs]), 1))


MODELS = {"wide_deep": TorchWideDeep, "dcn": TorchDCN, "deepfm": TorchDeepFM,
          "dcnv2": TorchDCNV2, "dlrm": TorchDLRM}


def build_torch_model(model: str, config, rows: int, sparse: bool) -> nn.Module:
    """The PyTorch twin of ``model`` with tables of ``rows`` rows (sparse gradients when
    ``sparse``)."""
    return MODELS[model](config, rows, sparse)


def tables(module: nn.Module) -> list[nn.Parameter]:
    """The embedding tables of ``module``."""
    return [m.weight for m in module.modules() if isinstance(m, nn.Embedding)]


def optimizers(model: str, module: nn.Module, config, sparse: bool
               ) -> tuple[list[torch.optim.Optimizer], str]:
    """PyTorch's fastest correct optimizers for ``module``, and their description.

    Dense parameters take ``Adam(fused=True)`` (FACTS.md: up to 2.8x faster than the
    default loop on large tables). Sparse tables take ``SparseAdam``, which updates only
    the rows a batch touched. Wide&Deep's wide part takes Adam at the wide learning
    rate where MindSpore takes FTRL. A model configured for SGD (DLRM's reference
    optimizer) takes SGD, sparse gradients included.
    """
    if model == "wide_deep":
        wide = [module.wide_table.weight, module.wide_bias]
        groups = [(wide, config.wide_lr), (_others(module, wide), config.deep_lr)]
    else:
        groups = [(list(module.parameters()), config.lr)]
    if getattr(config, "optimizer", "adam") == "sgd":
        return [torch.optim.SGD(params, lr=lr) for params, lr in groups], "SGD"
    made, parts = [], []
    for params, lr in groups:
        sparse_tables = [p for p in params if sparse and any(p is t for t in tables(module))]
        dense = [p for p in params if not any(p is t for t in sparse_tables)]
        if sparse_tables:
            made.append(torch.optim.SparseAdam(sparse_tables, lr=lr, eps=config.adam_eps))
        made.append(torch.optim.Adam(dense, lr=lr, eps=config.adam_eps, fused=True))
    parts.append("SparseAdam on the tables + fused Adam" if sparse else "fused Adam")
    if model == "wide_deep":
        parts.append("wide part on Adam (MindSpore: FTRL)")
    return made, "; ".join(parts)


def _others(module: nn.Module, excluded: list[nn.Parameter]) -> list[nn.Parameter]:
    return [p for p in module.parameters() if not any(p is e for e in excluded)]
