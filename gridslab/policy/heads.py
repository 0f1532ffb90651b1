"""Action heads: backbone features -> normalised action chunk ``[B, H, A]``.

Registered in ``HEADS`` and built with ``HEADS.build(cfg, dim, action_dim, chunk)``. A head
has ``forward(features, key_mask, noise_seed) -> actions`` (inference) and
``loss(features, target, step_mask, key_mask) -> (loss, actions)`` (training). What
``features`` are is the head's class attribute ``uses_prefix``:

* False: the H action-query outputs ``[B, H, D]`` (``key_mask`` unused);
* True: the backbone's states over the prefix ``[B, N, D]`` with its keys ``key_mask [B, N]``
  (bool, or float slot weights), and the backbone runs without action queries.

Heads:

* ``l1``: OpenVLA-OFT-style parallel decoding, one Linear per query; L1 loss.
* ``flow``: pi0-style flow matching with an action expert (``gridslab.policy.flow``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gridslab.policy.config import HeadConfig
from gridslab.policy.flow import ActionExpert, initial_noise, sample_time
from gridslab.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


def masked_mean(error: Tensor, step_mask: Tensor | None) -> Tensor:
    """Mean of ``error [B, H, A]`` over valid steps (``step_mask [B, H]`` bool) and action dims."""
    if step_mask is None:
        return error.mean()
    weights = step_mask.to(error.dtype)[..., None]
    return (error * weights).sum() / (weights.sum() * error.shape[-1]).clamp(min=1.0)


@HEADS.register("l1", config=HeadConfig)
class L1Head(nn.Module):
    """Linear regression of every chunk step from its query, trained with L1."""

    uses_prefix = False

    def __init__(self, cfg: HeadConfig, dim: int, action_dim: int, chunk: int):
        super().__init__()
        self.proj = nn.Linear(dim, action_dim)

    def forward(self, features: Tensor, key_mask: Tensor | None = None, noise_seed: Tensor | None = None) -> Tensor:
        """features: ``[B, H, D]`` -> normalised actions ``[B, H, A]``."""
        return self.proj(features)

    def loss(
        self, features: Tensor, target: Tensor, step_mask: Tensor | None = None, key_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean L1 over valid steps and action dims, and the predicted actions ``[B, H, A]``.

        target: normalised ``[B, H, A]``; step_mask: ``[B, H]`` bool, False on chunk
        padding past the episode end (None = all steps valid).
        """
        predicted = self(features)
        return masked_mean((predicted - target).abs(), step_mask), predicted


@HEADS.register("flow", config=HeadConfig)
class FlowHead(nn.Module):
    """Flow matching over the chunk (pi0): the action expert predicts the velocity of a noisy
    chunk given the prefix; MSE to ``noise - actions`` in training, Euler steps at inference.

    dim: the backbone width (prefix states); chunk: H; action_dim: A.
    """

    uses_prefix = True

    def __init__(self, cfg: HeadConfig, dim: int, action_dim: int, chunk: int):
        super().__init__()
        self.cfg = cfg
        self.steps = cfg.steps
        self.chunk = chunk
        self.action_dim = action_dim
        self.expert = ActionExpert(cfg, dim, chunk, action_dim)

    def sample(self, prefix: Tensor, key_mask: Tensor, noise: Tensor, use_cache: bool = True) -> Tensor:
        """Integrate ``steps`` Euler steps from ``noise [B, H, A]`` at t = 1 to t = 0 given the
        prefix ``[B, N, D]`` and its keys ``[B, N]``; the prefix keys/values are computed once
        (``use_cache``) or again at every step."""
        x = noise
        cache = self.expert.prefix_cache(prefix) if use_cache else None
        for step in range(self.steps):
            t = torch.full((x.shape[0],), 1.0 - step / self.steps, device=x.device, dtype=x.dtype)
            step_cache = cache if cache is not None else self.expert.prefix_cache(prefix)
            x = x - self.expert(x, t, step_cache, key_mask) / self.steps
        return x

    def forward(self, features: Tensor, key_mask: Tensor | None = None, noise_seed: Tensor | None = None) -> Tensor:
        """Normalised actions ``[B, H, A]`` sampled given the prefix ``features [B, N, D]``;
        in eval mode the initial noise of sample b is seeded by ``noise_seed[b]`` when given."""
        shape = (features.shape[0], self.chunk, self.action_dim)
        seeds = None if self.training else noise_seed
        noise = initial_noise(shape, seeds, self.cfg.seed, features.device).to(features.dtype)
        if key_mask is None:
            key_mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        return self.sample(features, key_mask, noise)

    def loss(
        self, features: Tensor, target: Tensor, step_mask: Tensor | None = None, key_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Flow-matching MSE over valid steps and action dims, and actions ``[B, H, A]``: in
        training the one-step estimate of the clean chunk ``x_t - t * v`` (for logging), in
        eval mode a full Euler sample (what validation errors measure).

        features: prefix ``[B, N, D]``; target: normalised ``[B, H, A]``; step_mask ``[B, H]``.
        """
        if key_mask is None:
            key_mask = torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
        noise = torch.randn_like(target)
        t = sample_time(target.shape[0], self.cfg, target.device).to(target.dtype)
        noisy = t[:, None, None] * noise + (1 - t[:, None, None]) * target
        velocity = self.expert(noisy, t, self.expert.prefix_cache(features), key_mask)
        loss = masked_mean((velocity - (noise - target)) ** 2, step_mask)
        if not self.training:  # validation: the actions the policy would take
            with torch.no_grad():
                return loss, self.sample(features, key_mask, torch.randn_like(target))
        return loss, (noisy - t[:, None, None] * velocity).detach()
