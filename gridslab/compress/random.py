"""Random: K distinct random patches per image (the no-learning baseline).

feats ``[B, H, W, C]`` -> K patches drawn without replacement per sample -> tokens
``[B, K, C]``, coords = their centres ``[B, K, 2]``. In training every call draws afresh
from torch's global RNG (seeded by the trainer). In eval mode the draw comes from a
generator seeded with ``seed`` on every call, so evaluation is reproducible: sample ``b``
of a batch always gets the same patches. Slots ``< ctx.k[b]`` hold the first ``k[b]``
draws (a uniform random subset), each group in patch order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gridslab.compress import COMPRESSORS
from gridslab.compress.base import (CompressContext, Compressor, CompressorConfig, Tokens, budget_mask,
                                    check_patch_count, order_within_budget, take_patches)


@dataclass
class RandomConfig(CompressorConfig):
    """seed: seeds the eval-mode draw (training draws from the global RNG)."""

    name: str = "random"
    seed: int = 0


@COMPRESSORS.register("random", config=RandomConfig)
class RandomPatches(Compressor):
    """K random distinct patches: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: RandomConfig, dim: int):
        super().__init__()
        self.k_max = cfg.k
        self.seed = cfg.seed

    def num_tokens(self, height: int, width: int) -> int:
        """``K``; raises if ``K > H*W``."""
        check_patch_count("random", self.k_max, height, width)
        return self.k_max

    def draw(self, batch: int, num_patches: int, device: torch.device) -> Tensor:
        """``[B, K]`` distinct patch indices per row on ``device``: fresh in training, seeded
        in eval. The eval draw is made on the CPU so row ``b`` depends on neither the device
        nor the batch size."""
        if self.training:
            noise = torch.rand(batch, num_patches, device=device)
        else:
            noise = torch.rand(batch, num_patches, generator=torch.Generator().manual_seed(self.seed)).to(device)
        return noise.argsort(dim=1)[:, :self.k_max]

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(``[B, K, C]``, centres ``[B, K, 2]``, mask ``[B, K]``)."""
        batch, height, width, _ = feats.shape
        check_patch_count("random", self.k_max, height, width)
        draws = self.draw(batch, height * width, feats.device)
        picks = order_within_budget(draws, ctx.k, height * width)
        tokens, coords = take_patches(feats, picks)
        return Tokens(tokens, coords, budget_mask(ctx.k, batch, self.k_max, feats.device))
