"""Shared pytest fixtures: small real environments and a tiny real demonstration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SMALL_ENV


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory) -> Path:
    """Three real scripted-expert Lift demos at 32 px, two cameras (collected once per session)."""
    from envs.collect import collect

    out = tmp_path_factory.mktemp("data") / "lift.hdf5"
    return collect("robosuite/Lift", 3, out, SMALL_ENV, action_noise=0.1, seed=0, progress=False)
