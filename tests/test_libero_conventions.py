"""LIBERO frame orientation and proprio conventions, identical in the env and the dataset reader."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import envs.libero_env as libero_env
from envs.errors import EnvUserError
from envs.libero_format import quat_to_axis_angle, read_images, read_proprio, write_libero_demo_file
from tests.helpers import libero_demo

SEED = 7


@pytest.fixture(scope="module", autouse=True)
def libero_config(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("LIBERO_CONFIG_PATH", str(tmp_path_factory.mktemp("libero_config")))
    yield
    patch.undo()


def first_observation(**conventions: str) -> tuple[dict, libero_env.LiberoEnv]:
    """The observation after reset(seed=SEED) of libero_spatial/0 (one 32 px camera), and the env."""
    env = libero_env.LiberoEnv("libero_spatial", 0, cameras=("agentview",), image_size=32, max_steps=3, **conventions)
    obs, _ = env.reset(seed=SEED)
    return obs, env


def test_env_and_reader_apply_the_same_conventions(tmp_path):
    camera_obs, camera_env = first_observation()
    camera_env.close()
    theirs_obs, theirs_env = first_observation(orientation="rotate180", proprio="axis_angle")
    try:
        assert theirs_obs in theirs_env.observation_space and theirs_obs["proprio"].shape == (8,)
    finally:
        theirs_env.close()
    view = camera_obs["images"]["agentview"]
    np.testing.assert_array_equal(theirs_obs["images"]["agentview"], view[:, ::-1])  # 180 deg = camera view mirrored
    np.testing.assert_allclose(theirs_obs["proprio"][3:6], quat_to_axis_angle(camera_obs["proprio"][None, 3:7])[0], atol=1e-6)
    np.testing.assert_array_equal(theirs_obs["proprio"][[0, 1, 2, 6, 7]], camera_obs["proprio"][[0, 1, 2, 7, 8]])

    demo = libero_demo({"agentview": view[None], "robot0_eye_in_hand": view[None]}, camera_obs["proprio"][None])
    path = write_libero_demo_file(tmp_path / f"{camera_env.task_name}_demo.hdf5", [demo], camera_env.task_name)
    with h5py.File(path, "r") as f:
        obs = f["data/demo_0/obs"]
        np.testing.assert_array_equal(
            read_images(obs, "agentview", orientation="rotate180")[0], theirs_obs["images"]["agentview"]
        )
        np.testing.assert_allclose(read_proprio(obs, proprio="axis_angle")[0], theirs_obs["proprio"], atol=1e-5)
        np.testing.assert_allclose(read_proprio(obs)[0], camera_obs["proprio"], atol=1e-5)


def test_unknown_conventions_fail_in_one_line():
    with pytest.raises(EnvUserError, match=r"orientation 'flip'; valid: camera, rotate180"):
        libero_env.LiberoEnv("libero_spatial", 0, orientation="flip")
    with pytest.raises(EnvUserError, match=r"proprio format 'euler'; valid: axis_angle, quat"):
        libero_env.LiberoEnv("libero_spatial", 0, proprio="euler")
