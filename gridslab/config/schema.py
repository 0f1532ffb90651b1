"""The experiment's typed schema: one dataclass per config group, checked once.

Light by design (lerobot's ``configuration_*.py``): this module imports no torch, Lightning
or simulator, so a config can be read and checked anywhere. Each field is checked once, in
its dataclass's ``__post_init__``, which runs when ``load_config`` turns the composed config
into these objects; modules then read typed attributes (``cfg.optim.ema_decay``), never
re-validate them. The policy's own schema is ``gridslab.policy.config``; compressor and
budget nodes are free-form here and checked against the schema their registry entry names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gridslab.errors import UserError
from gridslab.policy.config import PolicyConfig

DEFAULT_EXPERIMENT = "robosuite_lift"
LR_SCALING_RULES = ("none", "sqrt", "linear")
DATA_FORMATS = ("auto", "hdf5", "lerobot")
# LeRobot feature read for each camera, the proprio vector and the actions (LeRobot's LIBERO names)
LEROBOT_KEYS = {
    "agentview": "observation.images.image",
    "robot0_eye_in_hand": "observation.images.image2",
    "proprio": "observation.state",
    "actions": "action",
}
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")  # inputs stay float32: mixed precision autocasts the compute
THREADS_AUTO = "auto"  # trainer.threads: adapt to the cores free (gridslab.train.threads)


@dataclass
class EnvConfig:
    """Which env to collect demos in and evaluate on, and how it renders.

    name: registered env name (``envs.names()``) or suite (``envs.registry.suite_names()``:
    one multi-task policy over its tasks, evaluated per task); cameras: rendered cameras;
    image_size: pixels; render_quality: "fast" | "full" (same for data and evaluation);
    max_steps: episode limit in env steps (0 = the task's own); kwargs: further keyword
    arguments of the env (collection and evaluation alike), e.g. LIBERO's conventions
    ``{orientation: rotate180, proprio: axis_angle}``, which the LIBERO dataset reader applies
    too. Names, cameras, render settings and kwargs are checked by ``envs`` itself, their one home.
    """

    name: str = "robosuite/Lift"
    cameras: list[str] = field(default_factory=lambda: ["agentview", "robot0_eye_in_hand"])
    image_size: int = 84
    render_quality: str = "fast"
    max_steps: int = 0
    kwargs: dict[str, str] = field(default_factory=dict)


def env_kwargs(env: Any) -> dict[str, Any]:
    """Keyword arguments for ``envs.make(env.name, **kwargs)`` from an ``EnvConfig`` (or node)."""
    kwargs: dict[str, Any] = {
        "cameras": list(env.cameras),
        "image_size": int(env.image_size),
        "render_quality": str(env.render_quality),
    }
    if env.max_steps:
        kwargs["max_steps"] = int(env.max_steps)
    kwargs.update(dict(getattr(env, "kwargs", None) or {}))
    return kwargs


@dataclass
class DataConfig:
    """Where demos come from and how they are batched.

    paths: HDF5 files, one per task, or LeRobot dataset directories ([] = the default files
    for ``env``, collected if missing, under ``root``); format: "auto" (a directory is a LeRobot
    dataset, a file HDF5), "hdf5" or "lerobot"; lerobot_keys: which LeRobot feature feeds each
    camera (an unlisted camera reads ``observation.images.<camera>``), ``proprio`` and
    ``actions``; episodes: demos per file (a LeRobot dataset: per task) to use, and to collect
    per task; collect_noise: std of the expert's executed xyz noise when collecting;
    val_fraction: share of demos held out for validation; batch_size: per device;
    num_workers: DataLoader workers; shift_pixels: random-shift augmentation amplitude in
    pixels (0 = off).
    """

    root: str = "data"
    paths: list[str] = field(default_factory=list)
    format: str = "auto"
    lerobot_keys: dict[str, str] = field(default_factory=lambda: dict(LEROBOT_KEYS))
    episodes: int = 100
    collect_noise: float = 0.1
    val_fraction: float = 0.1
    batch_size: int = 64
    num_workers: int = 0
    shift_pixels: int = 4

    def __post_init__(self) -> None:
        if self.format not in DATA_FORMATS:
            raise UserError(f"unknown data.format {self.format!r}; valid: {', '.join(DATA_FORMATS)}")
        if self.format == "lerobot" and not self.paths:
            raise UserError("data.format=lerobot reads local LeRobot datasets: name their directories, data.paths=[DIR, ...]")
        for role in ("proprio", "actions"):
            if not self.lerobot_keys.get(role):
                raise UserError(
                    f"data.lerobot_keys.{role} is empty; name the LeRobot feature it reads (e.g. {LEROBOT_KEYS[role]})"
                )
        if self.episodes < 1:
            raise UserError(f"data.episodes={self.episodes} must be >= 1")
        if self.batch_size < 1:
            raise UserError(f"data.batch_size={self.batch_size} must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"data.val_fraction={self.val_fraction} must be in [0, 1)")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``lr * min_lr_ratio``.

    lr: peak learning rate for the per-device batch (see README for the DDP scaling rule);
    warmup_steps: optimiser steps; grad_clip: max gradient L2 norm (0 = off);
    ema_decay: exponential moving average of weights used for validation/evaluation (0 = off);
    lr_scaling: how ``lr`` grows with the number of DDP processes N (the effective batch is
    ``data.batch_size * N``): "sqrt" (lr * sqrt(N), the default for AdamW), "linear" (lr * N)
    or "none". With one process every rule gives ``lr``.
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    lr_scaling: str = "sqrt"

    def __post_init__(self) -> None:
        if self.lr_scaling not in LR_SCALING_RULES:
            raise UserError(f"unknown optim.lr_scaling {self.lr_scaling!r}; valid: {', '.join(LR_SCALING_RULES)}")
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"optim.ema_decay={self.ema_decay} must be in [0, 1) (0 = no EMA)")


@dataclass
class TrainerConfig:
    """Lightning Trainer settings. devices/strategy/num_nodes select DDP (see README);
    precision: one of ``PRECISIONS`` (fp16 needs a CUDA GPU; checked when training starts);
    threads: torch CPU threads per process: ``auto`` (default) starts at the cores this process
    may use (its CPU affinity, divided among the training processes on the node, so 2 DDP ranks
    on 2 cores get 1 each) and keeps, by measuring step times, whichever of that count halved
    down to 1 is fastest (with libgomp a busy neighbour on one core made 2 threads 13x slower
    while 1 thread lost nothing: ``gridslab.train.threads``); N >= 1 fixes N; 0 leaves torch's
    default. ``auto`` with ``deterministic=true`` keeps the start count (thread counts change
    float summation order in the backward pass, so adapting makes weights depend on the load);
    image_every_n_steps: how often the coordinate image grid is logged."""

    max_epochs: int = 30
    max_steps: int = -1
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    log_every_n_steps: int = 20
    image_every_n_steps: int = 500
    check_val_every_n_epoch: int = 1
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    threads: int | str = THREADS_AUTO
    deterministic: bool = False
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.threads != THREADS_AUTO and (not isinstance(self.threads, int) or self.threads < 0):
            raise UserError(f"trainer.threads={self.threads!r} is not valid; valid: auto, 0 (torch's default) or a count >= 1")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown trainer.precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")


EXECUTION_MODES = ("chunk", "ensemble")  # eval.execution; what they do: gridslab.eval.execution


@dataclass
class EvalConfig:
    """Online evaluation settings.

    episodes: episodes per condition; ood: comma list of perturbation specs evaluated
    besides "clean" (``+`` combines, e.g. "lighting,lighting+distractors"); severity: in
    [0, 1]; seed: first episode seed (episode i uses seed + i; keep it apart from the
    collection seeds 0..N); workers: env worker processes per rank (0 = the CPU cores this
    rank may use); threads: torch CPU threads of the policy while evaluating (the env workers
    have the cores; 0 = torch's default, which on a loaded machine makes each policy call tens
    of times slower);
    video_episodes: MP4s saved for the first E episodes of each condition;
    every_n_epochs / callback_episodes: online evaluation during training (0 = off);
    execution: what is executed of each predicted chunk, "chunk" (``policy.replan_every``
    actions, 0 = the whole chunk, then a new prediction) or "ensemble" (ACT-style temporal
    ensembling: a prediction at every step, each step's action the mean of the overlapping
    chunks' predictions for it with weights exp(-ensemble_decay * i), i = 0 the oldest: ACT's
    and lerobot's convention, their default 0.01; renders every step); batched_policy: one
    policy call over all episodes that need actions (faster on a GPU) instead of one per
    episode, whose results then depend in the last float bits on which episodes share a batch,
    i.e. on the workers and ranks (off: the same results on any layout).
    """

    episodes: int = 50
    ood: str = ""
    severity: float = 0.5
    seed: int = 100000
    workers: int = 0
    max_steps: int = 0
    video_episodes: int = 2
    every_n_epochs: int = 0
    callback_episodes: int = 10
    execution: str = "chunk"
    ensemble_decay: float = 0.01
    threads: int = 1
    batched_policy: bool = False

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise UserError(f"eval.threads={self.threads} must be >= 0 (0 = torch's default)")
        if self.episodes < 1:
            raise UserError(f"eval.episodes={self.episodes} must be >= 1")
        if self.execution not in EXECUTION_MODES:
            raise UserError(f"unknown eval.execution {self.execution!r}; valid: {', '.join(EXECUTION_MODES)}")
        if not 0 <= self.severity <= 1:
            raise UserError(f"eval.severity={self.severity!r} is out of range; valid: a number in [0, 1]")


@dataclass
class ExperimentConfig:
    """One run. output_dir: logs, checkpoints, results; resume: "", "auto" or a ckpt path.

    compressor / budget are free-form here and validated against the schema their
    registry entry names (``COMPRESSORS`` / ``BUDGETS``).
    """

    experiment: str = DEFAULT_EXPERIMENT
    seed: int = 0
    output_dir: str = "runs/default"
    resume: str = ""
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    compressor: dict[str, Any] = field(default_factory=lambda: {"name": "grids", "k": 4})
    budget: dict[str, Any] = field(default_factory=lambda: {"name": "fixed"})
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
