"""The training sampler: a sample order that depends only on (seed, epoch), resumable mid-epoch.

A run killed at any step and resumed from a checkpoint then sees exactly the batches an
uninterrupted run sees, so it ends with the same weights.

Why not Lightning's own mechanism: Lightning restores a loader's position only through a
loader's ``state_dict`` / ``load_state_dict``, and not at all when ``configure_optimizers``
reads ``trainer.estimated_stepping_batches`` (ours does; Lightning issue #20550): the train
loader and its first iterator are then built before the checkpoint is restored. So the
sampler takes its position from the checkpoint itself when it is built
(``training_sampler``), from the loop progress Lightning stores in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (one permutation per epoch from ``seed + epoch``, split across
    ``num_replicas`` ranks) that starts its first epoch ``skip_batches`` batches in.

    ``__len__`` stays the full epoch (samples per rank), so the loader's length, Lightning's
    step estimate and the LR schedule do not change on a resume; the iterator of the resumed
    epoch just yields the remaining batches. Lightning calls ``set_epoch`` at every epoch
    start; moving to another epoch clears the skip.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
        skip_batches: int = 0,
    ):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size
        self.epoch = epoch
        self.skip_batches = skip_batches

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip_batches = 0
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip_batches * self.batch_size :])


def resume_position(checkpoint: dict[str, Any]) -> tuple[int, int]:
    """(epoch, batches of it already trained) at which a Lightning checkpoint resumes.

    From the fit loop's progress counters: ``epoch_progress.current.started - 1`` is the epoch
    being (or last) trained and ``epoch_loop.batch_progress.current.ready`` the batches of it
    handed to ``training_step``, whether the checkpoint was saved after a batch, after
    validation or at the epoch's end; an epoch whose last batch was trained resumes at the
    start of the next one.
    """
    loop = checkpoint["loops"]["fit_loop"]
    epoch = int(loop["epoch_progress"]["current"]["started"]) - 1
    batches = loop["epoch_loop.batch_progress"]
    if batches["is_last_batch"]:
        return epoch + 1, 0
    return max(epoch, 0), int(batches["current"]["ready"])


def training_sampler(dataset: Dataset, batch_size: int, seed: int, trainer: Any) -> EpochSampler:
    """The training sampler for ``trainer`` (None: one process, from the start): one shard per
    DDP rank, positioned where ``trainer.ckpt_path`` (the checkpoint being resumed) stopped."""
    if trainer is None:
        return EpochSampler(dataset, batch_size, seed)
    epoch, skip = 0, 0
    if trainer.ckpt_path:
        checkpoint = torch.load(trainer.ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        epoch, skip = resume_position(checkpoint)
    return EpochSampler(dataset, batch_size, seed, trainer.world_size, trainer.global_rank, epoch, skip)
