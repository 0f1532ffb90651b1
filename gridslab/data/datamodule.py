"""LightningDataModule over LIBERO/robomimic-format HDF5 demonstrations.

Samples are one time step ``t`` of one demo, raw as the env gives them:
    images:           {camera: uint8 [H, W, 3]}
    proprio:          float32 [D]        env units
    instruction:      str
    actions:          float32 [H, A]     env units, chunk a[t : t+H] (padded with the last action)
    action_mask:      bool [H]           False on padding past the episode end
The policy's processor (``gridslab.policy.processor``) turns a collated batch into the
policy's tensors (tokens, normalisation), exactly as it does for rollout observations.
Normalisation statistics (mean/std of actions and proprio over the training demos) are
computed once in ``setup`` and handed to the policy, which stores them in its checkpoint.
Demos are split into train/val by demo, never by step. The default dataset is collected
by the scripted expert in ``prepare_data`` when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from envs import hdf5_format, libero_format
from envs.hdf5_format import demo_keys
from gridslab.config.schema import DataConfig, env_kwargs
from gridslab.errors import UserError

STD_FLOOR = 1e-2  # keeps near-constant dimensions (e.g. unused rotation) from blowing up


def default_dataset_paths(root: str, env_cfg: Any) -> list[Path]:
    """One file per task the experiment's env (or suite) stands for, in task order:
    ``<root>/<env name>_<size>px.hdf5`` (``robosuite_Lift_84px.hdf5``,
    ``tabletop_spatial_0_84px.hdf5`` ...), or a suite's own files (LIBERO:
    ``<root>/libero/<suite>/<task>_demo.hdf5``); see ``envs.registry.dataset_paths``."""
    from envs.registry import dataset_paths

    return dataset_paths(env_cfg.name, root, env_cfg.image_size)


@dataclass
class Demo:
    """One demonstration held in memory. images: {camera: uint8 [T, H, W, 3]}."""

    images: dict[str, np.ndarray]
    proprio: np.ndarray  # float32 [T, D]
    actions: np.ndarray  # float32 [T, A]
    instruction: str


def _format(data: h5py.Group, path: Path) -> ModuleType:
    """The reader of ``path``'s layout: our own (``envs.hdf5_format``, an ``instruction``
    attribute) or LIBERO's (``envs.libero_format``); each has ``read_instruction``,
    ``read_images`` and ``read_proprio``."""
    if "instruction" in data.attrs:
        return hdf5_format
    if "problem_info" in data.attrs or path.stem.endswith("_demo"):
        return libero_format
    raise UserError(f"{path} has no instruction (attribute 'instruction', or LIBERO's 'problem_info')")


def _reader_settings(layout: ModuleType, conventions: dict[str, str]) -> dict[str, dict[str, str]]:
    """Keyword arguments of ``layout.read_images`` / ``read_proprio``: LIBERO's conventions from
    the env's ``conventions`` (defaults "camera" / "quat"); none for our own layout."""
    if layout is not libero_format:
        return {"images": {}, "proprio": {}}
    return {
        "images": {"orientation": conventions.get("orientation", libero_format.ORIENTATIONS[0])},
        "proprio": {"proprio": conventions.get("proprio", "quat")},
    }


def load_demos(
    paths: list[Path],
    cameras: list[str],
    limit: int,
    data: DataConfig | None = None,
    image_size: int | None = None,
    conventions: dict[str, str] | None = None,
) -> list[Demo]:
    """Read the first ``limit`` demos of each dataset in ``paths`` into memory: an HDF5 file
    (one per task), or a LeRobot dataset directory (``data.format`` "lerobot", or "auto" for a
    directory: the first ``limit`` demos of each of its tasks, features mapped by
    ``data.lerobot_keys``, frames resized to ``image_size`` px; ``gridslab.data.lerobot_format``).
    Bad files fail with one line."""
    data = data or DataConfig()
    demos: list[Demo] = []
    for path in paths:
        if data.format == "lerobot" or (data.format == "auto" and Path(path).is_dir()):
            from gridslab.data.lerobot_format import camera_key, read_episodes

            keys = dict(data.lerobot_keys)
            episodes = read_episodes(
                Path(path), {c: camera_key(keys, c) for c in cameras}, keys["proprio"], keys["actions"], limit, image_size
            )
            demos += [Demo(e["images"], e["proprio"], e["actions"], e["instruction"]) for e in episodes]
        else:
            demos += _load_file(path, cameras, limit, conventions)
    return demos


