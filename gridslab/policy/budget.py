"""Token-budget schedules: how many visual tokens each sample gets.

A budget is a part of the policy (``VLA.budget``), so a checkpoint carries a learned budget
head and evaluation applies the schedule the policy was trained with. From the patch
features of every camera (and the instructions) it picks a ``BudgetChoice``:

    k       [B] long in [1, K_max], or None (every sample gets all K_max slots)
    soft_k  [B] float, the differentiable K behind a learned budget (None otherwise)
    weight  [B, K_max] float in [0, 1], soft presence of each slot (learned budget, training only)

Compressors mask slots ``>= k``; the policy then drops the slots past the batch's largest k
(a batch of one runs on exactly k tokens) and the backbone ignores masked slots, so
per-sample budgets batch freely.

* ``fixed``: ``K_max`` (the compressor's ``k``) for every sample.
* ``per_task``: a map instruction -> K, with a default for unlisted instructions.
* ``adaptive``: K per sample in ``[k_min, k_max]``, by a learned budget head or a
  saliency-mass rule (``rule``). ``k_max`` sets the compressor's slot count.
  The head reads the pooled patch features ``[B, C]`` (mean over patches and cameras) and
  the mean instruction token ``[B, D]`` and predicts a continuous ``soft_k [B]``; at
  inference ``k = round(soft_k)``. ``signal`` says what trains it:

  - ``sensitivity`` (default): per-sample loss sensitivity. While training, each sample's
    action loss is taken at a K drawn uniformly from ``[k_min, k_max]`` (so the policy acts
    at every K the head may pick), and on every ``probe_every``-th step the policy is run
    again without gradient at each probe K (``probe_ks``, default ``k_min``, their
    geometric mean, ``k_max``; the same noise and time draws at every K). The probe gives
    ``losses [B, P]``: each sample's mean L1 between the head's training-mode actions and
    the target chunk over valid steps and action dims (the L1 head's own loss; a flow
    head's one-step clean-chunk estimate). A sample's target ``k* [B]`` is the smallest
    probe K whose loss is at most ``(1 + tolerance)`` times its loss at ``k_max``, and the
    head (on detached features) minimises ``mean |soft_k - k*| / (k_max - k_min)``.
    Samples whose actions need many tokens get a large K, the others a small one.
  - ``relax``: every slot stays valid while training and slot ``j``'s attention keys are
    weighted by ``sigmoid((soft_k - j - 0.5) / temperature)`` (1 below ``k_min``), a
    relaxation of "keep the first round(soft_k) slots" through which the action loss pulls
    K up where tokens help and ``penalty * soft_k / k_max`` pulls it down. Slot ``j`` is
    kept at inference exactly when its training weight is above 0.5. (On Lift this
    collapsed to one K for every sample.)

  The saliency rule has no parameters: a patch's saliency is its feature's squared
  distance from the image's mean feature; K grows with the share of patches needed to hold
  ``mass`` of the total saliency (``k_max`` when saliency is uniform), max over cameras.
* ``anneal``: ``fixed`` with a curriculum (below) switched on.

Every budget takes a curriculum: while training, K is capped by a value that goes from
``k_start`` (0 = K_max) at optimiser step ``anneal_start`` to ``k_end`` at ``anneal_end``
(``anneal_shape`` linear or cosine); ``anneal_end = 0`` turns it off. Past ``anneal_end``,
and whenever the policy is not training (validation, rollouts), the cap is ``k_end``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gridslab.errors import UserError
from gridslab.registry import Registry

BUDGETS: Registry["Budget"] = Registry("budget")
ANNEAL_SHAPES = ("linear", "cosine")
RULES = ("head", "saliency")
SIGNALS = ("sensitivity", "relax")
SHARE_STEPS = 1000  # the saliency rule compares cumulative shares at this resolution


@dataclass
class BudgetConfig:
    """The curriculum every budget takes (see the module docstring); steps are optimiser steps."""

    name: str = "fixed"
    k_start: int = 0
    k_end: int = 0
    anneal_start: int = 0
    anneal_end: int = 0
    anneal_shape: str = "linear"


@dataclass
class FixedBudgetConfig(BudgetConfig):
    name: str = "fixed"


@dataclass
class AnnealBudgetConfig(BudgetConfig):
    """``fixed`` with the curriculum on (``anneal_end`` must be > ``anneal_start``)."""

    name: str = "anneal"
    k_end: int = 1
    anneal_end: int = 2000


@dataclass
class PerTaskBudgetConfig(BudgetConfig):
    """k_by_task: instruction -> K; default_k: K for instructions not in the map (0 = K_max)."""

    name: str = "per_task"
    k_by_task: dict[str, int] = field(default_factory=dict)
    default_k: int = 0


@dataclass
class AdaptiveBudgetConfig(BudgetConfig):
    """rule: "head" (learned) or "saliency"; k_min..k_max: the range of K (k_max 0 = compressor.k,
    else it sets compressor.k); signal: what trains the head, "sensitivity" or "relax"
    (module docstring); tolerance: relative action-loss excess over k_max's a sample's K may
    cost (sensitivity); probe_ks: the K probed (sensitivity; empty = k_min, their geometric
    mean, k_max); probe_every: probe every this many optimiser steps (sensitivity);
    penalty: compute-penalty weight on soft_k / k_max (relax); temperature: slot-weight
    softness in slots (relax); hidden: head MLP width; mass: saliency share a sample's
    tokens must cover (saliency)."""

    name: str = "adaptive"
    rule: str = "head"
    k_min: int = 1
    k_max: int = 0
    signal: str = "sensitivity"
    tolerance: float = 0.05
    probe_ks: list[int] = field(default_factory=list)
    probe_every: int = 1
    penalty: float = 0.05
    temperature: float = 0.5
    hidden: int = 64
    mass: float = 0.5


@dataclass
class BudgetChoice:
    """What a budget picked for a batch (shapes in the module docstring)."""

    k: Tensor | None = None
    soft_k: Tensor | None = None
    weight: Tensor | None = None


class Budget(nn.Module):
    """Base: ``forward(feats, text, text_mask, instructions) -> BudgetChoice``; subclasses
    implement ``choose`` (hard ``k`` or ``soft_k``) and the base applies the curriculum.
    Every budget is built as ``(cfg, k_max, vision_dim, text_dim)``: the widths of the
    patch features and instruction tokens a learned budget reads.

    ``step`` is the optimiser step, set by the training loop before each batch.
    """

    def __init__(self, cfg: BudgetConfig, k_max: int, vision_dim: int, text_dim: int):
        super().__init__()
        self.k_max = k_max
        self.step = 0
        self.anneal_start, self.anneal_end = int(cfg.anneal_start), int(cfg.anneal_end)
        self.k_start = int(cfg.k_start) or k_max
        self.k_end = int(cfg.k_end)
        self.anneal_shape = cfg.anneal_shape
        if self.anneal_end:
            if cfg.anneal_shape not in ANNEAL_SHAPES:
                raise UserError(f"budget.anneal_shape={cfg.anneal_shape!r}; valid: {', '.join(ANNEAL_SHAPES)}")
            if not 0 <= self.anneal_start < self.anneal_end:
                raise UserError(
                    f"budget.anneal_start={self.anneal_start} must be >= 0 and below budget.anneal_end={self.anneal_end}"
                )
            for key, value in (("k_start", self.k_start), ("k_end", self.k_end)):
                if not 1 <= value <= k_max:
                    raise UserError(f"budget.{key}={value} is out of range; valid: 1..{k_max} (the compressor's slots)")

    def cap(self) -> float | None:
        """The curriculum's K cap now (None without a curriculum)."""
        if not self.anneal_end:
            return None
        if not self.training:
            return float(self.k_end)
        progress = min(max((self.step - self.anneal_start) / (self.anneal_end - self.anneal_start), 0.0), 1.0)
        if self.anneal_shape == "cosine":
            progress = 0.5 * (1.0 - math.cos(math.pi * progress))
        return self.k_start + (self.k_end - self.k_start) * progress

    def choose(
        self, feats: dict[str, Tensor], text: Tensor, text_mask: Tensor, instructions: list[str] | None
    ) -> BudgetChoice:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(
        self, feats: dict[str, Tensor], text: Tensor, text_mask: Tensor, instructions: list[str] | None = None
    ) -> BudgetChoice:
        """feats: camera -> ``[B, H, W, C]`` patch features; text: ``[B, T, D]`` instruction
        tokens with ``text_mask [B, T]``; instructions: the B instruction strings."""
        choice = self.choose(feats, text, text_mask, instructions)
        cap = self.cap()
        if cap is None:
            return choice
        batch = text.shape[0]
        if choice.soft_k is not None:
            return self.soft_choice(torch.clamp(choice.soft_k, max=cap), cap)
        hard_cap = torch.full((batch,), max(1, round(cap)), dtype=torch.long, device=text.device)
        return BudgetChoice(k=hard_cap if choice.k is None else torch.minimum(choice.k, hard_cap))

    def soft_choice(self, soft_k: Tensor, cap: float | None = None) -> BudgetChoice:  # pragma: no cover - interface
        """The choice for a learned ``soft_k [B]`` under the curriculum's ``cap``."""
        raise NotImplementedError

    def penalty_loss(self, choice: BudgetChoice) -> Tensor | None:
        """Compute penalty added to the training loss (None for budgets without one)."""
        return None

    def signal_loss(self, policy: nn.Module, batch: dict, choice: BudgetChoice) -> Tensor | None:
        """A learned budget's own training loss, computed beside the policy's loss on the same
        policy batch (None for budgets without one)."""
        return None


