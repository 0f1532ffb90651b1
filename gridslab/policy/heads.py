"""Action heads: action-query features ``[B, H, D]`` -> normalised action chunk ``[B, H, A]``.

Registered in ``HEADS`` and built with ``HEADS.build(cfg, dim, action_dim)``. A head has
``forward(features) -> actions`` (inference) and
``loss(features, target, step_mask) -> (loss, actions)`` (training).

* ``l1``: OpenVLA-OFT-style parallel decoding, one Linear per query; L1 loss.
"""

from __future__ import annotations

from torch import Tensor, nn

from gridslab.policy.config import HeadConfig
from gridslab.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


@HEADS.register("l1", config=HeadConfig)
class L1Head(nn.Module):
    """Linear regression of every chunk step from its query, trained with L1."""

    def __init__(self, cfg: HeadConfig, dim: int, action_dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, action_dim)

    def forward(self, features: Tensor) -> Tensor:
        """features: ``[B, H, D]`` -> normalised actions ``[B, H, A]``."""
        return self.proj(features)

    def loss(self, features: Tensor, target: Tensor, step_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mean L1 over valid steps and action dims, and the predicted actions ``[B, H, A]``.

        target: normalised ``[B, H, A]``; step_mask: ``[B, H]`` bool, False on chunk
        padding past the episode end (None = all steps valid).
        """
        predicted = self(features)
        error = (predicted - target).abs()
        if step_mask is None:
            return error.mean(), predicted
        weights = step_mask.to(error.dtype)[..., None]
        return (error * weights).sum() / (weights.sum() * error.shape[-1]).clamp(min=1.0), predicted
