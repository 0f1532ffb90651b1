"""Pool: adaptive average pooling of the patch grid to a fixed rows x cols grid.

feats ``[B, H, W, C]`` -> ``F.adaptive_avg_pool2d`` to ``rows x cols`` with
``rows * cols = K`` (the most square factorisation; the longer side of the grid goes along
the longer side of the feature map) -> tokens ``[B, K, C]`` row-major, coords = centres of
the pooled cells ``[B, K, 2]``. A per-sample budget ``ctx.k`` keeps the first ``k`` cells
in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import CompressContext, Compressor, CompressorConfig, Tokens, budget_mask, most_square_grid
from gridslab.errors import UserError


@dataclass
class PoolConfig(CompressorConfig):
    """No options of its own: the grid shape follows from ``k``."""

    name: str = "pool"


def cell_centres(size: int, cells: int) -> Tensor:
    """``[cells]`` centres in [0, 1] of adaptive pooling's cells along a side of ``size``
    patches (cell i spans ``floor(i*size/cells)`` to ``ceil((i+1)*size/cells)``)."""
    index = torch.arange(cells)
    start = torch.div(index * size, cells, rounding_mode="floor")
    end = -torch.div(-(index + 1) * size, cells, rounding_mode="floor")
    return (start + end).double() / (2 * size)


def pooled_grid(k: int, height: int, width: int) -> tuple[int, int]:
    """``(rows, cols)``, ``rows * cols = k``, most square, the longer side along the longer
    side of the ``H x W`` map (it may not fit; see ``Pool.check_k``)."""
    short, long = most_square_grid(k)
    return (long, short) if height > width else (short, long)


@COMPRESSORS.register("pool", config=PoolConfig)
class Pool(Compressor):
    """Adaptive average pooling: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: PoolConfig, dim: int):
        super().__init__()
        self.k_max = cfg.k

    @classmethod
    def check_k(cls, name: str, k: int, height: int, width: int) -> None:
        """``k <= H*W`` and the ``rows x cols`` pooled grid fits in the ``H x W`` map."""
        super().check_k(name, k, height, width)
        rows, cols = pooled_grid(k, height, width)
        if rows > height or cols > width:
            raise UserError(
                f"compressor {name!r}: k={k} needs a {rows}x{cols} grid, which does not fit "
                f"the {height}x{width} feature map; pick a k with a factorisation that fits"
            )

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """``(rows, cols)`` of the pooled grid for an ``H x W`` feature map; it must fit in it."""
        self.check_k("pool", self.k_max, height, width)
        return pooled_grid(self.k_max, height, width)

    def num_tokens(self, height: int, width: int) -> int:
        """``K``; raises if the pooled grid does not fit an ``H x W`` map."""
        self.grid_shape(height, width)
        return self.k_max

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(``[B, K, C]``, cell centres ``[B, K, 2]``, mask ``[B, K]``)."""
        batch, height, width, dim = feats.shape
        rows, cols = self.grid_shape(height, width)
        pooled = F.adaptive_avg_pool2d(feats.permute(0, 3, 1, 2), (rows, cols))  # [B, C, rows, cols]
        tokens = pooled.flatten(2).transpose(1, 2)
        grid_y, grid_x = torch.meshgrid(cell_centres(height, rows), cell_centres(width, cols), indexing="ij")
        coords = torch.stack([grid_x, grid_y], dim=-1).reshape(1, self.k_max, 2)
        coords = coords.to(device=feats.device, dtype=feats.dtype).expand(batch, -1, -1)
        return Tokens(tokens, coords, budget_mask(ctx.k, batch, self.k_max, feats.device))
