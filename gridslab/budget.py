"""Token-budget schedules: how many visual tokens each sample gets.

A budget maps a batch to ``k [B]`` (long, ``1 <= k <= K_max``) or ``None`` (every sample
gets all ``K_max`` slots the compressor emits). Compressors mask slots ``>= k`` and the
backbone ignores masked slots, so per-sample budgets batch freely.

* ``fixed``: every sample gets ``K_max`` (the compressor's ``k``).
* ``per_task``: a map instruction -> K with a default for unlisted instructions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from gridslab.errors import UserError
from gridslab.registry import Registry

BUDGETS: Registry["Budget"] = Registry("budget")


@dataclass
class FixedBudgetConfig:
    name: str = "fixed"


@dataclass
class PerTaskBudgetConfig:
    """k_by_task: instruction -> K; default_k: K for instructions not in the map (0 = K_max)."""

    name: str = "per_task"
    k_by_task: dict[str, int] = field(default_factory=dict)
    default_k: int = 0


class Budget:
    """Base: ``k_for(instructions) -> [B] long or None``."""

    def __init__(self, k_max: int):
        self.k_max = k_max

    def k_for(self, instructions: list[str], device: torch.device | None = None) -> Tensor | None:
        raise NotImplementedError


@BUDGETS.register("fixed", config=FixedBudgetConfig)
class FixedBudget(Budget):
    """All ``K_max`` slots for every sample."""

    def __init__(self, cfg: FixedBudgetConfig, k_max: int):
        super().__init__(k_max)

    def k_for(self, instructions: list[str], device: torch.device | None = None) -> Tensor | None:
        return None


@BUDGETS.register("per_task", config=PerTaskBudgetConfig)
class PerTaskBudget(Budget):
    """K looked up per instruction; every K must lie in ``[1, K_max]``."""

    def __init__(self, cfg: PerTaskBudgetConfig, k_max: int):
        super().__init__(k_max)
        self.default_k = int(cfg.default_k) or k_max
        self.k_by_task = {str(task): int(k) for task, k in cfg.k_by_task.items()}
        for task, k in {**self.k_by_task, "<default>": self.default_k}.items():
            if not 1 <= k <= k_max:
                raise UserError(f"budget.k_by_task[{task!r}]={k} is out of range; valid: 1..{k_max} (compressor.k)")

    def check_tasks(self, known: list[str]) -> None:
        """Fail at start-up on map entries that name no task of the dataset/env."""
        for task in self.k_by_task:
            if task not in known:
                raise UserError(f"budget.k_by_task names unknown task {task!r}; valid: {', '.join(sorted(known))}")

    def k_for(self, instructions: list[str], device: torch.device | None = None) -> Tensor:
        ks = [self.k_by_task.get(text, self.default_k) for text in instructions]
        return torch.tensor(ks, dtype=torch.long, device=device)


def build_budget(cfg, k_max: int) -> Budget:
    """The budget named by ``cfg.name`` for a compressor emitting ``k_max`` slots."""
    return BUDGETS.build(cfg, k_max)