@BUDGETS.register("fixed", config=FixedBudgetConfig)
@BUDGETS.register("anneal", config=AnnealBudgetConfig)
class FixedBudget(Budget):
    """All ``K_max`` slots for every sample (up to the curriculum's cap)."""

    def __init__(self, cfg: BudgetConfig, k_max: int, vision_dim: int, text_dim: int):
        super().__init__(cfg, k_max, vision_dim, text_dim)
        if cfg.name == "anneal" and not self.anneal_end:
            raise UserError("budget=anneal needs budget.anneal_end > 0 (the step K reaches k_end)")

    def choose(self, feats, text, text_mask, instructions) -> BudgetChoice:
        return BudgetChoice()


@BUDGETS.register("per_task", config=PerTaskBudgetConfig)
class PerTaskBudget(Budget):
    """K looked up per instruction; every K must lie in ``[1, K_max]``."""

    def __init__(self, cfg: PerTaskBudgetConfig, k_max: int, vision_dim: int, text_dim: int):
        super().__init__(cfg, k_max, vision_dim, text_dim)
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

    def choose(self, feats, text, text_mask, instructions) -> BudgetChoice:
        if instructions is None:
            raise UserError("budget=per_task needs the instruction strings (batch['instruction'])")
        ks = [self.k_by_task.get(str(text_), self.default_k) for text_ in instructions]
        return BudgetChoice(k=torch.tensor(ks, dtype=torch.long, device=text.device))


