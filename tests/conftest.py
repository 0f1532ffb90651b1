"""Shared pytest fixtures: small real environments and a tiny real demonstration file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_ENV = {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 32}


def run_python(args: list[str], cwd: Path, timeout: float = 600, env: dict | None = None):
    """Run ``python args...`` in ``cwd`` with the repo importable; returns CompletedProcess."""
    import subprocess

    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory) -> Path:
    """Three real scripted-expert Lift demos at 32 px, two cameras (collected once per session)."""
    from envs.collect import collect

    out = tmp_path_factory.mktemp("data") / "lift.hdf5"
    return collect("robosuite/Lift", 3, out, SMALL_ENV, action_noise=0.1, seed=0, progress=False)
