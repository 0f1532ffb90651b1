"""The demonstration file layout (LIBERO / robomimic style) that ``envs.collect`` writes;
written (``write_demo``, ``write_file_attrs``) and read (``read_*``) here.

    /data                       attrs: env_name, env_kwargs (JSON), instruction,
                                       versions (JSON), collector (JSON), total (int)
    /data/demo_<i>              attrs: seed (int), num_samples (int), success (bool)
    /data/demo_<i>/obs/<camera>_rgb   uint8   [T, H, W, 3]  (right side up)
    /data/demo_<i>/obs/ee_pos         float32 [T, 3]   metres
    /data/demo_<i>/obs/ee_ori         float32 [T, 4]   quaternion x y z w
    /data/demo_<i>/obs/gripper_states float32 [T, 2]   finger joint positions, metres
    /data/demo_<i>/obs/proprio        float32 [T, 9]   the env's proprio vector
    /data/demo_<i>/actions            float32 [T, 7]   expert (clean) actions
    /data/demo_<i>/rewards            float32 [T]
    /data/demo_<i>/dones              uint8   [T]
    /data/demo_<i>/states             float64 [T, S]   flattened MuJoCo state for replay

Real LIBERO files use ``agentview_rgb`` / ``eye_in_hand_rgb`` and ``ee_states`` /
``gripper_states`` / ``joint_states``; ``CAMERA_ALIASES`` maps them.
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from envs.errors import EnvUserError

IMAGE_SUFFIX = "_rgb"
CAMERA_ALIASES = {"robot0_eye_in_hand": "eye_in_hand", "eye_in_hand": "robot0_eye_in_hand"}


def package_versions() -> dict[str, str]:
    """Versions of the simulation stack, recorded in every dataset and result file."""
    versions = {"python": platform.python_version()}
    for package in ("mujoco", "robosuite", "gymnasium", "numpy", "h5py", "gridslab", "torch", "libero"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_demo(group: h5py.Group, steps: dict[str, list[Any]], cameras: tuple[str, ...], seed: int) -> None:
    """Write one episode's per-step lists into ``group`` (a ``demo_<i>`` group).

    ``steps`` keys: ``obs`` (env observations), ``actions``, ``rewards``, ``dones``, ``states``.
    """
    observations = steps["obs"]
    obs_group = group.create_group("obs")
    for camera in cameras:
        frames = np.stack([o["images"][camera] for o in observations]).astype(np.uint8)
        obs_group.create_dataset(f"{camera}{IMAGE_SUFFIX}", data=frames, compression="lzf", chunks=(1, *frames.shape[1:]))
    proprio = np.stack([o["proprio"] for o in observations]).astype(np.float32)
    obs_group.create_dataset("proprio", data=proprio)
    obs_group.create_dataset("ee_pos", data=proprio[:, :3])
    obs_group.create_dataset("ee_ori", data=proprio[:, 3:7])
    obs_group.create_dataset("gripper_states", data=proprio[:, 7:9])
    group.create_dataset("actions", data=np.stack(steps["actions"]).astype(np.float32))
    group.create_dataset("rewards", data=np.asarray(steps["rewards"], dtype=np.float32))
    group.create_dataset("dones", data=np.asarray(steps["dones"], dtype=np.uint8))
    group.create_dataset("states", data=np.stack(steps["states"]).astype(np.float64))
    group.attrs["seed"] = int(seed)
    group.attrs["num_samples"] = len(observations)
    group.attrs["success"] = True


def write_file_attrs(data: h5py.Group, env_name: str, env_kwargs: dict, instruction: str, collector: dict) -> None:
    """Describe how the demonstrations in ``data`` were made."""
    data.attrs["env_name"] = env_name
    data.attrs["env_kwargs"] = json.dumps(env_kwargs, sort_keys=True)
    data.attrs["instruction"] = instruction
    data.attrs["versions"] = json.dumps(package_versions(), sort_keys=True)
    data.attrs["collector"] = json.dumps(collector, sort_keys=True)


def demo_keys(data: h5py.Group) -> list[str]:
    """``demo_<i>`` group names sorted by ``i``."""
    return sorted((k for k in data.keys() if k.startswith("demo_")), key=lambda k: int(k.split("_")[1]))


def read_instruction(data: h5py.Group, path: Path) -> str:
    """The instruction every demo of the file shares (the ``instruction`` attribute)."""
    return str(data.attrs["instruction"])


def read_images(obs: h5py.Group, camera: str, path: Path) -> np.ndarray:
    """Camera ``camera``'s frames, uint8 ``[T, H, W, 3]`` right side up (``CAMERA_ALIASES``
    accepted); a missing camera fails with one line naming the cameras in the file."""
    for name in (camera, CAMERA_ALIASES.get(camera, camera)):
        if f"{name}{IMAGE_SUFFIX}" in obs:
            return obs[f"{name}{IMAGE_SUFFIX}"][:]
    found = sorted(k[: -len(IMAGE_SUFFIX)] for k in obs.keys() if k.endswith(IMAGE_SUFFIX))
    raise EnvUserError(f"{path} has no images for camera {camera!r}; cameras in the file: {', '.join(found)}")


def read_proprio(obs: h5py.Group, path: Path) -> np.ndarray:
    """The env's proprio vector, float32 ``[T, 9]``."""
    if "proprio" not in obs:
        raise EnvUserError(f"{path} has no obs/proprio")
    return obs["proprio"][:].astype(np.float32)
