"""Top-K: discrete saliency, FastV-style; the trade-off GridS claims to break.

feats ``[B, H, W, C]`` -> keys ``W_k feats`` ``[B, N, d]`` (N = H*W) and queries ``[B, T, d]``
-> attention ``softmax_N(q k^T / sqrt(d))`` ``[B, T, N]`` -> saliency = its mean over the
valid queries ``[B, N]`` -> the K most salient patches -> tokens ``[B, K, C]``, coords = their
centres ``[B, K, 2]``.

Queries: ``query="text"`` projects the instruction tokens (``W_q ctx.text``, padding
excluded by ``ctx.text_mask``); ``query="learned"`` uses one learned query vector, for a
policy without instructions.

Gradient to the scorer. Picking is discrete, so each picked feature is multiplied by
``1 + s - stop_grad(s)`` (``s`` = its saliency): the value is exactly 1, so the forward pass
returns the raw features, while the backward pass gets ``d token / d s = feature`` and the
scoring layers learn which patches help the loss (a straight-through estimator).

Order: slots ``< ctx.k[b]`` hold the ``k[b]`` most salient patches, so a per-sample budget
keeps the best ones; within the kept and the dropped group slots follow patch (raster)
order, which is stable when saliencies swap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import (
    CompressContext,
    Compressor,
    CompressorConfig,
    Tokens,
    budget_mask,
    masked_mean,
    order_within_budget,
    take_patches,
)
from gridslab.errors import UserError

QUERIES = ("text", "learned")


@dataclass
class TopKConfig(CompressorConfig):
    """query: "text" (instruction tokens, needs ctx.text) or "learned" (one learned vector);
    attention_dim: width d of the query/key projections."""

    name: str = "topk"
    query: str = "text"
    attention_dim: int = 64


@COMPRESSORS.register("topk", config=TopKConfig)
class TopK(Compressor):
    """K most salient patches: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: TopKConfig, dim: int):
        super().__init__()
        if cfg.query not in QUERIES:
            raise UserError(f"compressor.query must be one of {', '.join(QUERIES)}, got {cfg.query!r}")
        if cfg.attention_dim < 1:
            raise UserError(f"compressor.attention_dim must be >= 1, got {cfg.attention_dim}")
        self.k_max = cfg.k
        self.key = nn.Linear(dim, cfg.attention_dim)
        self.uses_text = cfg.query == "text"
        if cfg.query == "text":
            self.text_query = nn.Linear(dim, cfg.attention_dim)
            self.learned_query = None
        else:
            self.text_query = None
            self.learned_query = nn.Parameter(torch.randn(cfg.attention_dim) / math.sqrt(cfg.attention_dim))

    def num_tokens(self, height: int, width: int) -> int:
        """``K``; raises if ``K > H*W``."""
        self.check_k("topk", self.k_max, height, width)
        return self.k_max

    def saliency(self, feats: Tensor, ctx: CompressContext) -> Tensor:
        """``[B, N]`` attention of the queries to the N = H*W patches (rows sum to 1)."""
        batch, height, width, dim = feats.shape
        keys = self.key(feats.reshape(batch, height * width, dim))  # [B, N, d]
        if self.text_query is not None:
            if ctx.text is None:
                raise UserError(
                    "compressor 'topk' with query=text needs an instruction, but the policy "
                    "passed no text; set compressor.query=learned"
                )
            queries, query_mask = self.text_query(ctx.text), ctx.text_mask  # [B, T, d]
        else:
            queries, query_mask = self.learned_query.expand(batch, 1, -1), None
        attention = (queries @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])).softmax(dim=-1)  # [B, T, N]
        return masked_mean(attention, query_mask)

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(``[B, K, C]``, centres ``[B, K, 2]``, mask ``[B, K]``)."""
        batch, height, width, _ = feats.shape
        self.check_k("topk", self.k_max, height, width)
        scores = self.saliency(feats, ctx)
        most_salient = scores.topk(self.k_max, dim=1).indices  # best first
        picks = order_within_budget(most_salient, ctx.k, height * width)
        tokens, coords = take_patches(feats, picks)
        picked_scores = scores.gather(1, picks)
        tokens = tokens * (1.0 + picked_scores - picked_scores.detach()).unsqueeze(-1)
        return Tokens(tokens, coords, budget_mask(ctx.k, batch, self.k_max, feats.device))
