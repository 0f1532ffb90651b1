"""Scripted experts on the real simulator, and the demonstration collector's files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from envs.collect import collect
from envs.errors import EnvUserError
from envs.experts import run_episode
from envs.hdf5_format import demo_keys
from tests.conftest import ROOT, SMALL_ENV, run_python


@pytest.mark.parametrize("task, seeds", [("Lift", [0, 1, 2]), ("Stack", [0]), ("PickPlaceCan", [0])])
def test_expert_solves_task(task, seeds):
    for seed in seeds:
        assert run_episode(f"robosuite/{task}", seed, cameras=["agentview"], image_size=16), (task, seed)


def test_collected_file_round_trip(lift_demos):
    with h5py.File(lift_demos, "r") as f:
        data = f["data"]
        assert data.attrs["env_name"] == "robosuite/Lift"
        assert json.loads(data.attrs["env_kwargs"]) == SMALL_ENV
        assert data.attrs["instruction"] == "lift the red cube"
        versions = json.loads(data.attrs["versions"])
        assert versions["mujoco"] == "3.9.0" and versions["robosuite"] == "1.4.0"
        keys = demo_keys(data)
        assert keys == ["demo_0", "demo_1", "demo_2"]
        total = 0
        for key in keys:
            demo = data[key]
            steps = int(demo.attrs["num_samples"])
            total += steps
            assert demo.attrs["success"]
            for camera in SMALL_ENV["cameras"]:
                frames = demo[f"obs/{camera}_rgb"]
                assert frames.shape == (steps, 32, 32, 3) and frames.dtype == np.uint8
            assert demo["obs/proprio"].shape == (steps, 9) and demo["obs/proprio"].dtype == np.float32
            assert demo["obs/ee_pos"].shape == (steps, 3)
            assert demo["actions"].shape == (steps, 7) and demo["actions"].dtype == np.float32
            assert np.abs(demo["actions"][:]).max() <= 1.0
            assert demo["rewards"].shape == (steps,) and demo["dones"][-1] == 1
            assert demo["states"].ndim == 2 and demo["states"].shape[0] == steps
        assert data.attrs["total"] == total


def test_states_replay_the_recorded_images(lift_demos):
    """Setting a recorded MuJoCo state puts the gripper where the observation saw it.

    robosuite reads observations right after ``mj_step``, whose kinematics lag the
    integrated state by one 2 ms physics substep, hence the 1 mm tolerance."""
    import envs

    env = envs.make("robosuite/Lift", **SMALL_ENV)
    try:
        env.reset(seed=0)
        with h5py.File(lift_demos, "r") as f:
            demo = f["data/demo_0"]
            step = 10
            env.unwrapped.sim.set_state_from_flattened(demo["states"][step])
            env.unwrapped.sim.forward()
            state = env.unwrapped.privileged_state()
            np.testing.assert_allclose(state["eef_pos"], demo["obs/ee_pos"][step], atol=1e-3)
    finally:
        env.close()


def test_collect_extends_an_existing_file(tmp_path):
    out = tmp_path / "lift.hdf5"
    collect("robosuite/Lift", 1, out, SMALL_ENV, progress=False)
    with h5py.File(out, "r") as f:
        first_actions = f["data/demo_0/actions"][:]
    collect("robosuite/Lift", 2, out, SMALL_ENV, progress=False)
    with h5py.File(out, "r") as f:
        data = f["data"]
        assert demo_keys(data) == ["demo_0", "demo_1"]
        assert np.array_equal(data["demo_0/actions"][:], first_actions)
        assert [int(data[k].attrs["seed"]) for k in demo_keys(data)] == [0, 1]
    assert not (tmp_path / "lift.hdf5.parts").exists()


def test_killed_collection_resumes_without_duplicates(tmp_path):
    out = tmp_path / "lift.hdf5"
    args = [sys.executable, "-m", "envs.collect", "--episodes", "4", "--out", str(out), "--image-size", "32"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = tmp_path / "lift.hdf5.parts"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(shards.glob("demo_*.hdf5"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and len(list(shards.glob("demo_*.hdf5"))) >= 2
    result = run_python(["-m", "envs.collect", "--episodes", "4", "--out", str(out), "--image-size", "32"], ROOT)
    assert result.returncode == 0, result.stderr
    with h5py.File(out, "r") as f:
        data = f["data"]
        seeds = [int(data[k].attrs["seed"]) for k in demo_keys(data)]
    assert len(seeds) == 4 and len(set(seeds)) == 4
    assert json.loads(result.stdout.strip().splitlines()[-1])["demos"] == 4


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--env", "robosuite/Lfit"], "unknown env 'robosuite/Lfit'"),
        (["--episodes", "0"], "episodes=0 must be >= 1"),
        (["--cameras", "agentvew"], "unknown camera 'agentvew'"),
        (["--image-size", "3"], "image_size=3 is out of range"),
    ],
)
def test_collector_bad_input(tmp_path, args, expected):
    result = run_python(["-m", "envs.collect", "--out", str(tmp_path / "x.hdf5"), *args], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_collector_refuses_a_corrupt_file(tmp_path):
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(EnvUserError, match="not a readable demonstration file"):
        collect("robosuite/Lift", 1, bad, SMALL_ENV, progress=False)
    assert bad.read_bytes() == b"not an hdf5 file"
