"""The one interface every visual-token compressor implements.

``forward(feats [B, H, W, C], ctx) -> Tokens(tokens [B, K, C], coords [B, K, 2], mask [B, K])``

* ``coords`` are the (x, y) centres of what each token summarises, in [0, 1] image
  units (x to the right, y downwards; (0, 0) is the top-left image corner).
* ``mask`` is True for a valid token. Compressors always emit ``K_max`` slots; a
  per-sample budget ``ctx.k`` (``[B]`` long) marks slots ``>= k`` invalid, and the
  backbone ignores them through its key-padding mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Tokens:
    """Compressed visual tokens for one camera.

    tokens: ``[B, K, C]`` features; coords: ``[B, K, 2]`` (x, y) in [0, 1];
    mask: ``[B, K]`` bool, True where the slot holds a real token.
    """

    tokens: Tensor
    coords: Tensor
    mask: Tensor


@dataclass
class CompressContext:
    """What a compressor may condition on besides the feature map.

    text: ``[B, T, C]`` instruction token embeddings already projected to the
    vision width ``C`` (None when the policy has no instruction);
    text_mask: ``[B, T]`` bool, True on real (non-padding) text tokens;
    k: ``[B]`` long per-sample token budget (``1 <= k <= K_max``) or None for all slots.
    """

    text: Tensor | None = None
    text_mask: Tensor | None = None
    k: Tensor | None = None


@dataclass
class CompressorConfig:
    """Options every compressor has. ``k``: tokens per image (``K_max``)."""

    name: str = "grids"
    k: int = 4


class Compressor(nn.Module):
    """Base class: subclasses set ``k_max`` and implement ``forward``."""

    k_max: int

    def num_tokens(self, height: int, width: int) -> int:
        """Slots emitted for an ``height x width`` patch grid (``K_max``)."""
        return self.k_max

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:  # pragma: no cover - interface
        raise NotImplementedError


def budget_mask(k: Tensor | None, batch: int, k_max: int, device: torch.device) -> Tensor:
    """``[B, K_max]`` bool mask, True for slot index ``< k[b]`` (all True if ``k`` is None)."""
    if k is None:
        return torch.ones(batch, k_max, dtype=torch.bool, device=device)
    slots = torch.arange(k_max, device=device)
    return slots[None, :] < k.to(device)[:, None]


def patch_centres(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """``[H*W, 2]`` (x, y) centres of the patches of an ``H x W`` grid in [0, 1], row-major."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)
