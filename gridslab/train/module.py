"""``VLAModule``: the VLA as a LightningModule (loss, optimiser, EMA, logging).

Training minimises the policy's L1 action-chunk loss on normalised actions. Logged to
TensorBoard: train/val loss (and the action loss alone when a budget adds a compute
penalty), learning rate, visual tokens per image (mean/min/max over the batch), GFLOPs per
sample at those token counts, validation action L1 per dimension (env units), and an image grid of input frames with the compressor's
sampled coordinates drawn on them (every ``image_every_n_steps`` and at each validation).
The checkpoint holds the resolved config and the normalisation statistics (policy buffers).
"""

from __future__ import annotations

import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics import MeanAbsoluteError

from gridslab.config.load import typed
from gridslab.config.schema import OptimConfig
from gridslab.policy.factory import build_policy
from gridslab.policy.flops import flops_by_tokens, gflops_at
from gridslab.policy.pretrained import self_contained
from gridslab.policy.vla import VLA
from gridslab.train.ema import EMA
from gridslab.train.threads import apply_threads
from gridslab.viz import draw_points, tile

IMAGES_PER_GRID = 8


class VLAModule(L.LightningModule):
    """Trains a ``VLA``. ``config``: the resolved experiment config as plain data."""

    def __init__(
        self,
        config: dict[str, Any],
        proprio_dim: int,
        action_dim: int,
        instructions: list[str],
        stats: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["stats"])
        self.policy = build_policy(config, proprio_dim, action_dim)
        # pretrained paths -> the loaded towers' configs: checkpoints rebuild without the directories
        config = {**config, "policy": self_contained(config["policy"], self.policy)}
        self.hparams["config"] = config
        self.cfg = typed(config)  # typed once: modules below read attributes, not dict keys
        if stats is not None:
            self.policy.set_normalization(stats)
        if hasattr(self.policy.budget, "check_tasks"):
            self.policy.budget.check_tasks(instructions)
        self.gflops_table: dict[int, float] = {}
        self.ema = EMA(self.policy, self.cfg.optim.ema_decay) if self.cfg.optim.ema_decay > 0 else None
        self.val_l1 = MeanAbsoluteError(num_outputs=action_dim)

    @property
    def eval_policy(self) -> VLA:
        """The weights used for validation and rollouts (EMA when enabled)."""
        return self.ema.module if self.ema is not None else self.policy

    def setup(self, stage: str) -> None:
        apply_threads(self.cfg.trainer)  # again here: processes spawned by DDP do not inherit the launcher's setting

    def on_fit_start(self) -> None:
        self.gflops_table = flops_by_tokens(self.policy)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.policy.budget.step = self.global_step  # the budget curriculum follows optimiser steps

    def _log_tokens(self, outputs: dict[str, Any], stage: str) -> None:
        """Tokens per image (mean/min/max over the batch) and GFLOPs per sample at those counts."""
        per_sample = self.policy.tokens_per_sample(outputs)
        train = stage == "train"
        size = per_sample.shape[0]
        for name, value in (("mean", per_sample.mean()), ("min", per_sample.min()), ("max", per_sample.max())):
            self.log(
                f"{stage}/tokens_per_image/{name}",
                value,
                on_step=train,
                on_epoch=not train,
                batch_size=size,
                sync_dist=not train,
                reduce_fx={"mean": "mean", "min": "min", "max": "max"}[name],
            )
        if self.gflops_table:
            gflops = sum(gflops_at(self.gflops_table, float(k)) for k in per_sample.tolist()) / size
            self.log(
                f"{stage}/gflops_per_sample", gflops, on_step=train, on_epoch=not train, batch_size=size, sync_dist=not train
            )

    def training_step(self, raw: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One step on a collated raw batch (``gridslab.data.datamodule``), processed by the policy."""
        batch = self.policy.processor.training_batch(raw)
        loss, outputs = self.policy.loss(batch)
        loss = self._with_budget_signal(loss, batch, outputs)
        batch_size = batch["proprio"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        if outputs["action_loss"] is not loss:  # the budget added a compute penalty or its own loss
            self.log("train/action_loss", outputs["action_loss"], batch_size=batch_size)
        self._log_tokens(outputs, "train")
        every = self.cfg.trainer.image_every_n_steps
        if every > 0 and self.global_step % every == 0:
            self._log_coordinate_images(batch, outputs, "train")
        return loss

    def _with_budget_signal(self, loss: torch.Tensor, batch: dict[str, Any], outputs: dict[str, Any]) -> torch.Tensor:
        """``loss`` plus the budget's own training loss (``Budget.signal_loss``: the adaptive
        head's per-sample loss-sensitivity probe), logged as train/budget_loss when there is one."""
        signal = self.policy.budget.signal_loss(self.policy, batch, outputs["budget"])
        if signal is None:
            return loss
        self.log("train/budget_loss", signal, batch_size=batch["proprio"].shape[0])
        return loss + signal

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the EMA update: both before any callback's
        ``on_train_batch_end``, so a checkpoint saved there (every_n_train_steps) holds them."""
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.update(self.policy)

    def validation_step(self, raw: dict[str, Any], batch_idx: int) -> None:
        policy = self.eval_policy
        batch = policy.processor.training_batch(raw)
        loss, outputs = policy.loss(batch)
        batch_size = batch["proprio"].shape[0]
        self.log("val/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=True)
        self._log_tokens(outputs, "val")
        valid = batch["action_mask"]
        predicted = policy.processor.env_actions(outputs["actions"])[valid]
        self.val_l1.update(predicted, raw["actions"].float()[valid])
        if batch_idx == 0:
            self._log_coordinate_images(batch, outputs, "val")

    def on_validation_epoch_end(self) -> None:
        per_dim = self.val_l1.compute()
        self.val_l1.reset()
        for dim, value in enumerate(per_dim):
            self.log(f"val/action_l1/dim{dim}", value)
        self.log("val/action_l1", per_dim.mean())  # torchmetrics already synced across ranks

    def _log_coordinate_images(self, batch: dict[str, Any], outputs: dict[str, Any], stage: str) -> None:
        """Frames with sampled coordinates drawn, one grid per camera, to TensorBoard."""
        if self.logger is None or not hasattr(self.logger.experiment, "add_image") or self.global_rank != 0:
            return
        for camera, tokens in outputs["tokens"].items():
            frames = batch["images"][camera][:IMAGES_PER_GRID].cpu().numpy()
            coords = tokens.coords[:IMAGES_PER_GRID].detach().float().cpu().numpy()
            mask = tokens.mask[:IMAGES_PER_GRID].cpu().numpy()
            drawn = [draw_points(f, c, m) for f, c, m in zip(frames, coords, mask)]
            grid = tile(drawn, columns=min(4, len(drawn)))
            self.logger.experiment.add_image(f"{stage}/coords/{camera}", grid, self.global_step, dataformats="HWC")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the RNG streams (as plain data) so a resumed run continues them."""
        checkpoint["rng_state"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_state" in checkpoint:
            restore_rng_state(checkpoint["rng_state"])

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.cfg.optim
        optimizer = torch.optim.AdamW(
            self.policy.parameters(),
            lr=scaled_lr(optim, self.trainer.world_size),
            weight_decay=optim.weight_decay,
            betas=tuple(optim.betas),
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = min(optim.warmup_steps, max(total // 10, 1))
        floor = optim.min_lr_ratio

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min((step - warmup) / max(total - warmup, 1), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


LR_SCALING = {"none": lambda world: 1.0, "sqrt": math.sqrt, "linear": float}  # the rules of OptimConfig.lr_scaling


def scaled_lr(optim: OptimConfig, world_size: int) -> float:
    """``optim.lr`` scaled for ``world_size`` DDP processes by ``optim.lr_scaling``."""
    return optim.lr * LR_SCALING[optim.lr_scaling](world_size)


def rng_state() -> dict[str, Any]:
    """torch, numpy and python RNG states as tensors and plain data (``weights_only``-safe)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate((state["python_version"], tuple(state["python"]), None))
