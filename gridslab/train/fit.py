"""Build data, module and Trainer from a resolved config and fit (what ``train.py`` runs).

What it writes under ``cfg.output_dir``: see ``gridslab.config.run_layout``.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    RichProgressBar,
)
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig

from gridslab.config import to_plain, to_yaml
from gridslab.config.run_layout import CONFIG_FILE, LAST_CHECKPOINT_STEM, checkpoint_dir, last_checkpoint
from gridslab.config.schema import THREADS_AUTO
from gridslab.data.datamodule import DemoDataModule
from gridslab.errors import UserError
from gridslab.eval.checkpoint import read_checkpoint
from gridslab.policy.config import as_policy_config
from gridslab.policy.factory import build_policy
from gridslab.policy.pretrained import check_local_paths
from gridslab.train.callbacks import OnlineEvalCallback
from gridslab.train.event_log import drop_events_from
from gridslab.train.module import VLAModule
from gridslab.train.threads import ThreadTuner, apply_threads

WAIT_FOR_DATA_SECONDS = 3600  # non-zero ranks launched by torchrun wait this long for rank 0's collection


def resolve_resume(cfg: DictConfig) -> str | None:
    """``resume=""`` -> None; ``auto`` -> last.ckpt if present; else the path, which must exist."""
    if not cfg.resume:
        return None
    if cfg.resume == "auto":
        last = last_checkpoint(cfg.output_dir)
        return str(last) if last.exists() else None
    if not Path(cfg.resume).exists():
        raise UserError(f"resume checkpoint {cfg.resume} does not exist; use resume=auto or a path to a .ckpt file")
    read_checkpoint(cfg.resume)  # an empty, corrupt or foreign file fails here, in one line
    return str(cfg.resume)


def _prepare_data(datamodule: DemoDataModule) -> None:
    """Collect missing demos on local rank 0; other ranks (torchrun) wait for the file."""
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        datamodule.prepare_data()
        return
    deadline = time.time() + WAIT_FOR_DATA_SECONDS
    while not all(p.exists() for p in datamodule.paths):
        if time.time() > deadline:
            raise UserError(f"rank {os.environ.get('RANK')} gave up waiting for {datamodule.paths}")
        time.sleep(2)


def _logger(output_dir: Path, resume_from: str | None) -> TensorBoardLogger:
    """TensorBoard logger; on resume, the events a killed run logged at the checkpoint's step
    or later are removed first (global rank 0), so no step is logged twice."""
    if resume_from is not None and _is_global_zero():
        step = int(torch.load(resume_from, map_location="cpu", weights_only=True)["global_step"])
        drop_events_from(output_dir / "tb", step)
    return TensorBoardLogger(save_dir=str(output_dir), name="tb", version="")


def _is_global_zero() -> bool:
    """Before the Trainer exists: rank 0 of rank 0's node (torchrun/SLURM/Lightning's launcher set these)."""
    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    return os.environ.get("NODE_RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def check_before_data(cfg: DictConfig) -> str | None:
    """Fail on a bad policy/compressor/budget/optimiser setting or resume path before any
    demonstration is collected or file written: the policy is built on the meta device (no
    memory, no compute). Returns the checkpoint to resume from (None for a fresh run)."""
    check_env(cfg)
    resume_from = resolve_resume(cfg)
    check_precision(cfg.trainer)
    policy_cfg = as_policy_config(cfg.policy)
    check_local_paths(policy_cfg.vision, policy_cfg.lm)
    if not (policy_cfg.vision.path or policy_cfg.lm.path):  # a pretrained checkpoint is loaded once, later
        with torch.device("meta"):
            build_policy(to_plain(cfg), proprio_dim=1, action_dim=1)
    return resume_from


def check_env(cfg: DictConfig) -> None:
    """The env or suite exists and can run here (e.g. LIBERO's assets), and a suite whose
    demonstrations are its own files (LIBERO) has them unless ``data.paths`` names others;
    errors name the suite's offline alternative."""
    from envs.registry import check_datasets, check_ready

    check_ready(cfg.env.name)
    if not cfg.data.paths:
        check_datasets(cfg.env.name, cfg.data.root)


def check_precision(trainer: DictConfig) -> None:
    """fp16 needs a CUDA GPU (on CPU use bf16-mixed, which CPUs run through autocast); the
    precision's name is checked by the schema."""
    on_gpu = trainer.accelerator in ("gpu", "cuda") or (trainer.accelerator == "auto" and torch.cuda.is_available())
    if trainer.precision == "16-mixed" and not on_gpu:
        raise UserError(f"trainer.precision={trainer.precision} needs a CUDA GPU; on CPU use bf16-mixed or 32-true")


def _checkpoint_callbacks(output_dir: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """(best, last): the lowest-val/loss checkpoint, and ``last.ckpt`` rewritten at every epoch end.

    Not ``save_last=True``: since Lightning 2.6 that writes ``last.ckpt`` only when a top-k
    checkpoint is saved at the same step, so with ``save_top_k=1`` an epoch whose val/loss
    did not improve left ``last.ckpt`` an epoch (or more) behind the run."""
    best = ModelCheckpoint(
        dirpath=checkpoint_dir(output_dir),
        filename="best-epoch{epoch:03d}-step{step}",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=False,
    )
    last = ModelCheckpoint(
        dirpath=checkpoint_dir(output_dir), filename=LAST_CHECKPOINT_STEM, save_top_k=1, enable_version_counter=False
    )
    return best, last


def build_datamodule(cfg: DictConfig) -> DemoDataModule:
    return DemoDataModule(cfg.data, cfg.env, cfg.policy.chunk, seed=cfg.seed)


def fit(cfg: DictConfig, extra_callbacks: list[L.Callback] | None = None) -> dict[str, Any]:
    """Train the policy described by ``cfg``; returns paths and final metrics. ``trainer.threads=auto``
    adds a ``ThreadTuner`` (``gridslab.train.threads``)."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    threads = apply_threads(cfg.trainer)
    resume_from = check_before_data(cfg)
    datamodule = build_datamodule(cfg)
    _prepare_data(datamodule)
    datamodule.setup("fit")
    module = VLAModule(
        to_plain(cfg), datamodule.proprio_dim, datamodule.action_dim, datamodule.instructions, stats=datamodule.stats
    )
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        (output_dir / CONFIG_FILE).write_text(to_yaml(cfg))

    best, last = _checkpoint_callbacks(output_dir)
    callbacks: list[L.Callback] = [best, last, LearningRateMonitor(logging_interval="step")]
    if cfg.trainer.progress_bar:
        callbacks.append(RichProgressBar())
    if cfg.eval.every_n_epochs > 0:
        callbacks.append(OnlineEvalCallback(cfg))
    if cfg.trainer.threads == THREADS_AUTO and not cfg.trainer.deterministic:
        callbacks.append(ThreadTuner(threads))
    callbacks += extra_callbacks or []
    trainer_cfg = cfg.trainer
    trainer = L.Trainer(
        default_root_dir=str(output_dir),
        logger=_logger(output_dir, resume_from),
        callbacks=callbacks,
        max_epochs=trainer_cfg.max_epochs,
        max_steps=trainer_cfg.max_steps,
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        strategy=trainer_cfg.strategy,
        num_nodes=trainer_cfg.num_nodes,
        precision=trainer_cfg.precision,
        log_every_n_steps=trainer_cfg.log_every_n_steps,
        check_val_every_n_epoch=trainer_cfg.check_val_every_n_epoch,
        limit_train_batches=trainer_cfg.limit_train_batches,
        limit_val_batches=trainer_cfg.limit_val_batches,
        gradient_clip_val=cfg.optim.grad_clip or None,
        deterministic=trainer_cfg.deterministic,
        enable_progress_bar=trainer_cfg.progress_bar,
        enable_model_summary=trainer_cfg.progress_bar,
    )
    with warnings.catch_warnings():  # our sampler does resume mid-epoch (gridslab.data.sampling)
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if value.numel() == 1}
    return {
        "best_checkpoint": best.best_model_path,
        "last_checkpoint": last.best_model_path,
        "output_dir": str(output_dir),
        "metrics": metrics,
        "global_step": trainer.global_step,
    }
