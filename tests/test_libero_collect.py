"""Scripted LIBERO demonstrations where LIBERO's own are absent (real LIBERO, small images): the
datamodule collects them (from sampled scenes: tests/test_libero_starts.py) into LIBERO's own layout, saying once what they are;
they read back through the LIBERO reader in the configured conventions; LIBERO's own files placed
there are used as they are; expert failures are retried and reported, never written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import envs.libero_env as libero_env
from envs.collect import collect
from envs.errors import EnvUserError
from envs.libero_format import orient_frames, quat_to_axis_angle, write_libero_demo_file
from gridslab.config.schema import DataConfig, EnvConfig
from gridslab.data.datamodule import DemoDataModule
from tests.helpers import libero_demo

TASK = "libero/libero_spatial/6"  # the bowl next to the cookie box: the expert's shortest spatial episode
CAMERAS = ["agentview"]


@pytest.fixture(autouse=True)
def libero_config(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path_factory.mktemp("libero_config")))


def datamodule(root, kwargs=None) -> DemoDataModule:
    data = DataConfig(root=str(root), episodes=1, collect_noise=0.0, val_fraction=0.0, batch_size=4, shift_pixels=0)
    env = EnvConfig(name=TASK, cameras=CAMERAS, image_size=32, kwargs=kwargs or {})
    return DemoDataModule(data, env, chunk=2)


def test_missing_libero_files_are_collected_as_scripted_demos_in_libero_layout(tmp_path, capsys):
    module = datamodule(tmp_path, {"orientation": "rotate180", "proprio": "axis_angle"})
    (path,) = module.paths
    assert path == tmp_path / "libero" / "libero_spatial" / f"{libero_env.task_names('libero_spatial')[6]}_demo.hdf5"
    module.prepare_data()
    said = capsys.readouterr().out
    assert said.count("SCRIPTED demonstrations") == 1 and "not LIBERO's" in said and "used instead" in said
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert data.attrs["num_demos"] == 1 and "gridslab_scripted" in data.attrs and "problem_info" in data.attrs
        demo = data["demo_0"]
        assert set(demo["obs"]) >= {"agentview_rgb", "ee_states", "gripper_states", "joint_states"}
        raw_first_frame = demo["obs/agentview_rgb"][0]
        ee_states = demo["obs/ee_states"][:]

    module.setup("fit")
    (loaded,) = module.train_set.demos
    # Read in the configured conventions: raw rows flipped (camera view), then rotated 180 deg; axis-angle proprio.
    np.testing.assert_array_equal(loaded.images["agentview"][0], orient_frames(raw_first_frame[::-1], "rotate180"))
    assert loaded.proprio.shape[1] == 8
    np.testing.assert_allclose(loaded.proprio[:, 3:6], ee_states[:, 3:6], atol=1e-5)
    # The same file read with the defaults is the env's own 9-number vector.
    default = datamodule(tmp_path)
    default.setup("fit")
    np.testing.assert_allclose(quat_to_axis_angle(default.train_set.demos[0].proprio[:, 3:7]), ee_states[:, 3:6], atol=1e-5)

    datamodule(tmp_path).prepare_data()  # the file is there now: nothing collected, nothing said
    assert "SCRIPTED" not in capsys.readouterr().out


def test_libero_own_files_placed_there_are_used_as_they_are(tmp_path, capsys):
    module = datamodule(tmp_path)
    (path,) = module.paths
    rng = np.random.default_rng(0)
    demo = libero_demo(
        {"agentview": rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)},
        np.concatenate([rng.normal(size=(4, 3)), np.tile([0, 0, 0, 1.0], (4, 1)), rng.normal(size=(4, 2))], 1),
        rng.uniform(-1, 1, (4, 7)),
    )
    write_libero_demo_file(path, [demo], path.name[: -len("_demo.hdf5")])
    before = path.read_bytes()
    module.prepare_data()
    assert capsys.readouterr().out == "" and path.read_bytes() == before
    module.setup("fit")
    np.testing.assert_array_equal(module.train_set.demos[0].images["agentview"], demo["images"]["agentview"])


def test_expert_failures_are_retried_with_new_seeds_and_never_written(tmp_path):
    path = tmp_path / "libero" / "libero_spatial" / "task_demo.hdf5"
    kwargs = {"cameras": CAMERAS, "image_size": 32, "max_steps": 2}  # too short for the expert: every episode fails
    with pytest.raises(EnvUserError, match=r"failed 3 of 3 episodes \(seeds 0, 1, 2\); not enough demos"):
        collect(TASK, 1, path, kwargs, action_noise=0.0, progress=False)
    assert not path.exists()


def test_one_covered_task_collects_where_its_suite_is_refused(tmp_path):
    """``python -m envs.collect --env libero/libero_goal/1`` needs only that task's expert; the
    whole suite (``train.py conf=libero_goal``) still names the files no expert can write."""
    from envs.registry import check_datasets

    with pytest.raises(EnvUserError, match=r"no scripted expert solves \d libero_goal task"):
        check_datasets("libero_goal", str(tmp_path))
    assert check_datasets("libero/libero_goal/1", str(tmp_path))
    with pytest.raises(EnvUserError, match="solves 1 libero_goal task.*push_the_plate_to_the_front_of_the_stove_demo"):
        check_datasets("libero/libero_goal/5", str(tmp_path))
    with pytest.raises(EnvUserError, match="no LIBERO datasets for libero_10"):
        check_datasets("libero/libero_10/0", str(tmp_path / "data"))
