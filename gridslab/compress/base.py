"""The one interface every visual-token compressor implements.

``forward(feats [B, H, W, C], ctx) -> Tokens(tokens [B, K, C], coords [B, K, 2], mask [B, K])``

* ``coords`` are the (x, y) centres of what each token summarises, in [0, 1] image
  units (x to the right, y downwards; (0, 0) is the top-left image corner).
* ``mask`` is True for a valid token. Compressors always emit ``K_max`` slots; a
  per-sample budget ``ctx.k`` (``[B]`` long) marks slots ``>= k`` invalid, and the
  backbone ignores them through its key-padding mask.
* ``max_k(H, W)`` (classmethod) is the largest meaningful K on an ``H x W`` patch grid and
  ``check_k`` refuses more, from the config alone (``gridslab.compress.check_k``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gridslab.errors import UserError


@dataclass
class Tokens:
    """Compressed visual tokens for one camera.

    tokens: ``[B, K, C]`` features; coords: ``[B, K, 2]`` (x, y) in [0, 1];
    mask: ``[B, K]`` bool, True where the slot holds a real token;
    weight: ``[B, K]`` float in [0, 1] or None, each slot's soft presence (a learned budget
    while training): attention to the slot is scaled by it, on top of the mask.
    """

    tokens: Tensor
    coords: Tensor
    mask: Tensor
    weight: Tensor | None = None

    def key_weights(self) -> Tensor:
        """``[B, K]`` float attention-key weights: the mask times ``weight`` (if any)."""
        keys = self.mask.to(self.tokens.dtype)
        return keys if self.weight is None else keys * self.weight

    def first(self, slots: int) -> "Tokens":
        """The first ``slots`` slots (a budget keeps the leading slots valid)."""
        weight = None if self.weight is None else self.weight[:, :slots]
        return Tokens(self.tokens[:, :slots], self.coords[:, :slots], self.mask[:, :slots], weight)


@dataclass
class CompressContext:
    """What a compressor may condition on besides the feature map.

    text: ``[B, T, C]`` instruction token embeddings already projected to the
    vision width ``C`` (None when the policy has no instruction);
    text_mask: ``[B, T]`` bool, True on real (non-padding) text tokens;
    k: ``[B]`` long per-sample token budget (``1 <= k <= K_max``) or None for all slots;
    noise_seed: ``[B]`` long per-sample seed of a random draw (set by rollouts from the
    episode seed and the policy-call index) or None;
    camera_index: which of the policy's cameras the feature map comes from (0, 1, ...).
    """

    text: Tensor | None = None
    text_mask: Tensor | None = None
    k: Tensor | None = None
    noise_seed: Tensor | None = None
    camera_index: int = 0


@dataclass
class CompressorConfig:
    """Options every compressor has. ``k``: tokens per image (``K_max``)."""

    name: str = "grids"
    k: int = 4


class Compressor(nn.Module):
    """Base class: subclasses set ``k_max`` and implement ``forward``."""

    k_max: int
    uses_text: bool = False  # True when forward reads ctx.text (the policy then projects it)
    honours_budget: bool = True  # False when ctx.k is ignored (identity keeps every patch)

    @classmethod
    def max_k(cls, height: int, width: int) -> int:
        """Largest meaningful ``k`` on an ``H x W`` patch grid: ``H*W``.

        A compressor that picks patches has no more to pick, and one whose tokens are linear
        reads of the patch features (pooling, soft maps, bilinear points) spans at most the
        ``H*W`` patch features, so further tokens carry nothing new. Identity ignores ``k``
        (it keeps every patch) and accepts any.
        """
        return height * width

    @classmethod
    def check_k(cls, name: str, k: int, height: int, width: int) -> None:
        """Raise a one-line ``UserError`` if ``k`` exceeds ``max_k(H, W)``; builds nothing."""
        limit = cls.max_k(height, width)
        if k > limit:
            raise UserError(
                f"compressor {name!r}: k={k} exceeds the {height * width} patches of the "
                f"{height}x{width} feature map; valid: 1 <= k <= {limit}"
            )

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


def most_square_grid(k: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == k`` and ``rows <= cols`` as close as possible
    (4 -> 2x2, 8 -> 2x4, 7 -> 1x7)."""
    rows = next(r for r in range(math.isqrt(k), 0, -1) if k % r == 0)
    return rows, k // rows


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values [B, T, ...]`` over T where ``mask [B, T]`` is True (all of T if None)
    -> ``[B, ...]``; a row with no True entry gives zeros."""
    if mask is None:
        return values.mean(dim=1)
    weights = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - 2)))
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def order_within_budget(picks: Tensor, k: Tensor | None, num_patches: int) -> Tensor:
    """Reorder picked patch indices ``picks [B, K]`` (best or first pick first).

    Slots ``< k[b]`` get the first ``k[b]`` picks and slots ``>= k[b]`` the rest, each group
    in patch (raster) order: a budget keeps the best picks, and the order is stable.
    """
    kept = budget_mask(k, picks.shape[0], picks.shape[1], picks.device)
    sort_key = picks + (~kept).long() * num_patches
    return picks.gather(1, sort_key.argsort(dim=1))


def take_patches(feats: Tensor, picks: Tensor) -> tuple[Tensor, Tensor]:
    """Features ``[B, K, C]`` and centres ``[B, K, 2]`` (x, y) of patches ``picks [B, K]``
    (row-major indices) of ``feats [B, H, W, C]``."""
    batch, height, width, dim = feats.shape
    flat = feats.reshape(batch, height * width, dim)
    tokens = flat.gather(1, picks[..., None].expand(-1, -1, dim))
    centres = patch_centres(height, width, feats.device).to(feats.dtype)
    return tokens, centres[picks]
