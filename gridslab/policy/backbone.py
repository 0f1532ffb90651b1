"""The policy backbone: a transformer (``gridslab.policy.layers``) over every token.

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
from torch import Tensor, nn

from gridslab.compress.base import Tokens
from gridslab.policy.config import BackboneConfig
from gridslab.policy.layers import TransformerBlock, run_blocks


class TokenSequence(nn.Module):
    """Builds the backbone's input: projections into width ``dim``, type/camera embeddings and
    the H learned action queries (``assemble``). Subclasses run a transformer over it.

    text_dim / vision_dim: widths of the incoming text and visual tokens (projected to D;
    text_dim 0: the text arrives already in width D, as an LM's own token embeddings, and
    enters unprojected, without a type embedding);
    num_cameras: visual token groups, each with its own learned embedding;
    proprio_dim: raw proprio width (already normalised by the caller); chunk: H queries
    (0 = none: a head that reads the prefix, ``forward(..., prefix=True)``, needs no queries).
    """

    def __init__(self, dim: int, text_dim: int, vision_dim: int, num_cameras: int, proprio_dim: int, chunk: int):
        super().__init__()
        self.dim = dim
        self.text_proj = nn.Linear(text_dim, dim) if text_dim else None
        self.vision_proj = nn.Linear(vision_dim, dim)
        self.proprio_proj = nn.Linear(proprio_dim, dim)
        self.text_type = nn.Parameter(torch.zeros(1, 1, dim)) if text_dim else None
        self.camera_embed = nn.Parameter(torch.zeros(num_cameras, dim))
        self.action_queries = nn.Parameter(torch.zeros(1, chunk, dim)) if chunk else None
        for embedding in (self.text_type, self.camera_embed, self.action_queries):
            if embedding is not None:
                nn.init.trunc_normal_(embedding, std=0.02)

    def assemble(self, text: Tensor, text_mask: Tensor, visual: list[Tokens], proprio: Tensor) -> tuple[Tensor, Tensor]:
        """The sequence ``[B, N, D]`` and its attention keys ``[B, N]`` (bool, or float
        weights when a camera's Tokens carry soft ``weight``); the last H are the queries
        (none when built with chunk 0).

        text: ``[B, T, text_dim]`` (``[B, T, D]`` with text_dim 0), text_mask: ``[B, T]`` bool; visual: one ``Tokens``
        (tokens ``[B, K_i, vision_dim]``, mask ``[B, K_i]``, optional soft weight ``[B, K_i]``)
        per camera, in camera order;
        proprio: ``[B, P]`` normalised.
        """
        batch = proprio.shape[0]
        always = torch.ones(batch, 1, dtype=torch.bool, device=proprio.device)
        queries = (
            self.action_queries.expand(batch, -1, -1)
            if self.action_queries is not None
            else proprio.new_zeros(batch, 0, self.dim)
        )
        parts = [text if self.text_proj is None else self.text_proj(text) + self.text_type]
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
            key_mask = torch.cat(weights + [torch.ones_like(sequence[:, : 1 + queries.shape[1], 0])], dim=1)
        return sequence, key_mask


class Backbone(TokenSequence):
    """The built-in pre-LN transformer over the assembled sequence -> ``[B, H, D]``.

    checkpointing: recompute the blocks in the backward pass.
    """

    def __init__(
        self,
        cfg: BackboneConfig,
        text_dim: int,
        vision_dim: int,
        num_cameras: int,
        proprio_dim: int,
        chunk: int,
        checkpointing: bool = False,
    ):
        super().__init__(cfg.dim, text_dim, vision_dim, num_cameras, proprio_dim, chunk)
        self.checkpointing = checkpointing
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(
        self, text: Tensor, text_mask: Tensor, visual: list[Tokens], proprio: Tensor, prefix: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Action-query features ``[B, H, D]`` (arguments as in ``assemble``), or with ``prefix``
        (a backbone built with chunk 0) the final states over the whole prefix ``[B, N, D]``
        and its attention keys ``[B, N]``."""
        sequence, key_mask = self.assemble(text, text_mask, visual, proprio)
        sequence = self.norm(run_blocks(self.blocks, sequence, key_mask, self.checkpointing))
        if prefix:
            return sequence, key_mask
        return sequence[:, -self.action_queries.shape[1] :]
