"""Random: K distinct random patches per image (the no-learning baseline).

feats ``[B, H, W, C]`` -> K patches drawn without replacement per sample -> tokens
``[B, K, C]``, coords = their centres ``[B, K, 2]``. Slots ``< ctx.k[b]`` hold the first
``k[b]`` draws (a uniform random subset), each group in patch order.

Where the draw comes from:

* training: torch's global RNG (seeded by the trainer), fresh at every call;
  ``ctx.noise_seed`` is ignored;
* eval with ``ctx.noise_seed`` (``[B]`` long, set by rollouts from the episode seed and
  the policy-call index): sample ``b`` draws from a CPU generator seeded with
  ``(seed, noise_seed[b], ctx.camera_index)``, so every policy call and every camera gets
  fresh patches, and a re-run gets the same ones, whatever the batch size or device;
* eval without ``ctx.noise_seed``: torch's global RNG, like training (repeatable only as
  far as the caller seeds it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import (
    CompressContext,
    Compressor,
    CompressorConfig,
    Tokens,
    budget_mask,
    order_within_budget,
    take_patches,
)


@dataclass
class RandomConfig(CompressorConfig):
    """seed: mixed into the eval-mode draw with ``ctx.noise_seed`` and ``ctx.camera_index``."""

    name: str = "random"
    seed: int = 0


def seeded_noise(seeds: tuple[int, ...], size: int) -> Tensor:
    """``[size]`` uniform noise on the CPU from a generator seeded with the tuple ``seeds``
    (mixed by numpy's ``SeedSequence``; negative entries are taken modulo 2**64)."""
    entropy = [seed % 2**64 for seed in seeds]
    state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    return torch.rand(size, generator=torch.Generator().manual_seed(state))


@COMPRESSORS.register("random", config=RandomConfig)
class RandomPatches(Compressor):
    """K random distinct patches: ``forward(feats [B, H, W, C], ctx) -> Tokens [B, K, C]``."""

    def __init__(self, cfg: RandomConfig, dim: int):
        super().__init__()
        self.k_max = cfg.k
        self.seed = cfg.seed

    def num_tokens(self, height: int, width: int) -> int:
        """``K``; raises if ``K > H*W``."""
        self.check_k("random", self.k_max, height, width)
        return self.k_max

    def draw(self, batch: int, num_patches: int, ctx: CompressContext, device: torch.device) -> Tensor:
        """``[B, K]`` distinct patch indices per row on ``device`` (see the module docstring
        for where the noise comes from)."""
        if self.training or ctx.noise_seed is None:
            noise = torch.rand(batch, num_patches, device=device)
        elif ctx.noise_seed.shape != (batch,):
            raise ValueError(f"ctx.noise_seed must have shape [{batch}], got {list(ctx.noise_seed.shape)}")
        else:
            noise = torch.stack(
                [seeded_noise((self.seed, int(seed), ctx.camera_index), num_patches) for seed in ctx.noise_seed.tolist()]
            ).to(device)
        return noise.argsort(dim=1)[:, : self.k_max]

    def forward(self, feats: Tensor, ctx: CompressContext) -> Tokens:
        """feats ``[B, H, W, C]`` -> Tokens(``[B, K, C]``, centres ``[B, K, 2]``, mask ``[B, K]``)."""
        batch, height, width, _ = feats.shape
        self.check_k("random", self.k_max, height, width)
        draws = self.draw(batch, height * width, ctx, feats.device)
        picks = order_within_budget(draws, ctx.k, height * width)
        tokens, coords = take_patches(feats, picks)
        return Tokens(tokens, coords, budget_mask(ctx.k, batch, self.k_max, feats.device))