@BUDGETS.register("adaptive", config=AdaptiveBudgetConfig)
class AdaptiveBudget(Budget):
    """K per sample in ``[k_min, k_max]`` from a learned head or the saliency-mass rule."""

    def __init__(self, cfg: AdaptiveBudgetConfig, k_max: int, vision_dim: int, text_dim: int):
        super().__init__(cfg, k_max, vision_dim, text_dim)
        if cfg.rule not in RULES:
            raise UserError(f"budget.rule={cfg.rule!r}; valid: {', '.join(RULES)}")
        if not 1 <= cfg.k_min <= k_max:
            raise UserError(f"budget.k_min={cfg.k_min} is out of range; valid: 1..{k_max} (budget.k_max)")
        if cfg.penalty < 0 or cfg.temperature <= 0 or not 0 < cfg.mass <= 1:
            raise UserError(
                f"budget needs penalty >= 0, temperature > 0 and 0 < mass <= 1; got penalty={cfg.penalty}, "
                f"temperature={cfg.temperature}, mass={cfg.mass}"
            )
        if self.anneal_end and self.k_end < cfg.k_min:
            raise UserError(
                f"budget.k_end={self.k_end} is below budget.k_min={cfg.k_min}; the curriculum must end inside [k_min, k_max]"
            )
        if cfg.k_max and cfg.k_max != k_max:
            raise UserError(
                f"budget.k_max={cfg.k_max} but the compressor emits {k_max} slots; set compressor.k={cfg.k_max} "
                f"(load_config does this)"
            )
        if cfg.signal not in SIGNALS:
            raise UserError(f"budget.signal={cfg.signal!r}; valid: {', '.join(SIGNALS)}")
        self.rule = cfg.rule
        self.signal = cfg.signal
        self.k_min = int(cfg.k_min)
        self.tolerance = float(cfg.tolerance)
        self.probe_every = int(cfg.probe_every)
        self.probe_ks = sorted({int(k) for k in cfg.probe_ks} | {k_max}) if cfg.probe_ks else self.default_probe_ks(k_max)
        if self.rule == "head" and self.signal == "sensitivity":
            if self.k_min == k_max:
                raise UserError(f"budget.signal=sensitivity needs budget.k_min={self.k_min} below budget.k_max={k_max}")
            if self.tolerance < 0 or self.probe_every < 1:
                raise UserError(
                    f"budget needs tolerance >= 0 and probe_every >= 1; got tolerance={cfg.tolerance}, "
                    f"probe_every={cfg.probe_every}"
                )
            for k in self.probe_ks:
                if not self.k_min <= k <= k_max:
                    raise UserError(f"budget.probe_ks holds {k}, out of range; valid: {self.k_min}..{k_max} (k_min..k_max)")
        self.penalty = float(cfg.penalty)
        self.temperature = float(cfg.temperature)
        self.mass = float(cfg.mass)
        self.head = None
        if self.rule == "head":
            self.head = nn.Sequential(
                nn.LayerNorm(vision_dim + text_dim),
                nn.Linear(vision_dim + text_dim, cfg.hidden),
                nn.GELU(),
                nn.Linear(cfg.hidden, 1),
            )
            nn.init.zeros_(self.head[-1].weight)  # start every sample at the middle of the range
            nn.init.zeros_(self.head[-1].bias)

    def default_probe_ks(self, k_max: int) -> list[int]:
        """``k_min``, the geometric mean of ``k_min`` and ``k_max`` (rounded), ``k_max``."""
        return sorted({self.k_min, round(math.sqrt(self.k_min * k_max)), k_max})

    def choose(self, feats, text, text_mask, instructions) -> BudgetChoice:
        if self.head is None:
            return BudgetChoice(k=self.saliency_k(feats))
        pooled = torch.stack([f.mean(dim=(1, 2)) for f in feats.values()]).mean(dim=0)  # [B, C]
        weights = text_mask.to(text.dtype)[..., None]
        text_mean = (text * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)  # [B, D]
        inputs = torch.cat([pooled, text_mean], dim=-1)
        if self.signal == "sensitivity":  # the head learns from its own target, not through the features
            inputs = inputs.detach()
        fraction = torch.sigmoid(self.head(inputs).squeeze(-1))
        return self.soft_choice(self.k_min + (self.k_max - self.k_min) * fraction)

    def soft_choice(self, soft_k: Tensor, cap: float | None = None) -> BudgetChoice:
        """Inference: ``k = round(soft_k)``. Training: the slot weights (relax), or a K drawn
        uniformly from ``[k_min, cap or k_max]`` for each sample (sensitivity)."""
        if not self.training:
            return BudgetChoice(k=soft_k.round().long().clamp(1, self.k_max), soft_k=soft_k)
        if self.signal == "relax":
            return BudgetChoice(soft_k=soft_k, weight=self.slot_weights(soft_k))
        high = self.k_max if cap is None else max(self.k_min, round(cap))
        return BudgetChoice(k=torch.randint(self.k_min, high + 1, soft_k.shape, device=soft_k.device), soft_k=soft_k)

    def slot_weights(self, soft_k: Tensor) -> Tensor:
        """``[B, K_max]``: ``sigmoid((soft_k - j - 0.5) / temperature)``, 1 for ``j < k_min``."""
        slots = torch.arange(self.k_max, device=soft_k.device, dtype=soft_k.dtype)
        weight = torch.sigmoid((soft_k[:, None] - slots[None, :] - 0.5) / self.temperature)
        return torch.where(slots[None, :] < self.k_min, torch.ones_like(weight), weight)

    @torch.no_grad()
    def saliency_k(self, feats: dict[str, Tensor]) -> Tensor:
        """``[B]`` long: K from the share of patches holding ``mass`` of the saliency."""
        needed = []
        for camera_feats in feats.values():
            flat = camera_feats.flatten(1, 2).float()  # [B, N, C]
            saliency = (flat - flat.mean(dim=1, keepdim=True)).pow(2).sum(dim=-1)  # [B, N]
            share = saliency.sort(dim=1, descending=True).values.cumsum(dim=1)
            share = share / share[:, -1:].clamp_min(1e-12)
            share = (share * SHARE_STEPS).round() / SHARE_STEPS  # float noise (batching, threads) rarely flips K
            count = (share < self.mass).sum(dim=1) + 1  # patches needed to reach ``mass``
            needed.append(count.float() / (self.mass * flat.shape[1]))
        fraction = torch.stack(needed).amax(dim=0)  # 1.0 when saliency is uniform
        return (fraction * self.k_max).round().long().clamp(self.k_min, self.k_max)

    def penalty_loss(self, choice: BudgetChoice) -> Tensor | None:
        if choice.weight is None or self.penalty == 0:  # only while training a relaxed budget
            return None
        return self.penalty * (choice.soft_k / self.k_max).mean()

    @torch.no_grad()
    def probe_losses(self, policy: nn.Module, batch: dict) -> Tensor:
        """``[B, P]``: each sample's action L1 (normalised units) at each of the P ``probe_ks``,
        from ``policy.encode`` and ``policy.head.loss`` as in training, without gradient, with
        the same random draws (noise, flow time, dropout seed) at every K."""
        actions, step_mask = batch["actions"], batch.get("action_mask")
        size = actions.shape[0]
        seed = int(torch.randint(2**31 - 1, (), device="cpu"))
        device = actions.device
        accelerators = [] if device.type == "cpu" else [device]  # the CPU generator is always forked
        columns = []
        for k in self.probe_ks:
            with torch.random.fork_rng(devices=accelerators, device_type=device.type if accelerators else "cuda"):
                torch.manual_seed(seed)
                features, key_mask, _, _ = policy.encode({**batch, "k": torch.full((size,), k, device=actions.device)})
                _, predicted = policy.head.loss(features, actions, step_mask, key_mask)
            error = (predicted - actions).abs().mean(dim=-1)  # [B, H]
            valid = torch.ones_like(error) if step_mask is None else step_mask.to(error.dtype)
            columns.append((error * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0))
        return torch.stack(columns, dim=1)

    def sensitivity_target(self, losses: Tensor) -> Tensor:
        """``[B]`` float: the smallest probe K whose loss (``losses [B, P]``) is at most
        ``(1 + tolerance)`` times the loss at ``k_max`` (the last probe)."""
        within = losses <= losses[:, -1:] * (1.0 + self.tolerance)  # the last column is always True
        first = within.to(torch.uint8).argmax(dim=1)  # index of the first True
        return torch.tensor(self.probe_ks, dtype=losses.dtype, device=losses.device)[first]

    def signal_loss(self, policy: nn.Module, batch: dict, choice: BudgetChoice) -> Tensor | None:
        """``mean |soft_k - k*| / (k_max - k_min)`` against the probe's target (sensitivity,
        training, every ``probe_every``-th step; None otherwise)."""
        if self.signal != "sensitivity" or choice.soft_k is None or not self.training or self.step % self.probe_every:
            return None
        target = self.sensitivity_target(self.probe_losses(policy, batch))
        return (choice.soft_k - target).abs().mean() / (self.k_max - self.k_min)


def build_budget(cfg, k_max: int, vision_dim: int, text_dim: int) -> Budget:
    """The budget named by ``cfg.name`` for a compressor emitting ``k_max`` slots; a learned
    head reads ``vision_dim``-wide patch features and ``text_dim``-wide instruction tokens."""
    return BUDGETS.build(cfg, k_max, vision_dim, text_dim)
