"""Real LIBERO demonstration files: their layout, reading them so they match
``envs.libero_env.LiberoEnv`` observations, and writing it. Pure file format: where the
files live (``<root>/libero/<suite>/<task name>_demo.hdf5``) is ``envs.libero_env``'s.

Layout (LIBERO's ``scripts/create_dataset.py``):
    /data                              attrs: problem_info (JSON: problem_name, domain_name,
                                       language_instruction), env_args (JSON), env_name,
                                       bddl_file_name, macros_image_convention, num_demos, total
    /data/demo_<i>/obs/agentview_rgb   uint8   [T, H, W, 3]  upside down (see below)
    /data/demo_<i>/obs/eye_in_hand_rgb uint8   [T, H, W, 3]  upside down
    /data/demo_<i>/obs/ee_states       float64 [T, 6]  eef position (3, metres) + axis-angle (3, rad)
    /data/demo_<i>/obs/ee_pos, ee_ori  float64 [T, 3]  the two halves of ee_states
    /data/demo_<i>/obs/gripper_states  float64 [T, 2]  finger joint positions, metres
    /data/demo_<i>/obs/joint_states    float64 [T, 7]  arm joint positions, rad
    /data/demo_<i>/actions             float64 [T, 7]  OSC_POSE actions in [-1, 1]
    /data/demo_<i>/states              float64 [T, S]  flattened MuJoCo states
    /data/demo_<i>/robot_states        float64 [T, 9]  gripper (2), eef pos (3), eef quat (4)
    /data/demo_<i>/rewards, dones      uint8   [T]
LIBERO stores robosuite's observations as rendered: with robosuite's default
``macros.IMAGE_CONVENTION = "opengl"`` (recorded in ``macros_image_convention``) rows run
bottom to top, so images are flipped here to the env's right-side-up images. The
orientation is axis-angle (robosuite ``quat2axisangle``); ``read_proprio`` turns it back
into the env's quaternion, so dataset and env proprio are the same 9-d vector.

Conventions (``ORIENTATIONS``, ``PROPRIO_FORMATS``), applied identically by
``envs.libero_env.LiberoEnv`` and by ``read_images`` / ``read_proprio`` through
``orient_frames`` / ``make_proprio``:
    orientation "camera" (default): the true camera view, right side up (raw rows flipped);
        "rotate180": raw frames rotated 180 degrees, as openvla-oft, openpi and lerobot feed
        LIBERO frames (= the camera view mirrored left to right).
    proprio "quat" (default): float32 [9] = eef position (3), quaternion x y z w (4), fingers (2);
        "axis_angle": float32 [8] = eef position (3), axis-angle (3, rad), fingers (2), as
        openvla-oft, openpi and lerobot's LIBERO datasets hold it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from envs.errors import EnvUserError

IMAGE_KEYS = {"agentview": "agentview_rgb", "robot0_eye_in_hand": "eye_in_hand_rgb"}
ORIENTATIONS = ("camera", "rotate180")
PROPRIO_FORMATS = {"quat": 9, "axis_angle": 8}  # format -> proprio length
OPENGL_CONVENTION = "opengl"  # rows bottom to top: what LIBERO's released files hold
# Offline configs that stand in for a LIBERO suite when its datasets are not here.


def task_instruction(task_name: str) -> str:
    """The benchmark's instruction for a LIBERO task name (what the env reports).

    LIBERO-10/90 names start with their scene (``KITCHEN_SCENE3_turn_on_the_stove``), dropped.
    """
    return re.sub(r"^[A-Z_]*SCENE\d+_", "", task_name).replace("_", " ")


def read_instruction(data: h5py.Group, path: Path) -> str:
    """Instruction of a LIBERO file: from its LIBERO file name ``<task>_demo.hdf5`` (as the env
    and LIBERO's benchmark do), else ``problem_info``'s ``language_instruction``."""
    if path.stem.endswith("_demo"):
        return task_instruction(path.stem[: -len("_demo")])
    if "problem_info" not in data.attrs:
        raise EnvUserError(f"{path} has no instruction: not named <task>_demo.hdf5 and no 'problem_info' attribute")
    return str(json.loads(data.attrs["problem_info"])["language_instruction"]).strip().strip('"')


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Quaternions ``[T, 4]`` (x y z w) -> axis-angle ``[T, 3]`` (rad), as robosuite's
    ``quat2axisangle`` (angle ``2 acos(w)`` in [0, 2 pi]; zero for the identity)."""
    quat = np.asarray(quat, dtype=np.float64)
    w = np.clip(quat[:, 3], -1.0, 1.0)
    sin_half = np.sqrt(1.0 - w * w)
    scale = np.divide(2.0 * np.arccos(w), sin_half, out=np.zeros_like(w), where=~np.isclose(sin_half, 0.0))
    return quat[:, :3] * scale[:, None]


def axis_angle_to_quat(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle ``[T, 3]`` (rad) -> unit quaternions ``[T, 4]`` (x y z w); the exact inverse
    of ``quat_to_axis_angle`` (identity for a zero vector)."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(axis_angle, axis=1)
    axis = np.divide(axis_angle, angle[:, None], out=np.zeros_like(axis_angle), where=angle[:, None] > 0)
    return np.concatenate([axis * np.sin(angle / 2)[:, None], np.cos(angle / 2)[:, None]], axis=1)


def orient_frames(frames: np.ndarray, orientation: str = "camera") -> np.ndarray:
    """Right-side-up frames ``[..., H, W, 3]`` in ``orientation`` (see the module docstring)."""
    if orientation not in ORIENTATIONS:
        raise EnvUserError(f"unknown LIBERO image orientation {orientation!r}; valid: {', '.join(ORIENTATIONS)}")
    return np.ascontiguousarray(frames if orientation == "camera" else frames[..., ::-1, :])


def make_proprio(position: np.ndarray, quat: np.ndarray, gripper: np.ndarray, proprio: str = "quat") -> np.ndarray:
    """float32 ``[T, 9]`` ("quat") or ``[T, 8]`` ("axis_angle") from eef positions ``[T, 3]``
    (metres), quaternions ``[T, 4]`` (x y z w) and finger positions ``[T, 2]`` (metres)."""
    if proprio not in PROPRIO_FORMATS:
        raise EnvUserError(f"unknown LIBERO proprio format {proprio!r}; valid: {', '.join(PROPRIO_FORMATS)}")
    orientation = quat if proprio == "quat" else quat_to_axis_angle(quat)
    return np.concatenate([position, orientation, gripper], axis=1).astype(np.float32)


def _is_opengl(obs: h5py.Group) -> bool:
    """Whether the file's images run bottom to top (LIBERO's default when unrecorded)."""
    convention = obs.file["data"].attrs.get("macros_image_convention", OPENGL_CONVENTION)
    if isinstance(convention, bytes):
        convention = convention.decode()
    return str(convention) == OPENGL_CONVENTION


def read_images(obs: h5py.Group, camera: str, path: Path | None = None, orientation: str = "camera") -> np.ndarray:
    """Camera ``camera``'s frames from a LIBERO ``demo_<i>/obs`` group: uint8 ``[T, H, W, 3]``
    in ``orientation`` (default right side up). ``camera``: the env's name (agentview,
    robot0_eye_in_hand) or LIBERO's."""
    key = IMAGE_KEYS.get(camera, f"{camera}_rgb")
    if key not in obs:
        found = sorted(k for k in obs if k.endswith("_rgb"))
        raise EnvUserError(
            f"{obs.file.filename}:{obs.name} has no {key!r} for camera {camera!r}; images there: {', '.join(found)}"
        )
    frames = obs[key][:]
    return orient_frames(frames[:, ::-1] if _is_opengl(obs) else frames, orientation).astype(np.uint8)


def read_proprio(obs: h5py.Group, path: Path | None = None, proprio: str = "quat") -> np.ndarray:
    """The env's proprio from a LIBERO ``demo_<i>/obs`` group: float32 ``[T, 9]`` = eef position
    (3), eef quaternion x y z w (4, from ``ee_states``' axis-angle), gripper positions (2); or
    ``[T, 8]`` with the axis-angle (3) for ``proprio="axis_angle"``."""
    for key in ("ee_states", "gripper_states"):
        if key not in obs:
            raise EnvUserError(f"{obs.file.filename}:{obs.name} lacks {key!r}; a LIBERO file has ee_states and gripper_states")
    ee_states = obs["ee_states"][:]
    return make_proprio(ee_states[:, :3], axis_angle_to_quat(ee_states[:, 3:6]), obs["gripper_states"][:], proprio)


def write_libero_demo_file(
    path: Path,
    demos: Iterable[dict[str, Any]],
    task_name: str,
    problem_name: str = "libero_tabletop_manipulation",
    attrs: dict[str, str] | None = None,
) -> Path:
    """Write ``demos`` in LIBERO's exact layout (module docstring): the scripted collector's
    LIBERO files (``envs.libero_env.write_scripted_demos``) and tests' fixtures.

    Each demo holds default-convention arrays ("camera", "quat"): ``images`` {camera: uint8
    [T, H, W, 3] right side up}, ``proprio`` float32 [T, 9] (the env's vector), ``actions``
    [T, 7], ``joint_states`` [T, 7] and ``states`` [T, S], optionally ``seed`` (kept as the
    demo's attribute). Images are stored upside down and orientation as axis-angle, as LIBERO's
    files are. ``task_name`` gives the language; name the file ``<task_name>_demo.hdf5``.
    ``attrs``: extra ``/data`` attributes (e.g. how the demos were made). Demos are read one
    at a time from ``demos`` (an iterator keeps one in memory).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    instruction = task_instruction(task_name)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        bddl_file = f"bddl_files/{task_name}.bddl"
        data.attrs["env_name"] = problem_name
        data.attrs["problem_info"] = json.dumps(
            {"problem_name": problem_name, "domain_name": "robosuite", "language_instruction": instruction}
        )
        data.attrs["env_args"] = json.dumps(
            {"type": 1, "env_name": problem_name, "problem_name": problem_name, "bddl_file": bddl_file, "env_kwargs": {}}
        )
        data.attrs["bddl_file_name"] = bddl_file
        data.attrs["macros_image_convention"] = OPENGL_CONVENTION
        for key, value in (attrs or {}).items():
            data.attrs[key] = value
        total, count = 0, 0
        for index, demo in enumerate(demos):
            group = data.create_group(f"demo_{index}")
            obs = group.create_group("obs")
            for camera, frames in demo["images"].items():
                obs.create_dataset(IMAGE_KEYS.get(camera, f"{camera}_rgb"), data=np.asarray(frames, np.uint8)[:, ::-1])
            proprio = np.asarray(demo["proprio"], dtype=np.float64)
            ee_states = np.concatenate([proprio[:, :3], quat_to_axis_angle(proprio[:, 3:7])], axis=1)
            obs.create_dataset("ee_states", data=ee_states)
            obs.create_dataset("ee_pos", data=ee_states[:, :3])
            obs.create_dataset("ee_ori", data=ee_states[:, 3:])
            obs.create_dataset("gripper_states", data=proprio[:, 7:9])
            obs.create_dataset("joint_states", data=np.asarray(demo["joint_states"], dtype=np.float64))
            steps = len(proprio)
            group.create_dataset("actions", data=np.asarray(demo["actions"], dtype=np.float64))
            group.create_dataset("states", data=np.asarray(demo["states"], dtype=np.float64))
            group.create_dataset("robot_states", data=np.concatenate([proprio[:, 7:9], proprio[:, :7]], axis=1))
            rewards = np.zeros(steps, dtype=np.uint8)
            rewards[-1] = 1
            group.create_dataset("rewards", data=rewards)
            group.create_dataset("dones", data=rewards.copy())
            group.attrs["num_samples"] = steps
            group.attrs["init_state"] = np.asarray(demo["states"], dtype=np.float64)[0]
            if "seed" in demo:
                group.attrs["seed"] = int(demo["seed"])
            total += steps
            count = index + 1
        data.attrs["num_demos"] = count
        data.attrs["total"] = total
    return path
