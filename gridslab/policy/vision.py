"""ViT image encoder with a visual-token compressor inserted after block L.

    uint8 [B, H, W, 3] -> /255, ImageNet mean/std -> stem -> [B, g, g, C] + 2-D positions
    -> blocks 1..L on all g*g patch tokens -> compressor -> Tokens [B, K, C]
    -> blocks L+1..depth on the K tokens (key-padding mask from Tokens.mask) -> LayerNorm

``g = image_size / patch_size`` (84 / 12 = 7). The "conv" stem (strided convs with
GroupNorm + GELU, then a 1x1 conv; Xiao et al. 2021, "Early convolutions help
transformers see better") is what lets the ViT train from scratch on small robot
datasets; "patchify" is the plain linear patch embedding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridslab.compress.base import CompressContext, Compressor, Tokens
from gridslab.policy.config import VisionConfig
from gridslab.policy.layers import TransformerBlock, run_blocks

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # per-channel pixel statistics in [0, 1], the ViT's and DINOv2's
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_GROUPS = 8


def prime_strides(patch_size: int) -> list[int]:
    """Prime factors of ``patch_size``, largest first (12 -> [3, 2, 2]): one conv each."""
    strides, remaining, factor = [], patch_size, 2
    while remaining > 1:
        while remaining % factor == 0:
            strides.append(factor)
            remaining //= factor
        factor += 1
    return sorted(strides, reverse=True)


def conv_stem(dim: int, patch_size: int) -> nn.Sequential:
    """Strided conv stem ``[B, 3, S, S] -> [B, dim, S/p, S/p]``.

    One conv per prime factor s of ``patch_size`` (kernel 2s-1, stride s, so 3x3 for
    stride 2), widths doubling up to ``dim``, each with GroupNorm + GELU; then a 1x1 conv.
    """
    strides = prime_strides(patch_size)
    layers: list[nn.Module] = []
    in_channels = 3
    for index, stride in enumerate(strides):
        out_channels = max(dim >> (len(strides) - 1 - index), MAX_GROUPS)
        layers += [
            nn.Conv2d(in_channels, out_channels, 2 * stride - 1, stride, stride - 1, bias=False),
            nn.GroupNorm(math.gcd(MAX_GROUPS, out_channels), out_channels),
            nn.GELU(),
        ]
        in_channels = out_channels
    layers.append(nn.Conv2d(in_channels, dim, 1))
    return nn.Sequential(*layers)


def patchify_stem(dim: int, patch_size: int) -> nn.Conv2d:
    """Linear patch embedding ``[B, 3, S, S] -> [B, dim, S/p, S/p]`` (kernel = stride = p)."""
    return nn.Conv2d(3, dim, patch_size, patch_size)


class PatchEncoder(nn.Module):
    """What every image encoder shares: ``images uint8 [B, H, W, 3], ctx -> Tokens [B, K, C]``.

    Subclasses set ``image_size`` (input side), ``grid_size`` (g), ``dim`` (C),
    ``compressor``, the ``image_mean``/``image_std`` buffers ``[1, 3, 1, 1]``, and implement
    ``patch_features`` (``[B, g, g, C]``), ``encode_tokens`` (blocks after compression) and
    ``flop_component`` (which of their modules count as vision before / after compression).
    """

    image_size: int
    grid_size: int
    dim: int
    compressor: Compressor

    @property
    def tokens_per_image(self) -> int:
        """Slots the compressor emits per image (``K_max``) for this encoder's patch grid."""
        return self.compressor.num_tokens(self.grid_size, self.grid_size)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, S, S]`` normalised, resized to ``image_size``."""
        pixels = images.permute(0, 3, 1, 2).float().div_(255.0)
        if pixels.shape[-2:] != (self.image_size, self.image_size):
            pixels = F.interpolate(
                pixels, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        return (pixels - self.image_mean) / self.image_std

    def patch_features(self, images: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def encode_tokens(self, compressed: Tokens) -> Tokens:  # pragma: no cover - interface
        raise NotImplementedError

    def flop_component(self, path: str) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def tokens_from_features(self, feats: Tensor, ctx: CompressContext, weight: Tensor | None = None) -> Tokens:
        """Patch features ``[B, g, g, C]`` -> compressed, encoded Tokens.

        With a per-sample budget ``ctx.k`` (and a compressor that honours it) the slots past
        the batch's largest k are dropped before any later block, so a batch of one runs on
        exactly k tokens. ``weight``: ``[B, K_max]`` soft slot presence (learned budget).
        """
        compressed = self.compressor(feats, ctx)
        if weight is not None:
            compressed = Tokens(compressed.tokens, compressed.coords, compressed.mask, weight)
        if ctx.k is not None and self.compressor.honours_budget:
            compressed = compressed.first(int(ctx.k.max()))
        return self.encode_tokens(compressed)

    def forward(self, images: Tensor, ctx: CompressContext) -> Tokens:
        """images: uint8 ``[B, H, W, 3]`` -> Tokens (tokens ``[B, K, C]``, coords ``[B, K, 2]``
        (x, y) in [0, 1], mask ``[B, K]``)."""
        return self.tokens_from_features(self.patch_features(images), ctx)


class VisionEncoder(PatchEncoder):
    """The built-in ViT for one camera (see the module docstring).

    ``grid_blocks`` run on the full ``g x g`` patch grid, ``token_blocks`` on the K
    compressed tokens; ``compressor`` maps ``[B, g, g, C]`` features to ``Tokens``;
    checkpointing: recompute the blocks in the backward pass.
    """

    def __init__(self, cfg: VisionConfig, compressor: Compressor, checkpointing: bool = False):
        super().__init__()
        self.image_size = cfg.image_size
        self.grid_size = cfg.grid_size
        self.dim = cfg.dim
        self.checkpointing = checkpointing
        make_stem = conv_stem if cfg.stem == "conv" else patchify_stem
        self.stem = make_stem(cfg.dim, cfg.patch_size)
        self.positions = nn.Parameter(torch.zeros(1, cfg.grid_size, cfg.grid_size, cfg.dim))
        nn.init.trunc_normal_(self.positions, std=0.02)
        self.grid_blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.compress_after))
        self.compressor = compressor
        self.token_blocks = nn.ModuleList(
            TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth - cfg.compress_after)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def patch_features(self, images: Tensor) -> Tensor:
        """Patch features after the stem, positions and grid blocks: ``[B, g, g, C]``."""
        features = self.stem(self.normalize(images)).permute(0, 2, 3, 1) + self.positions
        batch = features.shape[0]
        flat = features.reshape(batch, self.grid_size * self.grid_size, self.dim)
        flat = run_blocks(self.grid_blocks, flat, None, self.checkpointing)
        return flat.view(batch, self.grid_size, self.grid_size, self.dim)

    def encode_tokens(self, compressed: Tokens) -> Tokens:
        """The token blocks over the K slots (keys masked / weighted), then LayerNorm."""
        keys = compressed.mask if compressed.weight is None else compressed.key_weights()
        tokens = run_blocks(self.token_blocks, compressed.tokens, keys, self.checkpointing)
        return Tokens(self.norm(tokens), compressed.coords, compressed.mask, compressed.weight)

    def flop_component(self, path: str) -> str | None:
        """Which FLOPs component the module at ``path`` (relative to this encoder, e.g.
        ``grid_blocks.0``) counts toward; None for the modules inside those."""
        head, _, index = path.partition(".")
        if "." in index:
            return None
        if head in ("stem", "grid_blocks") and (head == "stem") == (index == ""):
            return "vision_before"
        if head in ("norm", "token_blocks") and (head == "norm") == (index == ""):
            return "vision_after"
        return "compressor" if path == "compressor" else None
