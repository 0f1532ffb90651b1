"""TokenLearner (RT-1): K learned soft spatial attention maps pool the feature map.

feats ``[B, H, W, C]`` -> LayerNorm -> MLP(C -> hidden -> K) per patch -> softmax over the
N = H*W patches -> maps ``[B, K, N]`` -> tokens = map-weighted sums of the features
``[B, K, C]``, coords = map-weighted mean patch centre ``[B, K, 2]`` (x, y) in [0, 1]
(a convex combination of centres, differentiable). Slots ``>= ctx.k[b]`` are masked.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import CompressContext, Compressor, CompressorConfig, Tokens, budget_mask, patch_centres
from gridslab.errors import UserError


@dataclass
class TokenLearnerConfig(CompressorConfig):
    """hidden: width of the per-patch MLP that scores the K maps."""

    name: str = "tokenlearner"
    hidden: int = 64


@COMPRESSORS.register("tokenlearner", config=TokenLearnerConfig)
class TokenLearner(Compressor):
    """K soft spatial poolings: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: TokenLearnerConfig, dim: int):
        super().__init__()
        if cfg.hidden < 1:
            raise UserError(f"compressor.hidden must be >= 1, got {cfg.hidden}")
        self.k_max = cfg.k
        self.norm = nn.LayerNorm(dim)
        self.map_logits = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.k))

    def attention_maps(self, feats: Tensor) -> Tensor:
        """``[B, K, N]`` spatial attention maps (each sums to 1 over the N = H*W patches)."""
        batch, height, width, dim = feats.shape
        logits = self.map_logits(self.norm(feats.reshape(batch, height * width, dim)))  # [B, N, K]
        return logits.transpose(1, 2).softmax(dim=-1)

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(``[B, K, C]``, mean positions ``[B, K, 2]``, mask ``[B, K]``)."""
        batch, height, width, dim = feats.shape
        maps = self.attention_maps(feats)
        tokens = maps @ feats.reshape(batch, height * width, dim)
        coords = maps @ patch_centres(height, width, feats.device).to(feats.dtype)
        return Tokens(tokens, coords, budget_mask(ctx.k, batch, self.k_max, feats.device))
