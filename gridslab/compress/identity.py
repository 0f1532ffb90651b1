"""Identity: every patch is a token (the upper bound on what a compressor can keep).

feats ``[B, H, W, C]`` -> tokens ``[B, H*W, C]`` (row-major), coords = patch centres,
mask all True. ``k`` and the per-sample budget ``ctx.k`` are ignored: ``K_max = H*W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import CompressContext, Compressor, CompressorConfig, Tokens, patch_centres


@dataclass
class IdentityConfig(CompressorConfig):
    """No options of its own; ``k`` is ignored."""

    name: str = "identity"


@COMPRESSORS.register("identity", config=IdentityConfig)
class Identity(Compressor):
    """All ``H*W`` patch tokens; ``K_max`` depends on the grid (see ``num_tokens``)."""

    honours_budget = False

    def __init__(self, cfg: IdentityConfig, dim: int):
        super().__init__()

    @classmethod
    def check_k(cls, name: str, k: int, height: int, width: int) -> None:
        """Any ``k`` is accepted: identity ignores it (checkpoints of identity runs trained with a
        large ``k`` meaning "all patches" load as they are)."""

    def num_tokens(self, height: int, width: int) -> int:
        """``H*W``: one slot per patch."""
        return height * width

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(``[B, H*W, C]``, patch centres ``[B, H*W, 2]``, all-True mask)."""
        batch, height, width, dim = feats.shape
        tokens = feats.reshape(batch, height * width, dim)
        coords = patch_centres(height, width, feats.device).to(feats.dtype).expand(batch, -1, -1)
        mask = torch.ones(batch, height * width, dtype=torch.bool, device=feats.device)
        return Tokens(tokens, coords, mask)
