"""Pre-LN transformer blocks and the policy backbone built on them.

``TransformerBlock`` (also used by the vision and language encoders) is a plain
batch-first pre-LN block with a key-padding mask; it avoids ``nn.TransformerEncoder``'s
fast path, whose nested-tensor handling of masks differs between train and eval.

``Backbone`` runs over the sequence

    [instruction tokens (T), visual tokens of camera 1 (K1) + camera embedding, ...,
     one proprio token, H learned action queries]

and returns the H action-query outputs ``[B, H, D]``. Token roles are marked by learned
type/camera embeddings, never by sequence index, and padded slots (text padding,
compressor slots beyond a sample's budget) are excluded as attention keys, so a sample's
output does not depend on how much padding its batch carries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gridslab.compress.base import Tokens
from gridslab.policy.config import BackboneConfig


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


def run_blocks(blocks: nn.ModuleList, x: Tensor, key_mask: Tensor | None, checkpointing: bool) -> Tensor:
    """Apply ``blocks`` in order to ``x [B, N, C]``; with ``checkpointing`` (and grad on) each
    block's activations are recomputed in the backward pass instead of stored."""
    for block in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, key_mask, use_reentrant=False)
        else:
            x = block(x, key_mask)
    return x


class TokenSequence(nn.Module):
    """Builds the backbone's input: projections into width ``dim``, type/camera embeddings and
    the H learned action queries (``assemble``). Subclasses run a transformer over it.

    text_dim / vision_dim: widths of the incoming text and visual tokens (projected to D);
    num_cameras: visual token groups, each with its own learned embedding;
    proprio_dim: raw proprio width (already normalised by the caller); chunk: H queries.
    """

    def __init__(self, dim: int, text_dim: int, vision_dim: int, num_cameras: int, proprio_dim: int, chunk: int):
        super().__init__()
        self.dim = dim
        self.text_proj = nn.Linear(text_dim, dim)
        self.vision_proj = nn.Linear(vision_dim, dim)
        self.proprio_proj = nn.Linear(proprio_dim, dim)
        self.text_type = nn.Parameter(torch.zeros(1, 1, dim))
        self.camera_embed = nn.Parameter(torch.zeros(num_cameras, dim))
        self.action_queries = nn.Parameter(torch.zeros(1, chunk, dim))
        for embedding in (self.text_type, self.camera_embed, self.action_queries):
            nn.init.trunc_normal_(embedding, std=0.02)

    def assemble(self, text: Tensor, text_mask: Tensor, visual: list[Tokens], proprio: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence ``[B, N, D]`` and its attention keys ``[B, N]`` (bool, or float
        weights when a camera's Tokens carry soft ``weight``); the last H are the queries.

        text: ``[B, T, text_dim]``, text_mask: ``[B, T]`` bool; visual: one ``Tokens``
        (tokens ``[B, K_i, vision_dim]``, mask ``[B, K_i]``, optional soft weight ``[B, K_i]``)
        per camera, in camera order;
        proprio: ``[B, P]`` normalised.
        """
        batch = proprio.shape[0]
        always = torch.ones(batch, 1, dtype=torch.bool, device=proprio.device)
        queries = self.action_queries.expand(batch, -1, -1)
        parts = [self.text_proj(text) + self.text_type]
        masks = [text_mask]
        for camera_index, camera_tokens in enumerate(visual):
            parts.append(self.vision_proj(camera_tokens.tokens) + self.camera_embed[camera_index])
            masks.append(camera_tokens.mask)
        parts += [self.proprio_proj(proprio)[:, None, :], queries]
        masks += [always, always.expand(batch, queries.shape[1])]
        sequence = torch.cat(parts, dim=1)
        key_mask = torch.cat(masks, dim=1)
        if any(camera_tokens.weight is not None for camera_tokens in visual):  # soft slots: float key weights
            weights = [text_mask.to(sequence.dtype)] + [t.key_weights() for t in visual]
            key_mask = torch.cat(weights + [torch.ones_like(sequence[:, :1 + queries.shape[1], 0])], dim=1)
        return sequence, key_mask


class Backbone(TokenSequence):
    """The built-in pre-LN transformer over the assembled sequence -> ``[B, H, D]``.

    checkpointing: recompute the blocks in the backward pass.
    """

    def __init__(self, cfg: BackboneConfig, text_dim: int, vision_dim: int, num_cameras: int,
                 proprio_dim: int, chunk: int, checkpointing: bool = False):
        super().__init__(cfg.dim, text_dim, vision_dim, num_cameras, proprio_dim, chunk)
        self.checkpointing = checkpointing
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, text: Tensor, text_mask: Tensor, visual: list[Tokens], proprio: Tensor) -> Tensor:
        """Action-query features ``[B, H, D]`` (arguments as in ``assemble``)."""
        sequence, key_mask = self.assemble(text, text_mask, visual, proprio)
        sequence = run_blocks(self.blocks, sequence, key_mask, self.checkpointing)
        return self.norm(sequence[:, -self.action_queries.shape[1]:])
