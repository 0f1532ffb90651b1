"""Exponential moving average of a policy's weights, used for validation and evaluation."""

from __future__ import annotations

import copy

import torch


class EMA(torch.nn.Module):
    """Exponential moving average of a model's weights (buffers are copied as they are).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so
    the average follows the quickly changing early weights instead of the initialisation.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        n = int(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        for averaged, current in zip(self.module.parameters(), model.parameters()):
            averaged.lerp_(current.detach(), 1.0 - decay)
        for averaged, current in zip(self.module.buffers(), model.buffers()):
            averaged.copy_(current)
