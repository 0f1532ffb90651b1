"""What an episode executes of each predicted action chunk (``eval.execution``).

``chunk``: the first ``replan_steps`` actions of each chunk, then the policy predicts again
(``policy.replan_every`` steps; 0 = the whole chunk). ``ensemble``: ACT-style temporal
ensembling: the policy predicts a chunk ``[H, A]`` at every step, and the action executed at
step t is the weighted mean of what every chunk still covering t predicted for it,

    a_t = sum_i w_i a_t^(i) / sum_i w_i,    w_i = exp(-m * i),

with i = 0 the oldest of those chunks (ACT's and lerobot's ``ACTTemporalEnsembler``
convention: m > 0 weighs older predictions more; m = ``eval.ensemble_decay``, their default 0.01).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gridslab.config.schema import EXECUTION_MODES

__all__ = ["EXECUTION_MODES", "ChunkExecutor", "Execution"]


@dataclass(frozen=True)
class Execution:
    """How chunks are executed; ``start()`` gives one episode's ``ChunkExecutor``."""

    mode: str = "chunk"
    replan_steps: int = 1
    ensemble_decay: float = 0.01

    @classmethod
    def from_config(cls, cfg: Any) -> Execution:
        """From a run config: ``eval.execution`` / ``eval.ensemble_decay`` and ``policy.replan_every`` (0 = ``policy.chunk``)."""
        return cls(str(cfg.eval.execution), int(cfg.policy.replan_every or cfg.policy.chunk), float(cfg.eval.ensemble_decay))

    def start(self) -> ChunkExecutor:
        return ChunkExecutor(self)


@dataclass
class ChunkExecutor:
    """One episode's execution state; ``actions(chunk)`` after each policy call."""

    execution: Execution
    chunks: list[np.ndarray] = field(default_factory=list)  # ensemble: chunks covering the next step, oldest first

    def actions(self, chunk: np.ndarray) -> np.ndarray:
        """Actions ``[n, A]`` to execute before the next policy call, from the new ``chunk [H, A]``."""
        if self.execution.mode == "chunk":
            return chunk[: self.execution.replan_steps]
        self.chunks.append(chunk)
        # chunk j (oldest first) was predicted len - 1 - j steps ago: its row for this step
        offsets = [len(self.chunks) - 1 - j for j in range(len(self.chunks))]
        rows = np.stack([c[offset] for c, offset in zip(self.chunks, offsets)])  # [C, A]
        weights = np.exp(-self.execution.ensemble_decay * np.arange(len(rows)))
        action = (weights[:, None] * rows).sum(axis=0) / weights.sum()
        self.chunks = [c for c, offset in zip(self.chunks, offsets) if offset + 1 < len(c)]
        return action[None].astype(chunk.dtype)
