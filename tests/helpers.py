"""What several test files share: paths, small env settings, subprocess runs, tiny
training configs, tiny policies and batches, and measurements of the simulated gripper.
One home, imported as ``from tests.helpers import ...``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

from gridslab.config import load_config
from gridslab.policy.config import PolicyConfig
from gridslab.policy.language import tokenize
from gridslab.policy.vla import VLA

ROOT = Path(__file__).resolve().parents[1]
SMALL_ENV = {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 32}


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks/ is scripts, not a package)."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "benchmarks"))  # their sibling imports (quality.py -> plots.py, _runs)
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_python(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None):
    """Run ``python args...`` in ``cwd`` with the repo importable; returns CompletedProcess."""
    import subprocess

    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


TINY = [
    "policy.vision.image_size=32",
    "policy.vision.patch_size=8",
    "policy.vision.dim=32",
    "policy.vision.heads=2",
    "policy.language.dim=32",
    "policy.language.heads=2",
    "policy.backbone.dim=32",
    "policy.backbone.heads=2",
    "env.image_size=32",
    "data.batch_size=16",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
    "optim.warmup_steps=2",
]


# one epoch of two training batches and one validation batch: a checkpoint in seconds
QUICK_FIT = ("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")


# online evaluation after the one epoch: one episode of five steps in one worker
ONLINE_EVAL = ("trainer.max_epochs=1", "eval.every_n_epochs=1", "eval.callback_episodes=1", "eval.workers=1", "eval.max_steps=5")


def tiny_config(tmp_path, lift_demos, *extra: str):
    """A 2-epoch training config of a tiny policy on the ``lift_demos`` fixture, writing under ``tmp_path``."""
    return load_config(
        [*TINY, f"output_dir={tmp_path / 'run'}", f"data.paths=[{lift_demos}]", "data.episodes=3", "trainer.max_epochs=2", *extra]
    )


CAMERAS = ["agentview", "robot0_eye_in_hand"]
PROPRIO_DIM, ACTION_DIM = 9, 7
GRIDS = {"name": "grids", "k": 4}
IDENTITY = {"name": "identity"}
INSTRUCTIONS = ["pick up the red cube", "lift the cube and hold it up high"]


def make_policy(compressor: dict = GRIDS, seed: int = 0, **policy) -> VLA:
    """A seeded default-shaped VLA for two cameras (``PolicyConfig(**policy)``)."""
    torch.manual_seed(seed)
    return VLA(PolicyConfig(**policy), compressor, CAMERAS, PROPRIO_DIM, ACTION_DIM)


def make_batch(policy: VLA, batch: int = 2, seed: int = 0) -> dict:
    """A random policy batch of ``batch`` samples with action targets."""
    generator = torch.Generator().manual_seed(seed)
    size = policy.cfg.vision.image_size
    ids, mask = tokenize([INSTRUCTIONS[row % len(INSTRUCTIONS)] for row in range(batch)])
    return {
        "images": {
            camera: torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator) for camera in CAMERAS
        },
        "proprio": torch.randn(batch, PROPRIO_DIM, generator=generator),
        "instruction_ids": ids,
        "instruction_mask": mask,
        "actions": torch.randn(batch, policy.chunk, ACTION_DIM, generator=generator),
        "action_mask": torch.ones(batch, policy.chunk, dtype=torch.bool),
    }


def first_row(batch: dict) -> dict:
    """The first sample of a policy batch, as a batch of one."""
    return {key: {c: v[:1] for c, v in value.items()} if key == "images" else value[:1] for key, value in batch.items()}


def finger_pad_direction(env) -> np.ndarray:
    """Unit world-xy direction ``[2]`` from the right finger pad to the left one (measured, not derived)."""
    model, data = env.unwrapped.mj_model, env.unwrapped.mj_data
    left, right = (data.geom_xpos[model.geom(f"gripper0_finger{i}_pad_collision").id][:2] for i in (1, 2))
    return (left - right) / np.linalg.norm(left - right)


def libero_demo(images: dict, proprio, actions=None) -> dict:
    """One demo for ``envs.libero_format.write_libero_demo_file``: images {camera: uint8 [T, H, W, 3]},
    proprio [T, 9]; actions [T, 7] (zeros when None); joint and MuJoCo states zeros (the readers ignore them)."""
    import numpy as np

    steps = len(proprio)
    return {
        "images": images,
        "proprio": proprio,
        "actions": np.zeros((steps, 7)) if actions is None else actions,
        "joint_states": np.zeros((steps, 7)),
        "states": np.zeros((steps, 3)),
    }
