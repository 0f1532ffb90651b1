"""Periodic online-rollout validation during training (off unless eval.every_n_epochs > 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from gridslab.config.run_layout import eval_dir
from gridslab.eval.runner import VIDEO_FPS, evaluate_policy
from gridslab.eval.shard import Shard, clear_dir
from gridslab.viz import add_video


class OnlineEvalCallback(L.Callback):
    """Every ``eval.every_n_epochs`` epochs, roll out the EMA policy for
    ``eval.callback_episodes`` clean episodes and log ``online/success_rate`` and, unless
    ``eval.video_episodes=0``, the first episode as a TensorBoard video ``online/<video name>``;
    under DDP every rank runs its share of the episodes (``gridslab.eval.shard``)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.every = cfg.eval.every_n_epochs

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.every <= 0 or trainer.sanity_checking or epoch % self.every:
            return
        cfg = OmegaConf.merge(
            self.cfg,
            {
                "eval": {
                    "episodes": self.cfg.eval.callback_episodes,
                    "ood": "",
                    "video_episodes": min(self.cfg.eval.video_episodes, 1),
                }
            },
        )
        out_dir = eval_dir(self.cfg.output_dir, f"online_epoch{epoch:03d}")
        shard = Shard(trainer.global_rank, trainer.world_size, trainer.local_rank, trainer.num_devices)
        clear_dir(out_dir, shard)  # a folder left by an earlier run holds other weights' episodes
        policy = module.eval_policy
        was_training = policy.training
        rows = evaluate_policy(policy, cfg, out_dir, checkpoint=f"epoch{epoch}", progress=False, shard=shard)
        policy.train(was_training)
        if trainer.global_rank == 0:
            _log_videos(trainer.logger.experiment, out_dir / "videos", trainer.global_step)
        clean = next(r for r in rows if r["perturbation"] == "clean")
        module.log("online/success_rate", clean["success_rate"], rank_zero_only=True)


def _log_videos(writer: Any, videos: Path, step: int) -> None:
    """The MP4s ``evaluate_policy`` saved in ``videos`` (points drawn) as TensorBoard videos
    ``online/<file stem>`` at ``step`` of the training run."""
    import imageio.v3 as iio

    for path in sorted(videos.glob("*.mp4")):
        add_video(writer, f"online/{path.stem}", list(iio.imread(path, index=None)), step, VIDEO_FPS)
