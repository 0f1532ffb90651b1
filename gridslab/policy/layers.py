"""Pre-LN transformer blocks shared by the vision encoder, the language encoder and the backbone.

``TransformerBlock`` is a plain batch-first pre-LN block with a key-padding mask; it avoids
``nn.TransformerEncoder``'s fast path, whose nested-tensor handling of masks differs between
train and eval.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class SelfAttention(nn.Module):
    """Multi-head self-attention over ``[B, N, C]`` with an optional key-padding mask."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """x: ``[B, N, C]``; key_mask: ``[B, N]``, bool (True on keys that may be attended)
        or float key weights in [0, 1] (attention to key n is scaled by its weight; 0 masks it).

        A row with no valid key attends to all keys (its output is padding anyway), which
        keeps every value finite.
        """
        batch, length, dim = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None
        if key_mask is not None and key_mask.dtype == torch.bool:
            key_mask = key_mask | ~key_mask.any(dim=1, keepdim=True)
            attn_mask = key_mask[:, None, None, :]
        elif key_mask is not None:
            weights = torch.where(~(key_mask > 0).any(dim=1, keepdim=True), torch.ones_like(key_mask), key_mask)
            # log(0) = -inf masks the key; the clamp keeps the gradient finite where a weight underflows
            log_weights = torch.where(weights > 0, weights.clamp_min(1e-30).log(), torch.full_like(weights, float("-inf")))
            attn_mask = log_weights[:, None, None, :].to(qkv.dtype)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        return self.proj(attended.transpose(1, 2).reshape(batch, length, dim))


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` (GELU), on ``[B, N, C]``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        """x: ``[B, N, C]``; key_mask: ``[B, N]`` bool (True = real token), float key
        weights, or None (see ``SelfAttention``)."""
        x = x + self.attn(self.attn_norm(x), key_mask)
        return x + self.mlp(self.mlp_norm(x))


def additive_key_mask(keys: Tensor, dtype: torch.dtype) -> Tensor:
    """Keys ``[B, N]`` (bool, True = may be attended, or float weights in [0, 1]) -> an additive
    attention bias ``[B, 1, 1, N]`` in ``dtype``: log(weight) (0 on a True key), the dtype's
    most negative value on a masked one. As in ``SelfAttention``, a row with no valid key
    attends to all keys."""
    weights = keys.to(dtype)
    weights = torch.where(~(weights > 0).any(dim=1, keepdim=True), torch.ones_like(weights), weights)
    masked = torch.full_like(weights, torch.finfo(dtype).min)
    return torch.where(weights > 0, weights.clamp_min(1e-30).log(), masked)[:, None, None, :]


def run_blocks(blocks: nn.ModuleList, x: Tensor, key_mask: Tensor | None, checkpointing: bool) -> Tensor:
    """Apply ``blocks`` in order to ``x [B, N, C]``; with ``checkpointing`` (and grad on) each
    block's activations are recomputed in the backward pass instead of stored."""
    for block in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, key_mask, use_reentrant=False)
        else:
            x = block(x, key_mask)
    return x
