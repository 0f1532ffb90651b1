"""GridS: K learned (x, y) points per image; features read there by bilinear interpolation.

    feats [B, H, W, C] -> mean over H, W -> pooled [B, C]
      -> LayerNorm (``layer_norm``) -> FiLM from the instruction (``condition``)
      -> MLP(C -> hidden -> 2K) -> sigmoid -> coords [B, K, 2] (x, y) in
         [margin, 1 - margin]
      -> sample_at(feats, coords) [B, K, C] + MLP(2 -> coord_hidden -> C)(coords)
      -> Tokens(tokens [B, K, C], coords, mask [B, K] from ctx.k)

Sampling convention. ``F.grid_sample`` takes grid = 2 * coords - 1 with
``align_corners=False``: -1 and +1 are then the outer edges of the corner patches, i.e.
the image borders, so coordinates in image units map exactly. Patch ``j``'s centre
``(j + 0.5) / W`` lands on pixel index ``j`` and returns exactly that patch's feature, and
a uniform grid of 2x2-patch cells samples the mean of each cell (= adaptive average
pooling). With ``align_corners=True`` -1/+1 would be the *centres* of the corner patches,
and the same coords would be shifted half a patch towards the border (off by
``(0.5 - c) / W``). The two reference versions disagree on this flag; we pick the one that
agrees with ``patch_centres`` and the other compressors' coords. ``padding_mode="border"``
keeps points in the outer half-patch on the edge features instead of fading to zero.

The reference has no language conditioning, LayerNorm, margin or grid init; each is a
switch here and off by default, so the defaults are the reference method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridslab.compress import COMPRESSORS
from gridslab.compress.base import (CompressContext, Compressor, CompressorConfig, Tokens, budget_mask,
                                    masked_mean, most_square_grid)
from gridslab.errors import UserError

INITS = ("random", "uniform")


@dataclass
class GridSConfig(CompressorConfig):
    """GridS options.

    hidden: width of the coordinate MLP (C -> hidden -> 2K);
    coord_hidden: width of the coordinate embedding MLP (2 -> coord_hidden -> C);
    layer_norm: LayerNorm on the pooled feature before the coordinate MLP;
    condition: FiLM the pooled feature with the mean instruction token (needs ctx.text);
    margin: coords = margin + (1 - 2 margin) * sigmoid, in [0, 0.5), against corner collapse;
    init: "random" (default Linear init, the reference) or "uniform" (start exactly on the
    most-square rows x cols grid of cell centres).
    """

    name: str = "grids"
    hidden: int = 512
    coord_hidden: int = 256
    layer_norm: bool = False
    condition: bool = False
    margin: float = 0.0
    init: str = "random"


def sample_at(feats: Tensor, coords: Tensor) -> Tensor:
    """Bilinear read of ``feats [B, H, W, C]`` at ``coords [B, K, 2]`` (x, y) in [0, 1]
    image units -> ``[B, K, C]``. A patch centre ``((i + 0.5) / W, (j + 0.5) / H)`` returns
    that patch's feature; differentiable w.r.t. both arguments (see module docstring)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # [B, K, 1, 2]
    sampled = F.grid_sample(feats.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)  # [B, C, K, 1]
    return sampled.squeeze(3).transpose(1, 2)


def uniform_grid(k: int) -> Tensor:
    """``[K, 2]`` (x, y) cell centres of the most-square rows x cols grid, row-major."""
    rows, cols = most_square_grid(k)
    ys = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    xs = (torch.arange(cols, dtype=torch.float64) + 0.5) / cols
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(k, 2)


@COMPRESSORS.register("grids", config=GridSConfig)
class GridS(Compressor):
    """Differentiable grid sampler: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: GridSConfig, dim: int):
        super().__init__()
        if cfg.init not in INITS:
            raise UserError(f"compressor.init must be one of {', '.join(INITS)}, got {cfg.init!r}")
        if not 0.0 <= cfg.margin < 0.5:
            raise UserError(f"compressor.margin must be in [0, 0.5), got {cfg.margin}")
        if cfg.hidden < 1 or cfg.coord_hidden < 1:
            raise UserError(f"compressor.hidden and compressor.coord_hidden must be >= 1, "
                            f"got {cfg.hidden} and {cfg.coord_hidden}")
        self.k_max = cfg.k
        self.margin = cfg.margin
        self.pooled_norm = nn.LayerNorm(dim) if cfg.layer_norm else nn.Identity()
        self.film = nn.Linear(dim, 2 * dim) if cfg.condition else None
        self.uses_text = bool(cfg.condition)
        self.coord_mlp = nn.Sequential(nn.Linear(dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, 2 * cfg.k))
        self.coord_embed = nn.Sequential(nn.Linear(2, cfg.coord_hidden), nn.GELU(), nn.Linear(cfg.coord_hidden, dim))
        if self.film is not None:
            self._init_film_identity(dim)
        if cfg.init == "uniform":
            self._init_uniform_grid(cfg.k)

    def _init_film_identity(self, dim: int) -> None:
        """gamma = 1, beta = 0 for any text: the FiLM starts as the identity."""
        nn.init.zeros_(self.film.weight)
        with torch.no_grad():
            self.film.bias.copy_(torch.cat([torch.ones(dim), torch.zeros(dim)]))

    def _init_uniform_grid(self, k: int) -> None:
        """Zero the last layer's weights and set its bias to the logits of the uniform grid."""
        grid = uniform_grid(k)
        nearest_edge = float(grid.min())
        if self.margin >= nearest_edge:
            raise UserError(f"compressor.margin={self.margin} leaves no room for the uniform grid of "
                            f"k={k} (its outermost points are {nearest_edge:.4g} from the border); "
                            f"use margin < {nearest_edge:.4g}")
        unit = (grid - self.margin) / (1.0 - 2.0 * self.margin)
        last = self.coord_mlp[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            last.bias.copy_(torch.logit(unit).reshape(-1).to(last.bias.dtype))

    def coordinates(self, feats: Tensor, ctx: CompressContext) -> Tensor:
        """Sampling points ``[B, K, 2]`` (x, y) in ``[margin, 1 - margin]`` for ``feats [B, H, W, C]``."""
        pooled = self.pooled_norm(feats.mean(dim=(1, 2)))
        if self.film is not None:
            if ctx.text is None:
                raise UserError("compressor.condition=true needs an instruction, but the policy passed "
                                "no text; set compressor.condition=false")
            gamma, beta = self.film(masked_mean(ctx.text, ctx.text_mask)).chunk(2, dim=-1)
            pooled = gamma * pooled + beta
        logits = self.coord_mlp(pooled).view(feats.shape[0], self.k_max, 2)
        return self.margin + (1.0 - 2.0 * self.margin) * torch.sigmoid(logits)

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(tokens ``[B, K, C]``, coords ``[B, K, 2]``, mask ``[B, K]``)."""
        coords = self.coordinates(feats, ctx)
        tokens = sample_at(feats, coords) + self.coord_embed(coords)
        return Tokens(tokens, coords, budget_mask(ctx.k, feats.shape[0], self.k_max, feats.device))
