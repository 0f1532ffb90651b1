"""Shared pytest fixtures: small real environments and a tiny real demonstration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import QUICK_FIT, SMALL_ENV, tiny_config


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory) -> Path:
    """Three real scripted-expert Lift demos at 32 px, two cameras (collected once per session)."""
    from envs.collect import collect

    out = tmp_path_factory.mktemp("data") / "lift.hdf5"
    return collect("robosuite/Lift", 3, out, SMALL_ENV, action_noise=0.1, seed=0, progress=False)


@pytest.fixture(scope="session")
def quick_checkpoint(tmp_path_factory, lift_demos) -> str:
    """last.ckpt of a tiny policy fitted for two batches on ``lift_demos`` (trained once per session; read only)."""
    from gridslab.train.fit import fit

    return fit(tiny_config(tmp_path_factory.mktemp("quick_ckpt"), lift_demos, *QUICK_FIT))["last_checkpoint"]
