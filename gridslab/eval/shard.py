"""Split an evaluation's episodes over ranks (torchrun or SLURM) and bring their results together.

Ranks come from torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``), else
from SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``: ``srun python evaluate.py``),
else the process is alone. Episode i of the evaluation's ordered (task, condition, seed) list
runs on rank ``i mod world_size``. Each rank runs its own env workers, puts the policy on its
own GPU (``cuda:<local rank>``, when there is one) and MuJoCo's EGL rendering on the same GPU
(``MUJOCO_EGL_DEVICE_ID``), and appends each finished episode to its own results file,
``results.rank<r>-of-<n>.jsonl`` (one line per episode, flushed and fsynced as it finishes;
alone: ``results.jsonl``). After a barrier (torch.distributed over gloo, set up only when
there is more than one rank), rank 0 merges every results file of the folder. A rank that dies
loses only its unfinished episodes: the same command again resumes, each rank skipping every
episode any results file of the folder holds, whatever world size wrote it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TypeVar

import torch
import torch.distributed as dist

from gridslab.errors import UserError

RESULTS_FILE = "results.jsonl"
# ranks wait for the slowest one at the barrier: as long as a whole evaluation may take
BARRIER_TIMEOUT = datetime.timedelta(hours=24)

Item = TypeVar("Item")
_gloo_groups: dict[int, dist.ProcessGroup] = {}  # per world size: a gloo group beside an NCCL default group


@dataclass(frozen=True)
class Shard:
    """This process's place among the evaluation's ranks (``local_*``: on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environment(cls) -> Shard:
        """torchrun's variables, else SLURM's, else a process alone. Under SLURM each task is
        pinned to its own CPUs, so its local world size is 1 for the CPU count."""
        env = os.environ
        if "WORLD_SIZE" in env:
            names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
        elif "SLURM_NTASKS" in env:
            names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "")
        else:
            return cls()
        defaults = ("0", "1", "0", "1")
        try:
            rank, world, local_rank, local_world = (int(env.get(name, default)) for name, default in zip(names, defaults))
        except ValueError:
            raise UserError(
                f"rank variables {', '.join(n for n in names if n)} must be integers, got {env_values(names)}"
            ) from None
        if not 0 <= rank < world:
            raise UserError(f"rank {rank} is out of range for world size {world} ({env_values(names)})")
        return cls(rank, world, local_rank, local_world)

    def take(self, items: list[Item]) -> list[Item]:
        """This rank's share of ``items``: every ``world_size``-th one from position ``rank``."""
        return items[self.rank :: self.world_size]

    @property
    def results_file(self) -> str:
        return RESULTS_FILE if self.world_size == 1 else f"results.rank{self.rank}-of-{self.world_size}.jsonl"

    def device(self) -> torch.device:
        """The policy's device: ``cuda:<local rank>`` (modulo the GPUs this process sees), else the CPU."""
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", self.local_rank % torch.cuda.device_count())

    def claim_render_device(self) -> None:
        """Render on this rank's GPU: set ``MUJOCO_EGL_DEVICE_ID`` (an EGL device index, counted
        over all GPUs: the ``CUDA_VISIBLE_DEVICES`` entry of ours) before any env is made.
        Without CUDA (CPU rendering) nothing is set."""
        if self.world_size == 1 or not torch.cuda.is_available():
            return
        index = self.device().index
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        os.environ["MUJOCO_EGL_DEVICE_ID"] = visible[index] if len(visible) > index and visible[index].isdigit() else str(index)


def env_values(names: tuple[str, ...]) -> str:
    return ", ".join(f"{name}={os.environ.get(name)!r}" for name in names if name)


def results_paths(out_dir: Path) -> list[Path]:
    """Every results file in ``out_dir``: ``results.jsonl`` first, then the rank shards by name."""
    return [out_dir / RESULTS_FILE, *sorted(out_dir.glob("results.rank*-of-*.jsonl"))]


@contextlib.contextmanager
def process_group(shard: Shard) -> Iterator[None]:
    """torch.distributed for ``shard``'s barrier: set up over gloo (``MASTER_ADDR`` /
    ``MASTER_PORT``, as torchrun exports them) when there are several ranks and no group
    exists yet (DDP training has one), and torn down afterwards."""
    if shard.world_size == 1 or dist.is_initialized():
        yield
        return
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise UserError(
            f"{' and '.join(missing)} not set: {shard.world_size} ranks need the rendezvous address (torchrun sets it)"
        )
    dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world_size, timeout=BARRIER_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(shard: Shard) -> None:
    """Wait for every rank (inside ``process_group``); alone, return at once."""
    if shard.world_size == 1:
        return
    group = None
    if dist.get_backend() != "gloo":  # NCCL's barrier needs a GPU per rank: a gloo group of the same ranks
        if shard.world_size not in _gloo_groups:
            _gloo_groups[shard.world_size] = dist.new_group(backend="gloo", timeout=BARRIER_TIMEOUT)
        group = _gloo_groups[shard.world_size]
    dist.barrier(group=group)


def clear_dir(out_dir: Path, shard: Shard) -> None:
    """Remove ``out_dir`` (rank 0) before every rank writes into it again."""
    if shard.rank == 0:
        shutil.rmtree(out_dir, ignore_errors=True)
    barrier(shard)


@contextlib.contextmanager
def policy_on_device(policy: torch.nn.Module, shard: Shard) -> Iterator[None]:
    """Run the policy on ``shard.device()`` when it sits on the CPU and a GPU is there; put it
    back afterwards. A policy already on a GPU (DDP training) stays where it is."""
    current = next(policy.parameters()).device
    target = shard.device()
    if current.type != "cpu" or target.type == "cpu":
        yield
        return
    policy.to(target)
    try:
        yield
    finally:
        policy.to(current)