def _load_file(path: Path, cameras: list[str], limit: int, conventions: dict[str, str] | None = None) -> list[Demo]:
    """The first ``limit`` demos of one file. ``conventions``: the env's keyword arguments
    (``env.kwargs``); a LIBERO-layout file is read in their ``orientation`` and ``proprio``
    (``envs.libero_format``), so training sees what that env gives at evaluation; our own
    layout holds what its env gave."""
    if not path.exists():
        raise UserError(
            f"missing dataset {path}; collect one with: python -m envs.collect --env ENV --image-size N --out {path}, "
            "or leave data.paths empty to collect the experiment's own"
        )
    demos: list[Demo] = []
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise UserError(f"{path} is not a demonstration file: no 'data' group (keys: {', '.join(f.keys()) or 'none'})")
            data = f["data"]
            layout = _format(data, path)
            reader = _reader_settings(layout, conventions or {})
            instruction = layout.read_instruction(data, path)
            keys = demo_keys(data)
            if not keys:
                raise UserError(f"{path} holds no demos (no data/demo_<i> groups)")
            for key in keys[:limit]:
                demo = data[key]
                for needed in ("obs", "actions"):
                    if needed not in demo:
                        raise UserError(f"{path}:{key} lacks '{needed}'; expected obs/<camera>_rgb, obs/proprio, actions")
                obs = demo["obs"]
                images = {camera: layout.read_images(obs, camera, path, **reader["images"]) for camera in cameras}
                proprio = layout.read_proprio(obs, path, **reader["proprio"])
                demos.append(Demo(images, proprio, demo["actions"][:].astype(np.float32), instruction))
    except OSError as err:
        raise UserError(f"{path} is not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    return demos


def normalization_stats(demos: list[Demo]) -> dict[str, np.ndarray]:
    """Per-dimension mean/std of actions ``[A]`` and proprio ``[D]`` over ``demos``."""
    actions = np.concatenate([d.actions for d in demos])
    proprio = np.concatenate([d.proprio for d in demos])
    return {
        "action_mean": actions.mean(0),
        "action_std": np.maximum(actions.std(0), STD_FLOOR),
        "proprio_mean": proprio.mean(0),
        "proprio_std": np.maximum(proprio.std(0), STD_FLOOR),
    }


class ChunkDataset(Dataset):
    """Every (demo, t) with the raw action chunk ``a[t : t+chunk]`` (see module docstring)."""

    def __init__(self, demos: list[Demo], chunk: int):
        self.demos = demos
        self.chunk = chunk
        self.index = [(d, t) for d, demo in enumerate(demos) for t in range(len(demo.actions))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, Any]:
        d, t = self.index[item]
        demo = self.demos[d]
        steps = len(demo.actions)
        window = np.minimum(np.arange(t, t + self.chunk), steps - 1)
        return {
            "images": {camera: torch.from_numpy(frames[t]) for camera, frames in demo.images.items()},
            "proprio": torch.from_numpy(demo.proprio[t]),
            "instruction": demo.instruction,
            "actions": torch.from_numpy(demo.actions[window]),
            "action_mask": torch.from_numpy(np.arange(t, t + self.chunk) < steps),
        }


def random_shift(images: torch.Tensor, pixels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-style augmentation: pad by ``pixels`` (edge replicate), crop back at a random offset.

    images: uint8 ``[B, H, W, 3]`` -> uint8 ``[B, H, W, 3]``, a different shift per sample. One
    gather in uint8: output pixel (y, x) of sample b reads row clamp(y + dy_b - pixels) and column
    clamp(x + dx_b - pixels), which is the padded crop (the same pixels and random draws as padding
    in float and cropping each sample, at a third of the time on 84 px frames).
    """
    if pixels <= 0:
        return images
    batch, height, width, _ = images.shape
    offsets = torch.randint(0, 2 * pixels + 1, (batch, 2), generator=generator, device="cpu").to(images.device)
    rows = (torch.arange(height, device=images.device) + offsets[:, :1] - pixels).clamp_(0, height - 1)  # [B, H]
    cols = (torch.arange(width, device=images.device) + offsets[:, 1:] - pixels).clamp_(0, width - 1)  # [B, W]
    samples = torch.arange(batch, device=images.device)[:, None, None]
    return images[samples, rows[:, :, None], cols[:, None, :]]


class DemoDataModule(L.LightningDataModule):
    """Demos -> train/val loaders of ``ChunkDataset`` samples, with stats for the policy."""

    def __init__(self, data: DataConfig, env: Any, chunk: int, seed: int = 0):
        super().__init__()
        self.cfg = data
        self.env_cfg = env
        self.chunk = chunk
        self.seed = seed
        self.stats: dict[str, np.ndarray] | None = None
        self.train_set: ChunkDataset | None = None
        self.val_set: ChunkDataset | None = None

    @property
    def paths(self) -> list[Path]:
        if self.cfg.paths:
            return [Path(p) for p in self.cfg.paths]
        return default_dataset_paths(self.cfg.root, self.env_cfg)

    def prepare_data(self) -> None:
        """Collect each task's default dataset with the scripted expert if it is missing (rank 0;
        a suite's tasks as many at once as there are usable CPU cores).
        A suite whose files have a layout of its own (LIBERO) gets its missing files collected
        into that layout, after one line saying what they are (scripted, not LIBERO's human
        demonstrations, which are used instead when placed there)."""
        if self.cfg.paths:
            return
        from envs.collect import collect_all, default_workers
        from envs.registry import check_datasets, dataset_writer, expand

        if not check_datasets(self.env_cfg.name, self.cfg.root):  # a suite's own files, not collectable: checked
            return
        names, paths = expand(self.env_cfg.name), self.paths
        writer = dataset_writer(self.env_cfg.name)
        missing = [path for path in paths if not path.exists()]
        if writer is not None and writer.notice and missing:
            print(writer.notice.format(folder=missing[0].parent), flush=True)
        collect_all(
            list(zip(names, paths)),
            self.cfg.episodes,
            env_kwargs(self.env_cfg),
            action_noise=self.cfg.collect_noise,
            seed=0,
            workers=default_workers(),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        demos = load_demos(
            self.paths,
            list(self.env_cfg.cameras),
            self.cfg.episodes,
            self.cfg,
            int(self.env_cfg.image_size),
            conventions=dict(getattr(self.env_cfg, "kwargs", None) or {}),
        )
        order = np.random.default_rng(self.seed).permutation(len(demos))
        n_val = int(round(len(demos) * self.cfg.val_fraction)) if len(demos) > 1 else 0
        n_val = max(n_val, 1) if (self.cfg.val_fraction > 0 and len(demos) > 1) else n_val
        val = [demos[i] for i in order[:n_val]]
        train = [demos[i] for i in order[n_val:]]
        self.stats = normalization_stats(train)
        self.train_set = ChunkDataset(train, self.chunk)
        self.val_set = ChunkDataset(val or train, self.chunk)

    @property
    def proprio_dim(self) -> int:
        return int(self.train_set.demos[0].proprio.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.train_set.demos[0].actions.shape[1])

    @property
    def instructions(self) -> list[str]:
        return sorted({d.instruction for d in self.train_set.demos})

    def _loader(self, dataset: ChunkDataset, shuffle: bool) -> DataLoader:
        """Training (``shuffle``): ``gridslab.data.sampling``'s sampler (order from seed and epoch only,
        one shard per DDP rank, resumes mid-epoch); validation: in order. The generator only
        seeds the workers, so making an iterator never draws from the global RNG."""
        from gridslab.data.sampling import training_sampler

        sampler = training_sampler(dataset, self.cfg.batch_size, self.seed, self.trainer) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            drop_last=shuffle and len(dataset) > self.cfg.batch_size,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Random-shift augmentation of every camera, training batches only."""
        if self.trainer is not None and self.trainer.training and self.cfg.shift_pixels > 0:
            batch["images"] = {camera: random_shift(frames, self.cfg.shift_pixels) for camera, frames in batch["images"].items()}
        return batch
