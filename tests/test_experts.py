"""Scripted experts on the real simulator, and the demonstration collector's files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import h5py
import mujoco
import numpy as np
import pytest

from envs.collect import collect, collect_all
from envs.errors import EnvUserError
from envs.experts import CLOSE, rollout_expert, run_episode
from envs.hdf5_format import demo_keys
from tests.helpers import ROOT, SMALL_ENV, run_python


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
        assert versions["mujoco"] == mujoco.__version__ and versions["robosuite"] == "1.4.0"
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


def test_a_suite_collected_in_parallel_holds_the_demos_one_process_collects(tmp_path, capsys):
    names = ["tabletop_spatial/0", "tabletop_spatial/1"]
    jobs = [(name, tmp_path / "parallel" / f"{index}.hdf5") for index, name in enumerate(names)]
    parallel = collect_all(jobs, 1, SMALL_ENV, workers=2)
    said = capsys.readouterr().out
    assert "collect 2 tasks, 2 at a time" in said and said.count("collected tabletop_spatial/") == 2
    alone = [
        collect(name, 1, tmp_path / "alone" / f"{index}.hdf5", SMALL_ENV, progress=False) for index, name in enumerate(names)
    ]
    for name, ours, theirs in zip(names, parallel, alone):
        with h5py.File(ours, "r") as f, h5py.File(theirs, "r") as g:
            assert f["data"].attrs["env_name"] == g["data"].attrs["env_name"] == name
            for key in ("actions", "states", "obs/agentview_rgb", "obs/robot0_eye_in_hand_rgb", "obs/proprio"):
                np.testing.assert_array_equal(f[f"data/demo_0/{key}"][:], g[f"data/demo_0/{key}"][:])
    assert collect_all(jobs, 1, SMALL_ENV, workers=2) == parallel  # both there: nothing collected, nothing said
    assert capsys.readouterr().out == ""


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
        (["--workers", "0"], "--workers 0 must be >= 1"),
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


@pytest.mark.parametrize(
    "conf, argv, task",
    [
        ("robosuite_stack", ["--env", "robosuite/Stack"], None),
        ("tabletop_spatial", ["--env", "tabletop_spatial", "--image-size", "128"], None),
        ("tabletop_spatial", ["--env", "tabletop_spatial/3", "--image-size", "128"], 3),
    ],
)
def test_collect_cli_default_files_are_the_ones_training_reads(conf, argv, task):
    from envs.collect import build_parser, targets
    from gridslab.config import load_config
    from gridslab.data.datamodule import default_dataset_paths

    cfg = load_config([f"conf={conf}"])
    args = build_parser().parse_args(argv)
    expected = default_dataset_paths(cfg.data.root, cfg.env)
    assert [path for _, path in targets(args.env, args.out, args.image_size)] == (expected if task is None else [expected[task]])


def test_collect_cli_default_settings_are_trainings():
    from envs.collect import build_parser
    from gridslab.config import load_config

    cfg, args = load_config([]), build_parser().parse_args([])
    assert (args.env, args.cameras.split(","), args.image_size, args.render_quality) == (
        cfg.env.name,
        list(cfg.env.cameras),
        cfg.env.image_size,
        cfg.env.render_quality,
    )
    assert (args.episodes, args.noise, args.seed) == (cfg.data.episodes, cfg.data.collect_noise, cfg.seed)


def test_collect_cli_without_out_writes_where_the_datamodule_looks(tmp_path, monkeypatch):
    from envs.collect import main
    from gridslab.config import load_config
    from gridslab.data.datamodule import default_dataset_paths

    monkeypatch.chdir(tmp_path)
    assert main(["--env", "robosuite/Lift", "--episodes", "1", "--image-size", "32"]) == 0
    cfg = load_config(["env.image_size=32"])
    [path] = default_dataset_paths(cfg.data.root, cfg.env)
    with h5py.File(path, "r") as f:
        assert f["data"].attrs["env_name"] == "robosuite/Lift" and demo_keys(f["data"]) == ["demo_0"]
    with pytest.raises(EnvUserError, match="is a suite of 10 tasks"):
        main(["--env", "tabletop_spatial", "--out", "x.hdf5", "--debug"])


def _grasp_across_long_axis(env, seed: int) -> tuple[bool, float]:
    """One sampled-scene expert episode: (success, |cos| between the finger pads' direction and
    the pick object's long axis as the fingers start to close)."""
    from tests.helpers import finger_pad_direction

    unwrapped = env.unwrapped
    at_grasp: list[float] = []

    def on_step(transition):
        if transition.action[6] == CLOSE and not at_grasp:
            state = unwrapped.privileged_state()
            rotation = unwrapped.sim.data.body_xmat[unwrapped.sim.model.body_name2id(unwrapped.spec_task.pick_body)]
            long_axis = rotation.reshape(3, 3)[:2, int(np.argmax(state["pick_half_extents"]))]  # the object stands upright
            at_grasp.append(abs(float(finger_pad_direction(env) @ long_axis / np.linalg.norm(long_axis))))

    success, _ = rollout_expert(env, seed, on_step=on_step, reset_options={"init_state": "sampled"})
    return success, at_grasp[0]


def test_expert_grasps_an_elongated_block_across_its_short_side():
    """tabletop_object/8 moves the 36 x 60 mm purple block: the fingers open perpendicular to
    its long axis as they close, and the block ends in the basket."""
    import envs

    env = envs.make("tabletop_object/8", cameras=["agentview"], image_size=16)
    try:
        for seed in range(4):
            success, cosine = _grasp_across_long_axis(env, seed)
            assert success and cosine < 0.05, (seed, success, cosine)
    finally:
        env.close()


def _block_state(yaw: float, half: tuple[float, float], obstacles: list[list[float]], finger_axis=(1.0, 0.0)) -> dict:
    """A privileged state with a block at the origin on a table at z = 0 (grasp height 2 cm)."""
    return {
        "pick_pos": np.array([0.0, 0.0, 0.02]),
        "pick_yaw": yaw,
        "pick_half_extents": np.array(half),
        "obstacles": np.array(obstacles, dtype=float).reshape(-1, 4),
        "eef_finger_axis": np.array(finger_axis),
        "place_pos": None,
    }


@pytest.mark.parametrize(
    "yaw, half, obstacles, expected",
    [
        (0.0, (0.02, 0.02), [], (1.0, 0.0)),  # nothing around: least rotation
        (0.0, (0.02, 0.02), [[0.09, 0.0, 0.03, 0.08]], (0.0, 1.0)),  # tall object along x: the hand lies along y
        (0.0, (0.02, 0.02), [[0.09, 0.0, 0.03, 0.01]], (1.0, 0.0)),  # a flat one (a plate) is passed over
        (0.0, (0.02, 0.03), [[0.09, 0.0, 0.03, 0.08]], (1.0, 0.0)),  # elongated along y: across the short side
        (np.pi / 2, (0.02, 0.03), [], (0.0, 1.0)),  # the same block turned a quarter: its short side is world y
    ],
)
def test_expert_grasp_axis_choice(yaw, half, obstacles, expected):
    from envs.experts import ExpertSpec, PickPlaceExpert

    axis = PickPlaceExpert(ExpertSpec())._choose_grasp_axis(_block_state(yaw, half, obstacles))
    assert abs(float(axis @ np.array(expected))) > 0.999, axis


@pytest.mark.parametrize(
    "block_yaw, yaw_range, expected_sign",
    [
        (-1.4, (-3.0, 3.0), -1.0),
        (-1.4, (-0.5, 3.0), 1.0),
        (-1.4, (-3.0, 0.5), -1.0),
        (np.pi - 1.4, (-3.0, 3.0), -1.0),  # its short side at +100 degrees is also the line at -80
    ],
)
def test_expert_turns_the_wrist_the_way_it_has_room_for(block_yaw, yaw_range, expected_sign):
    """Fingers along world x, a block whose short side lies on the line 80 degrees clockwise:
    turn -80 degrees, or +100 when the wrist cannot turn 80 degrees that way (``eef_yaw_range``)."""
    from envs.experts import ExpertSpec, PickPlaceExpert

    expert = PickPlaceExpert(ExpertSpec())
    state = {**_block_state(block_yaw, (0.02, 0.03), []), "eef_yaw_range": np.array(yaw_range)}
    assert np.sign(expert._yaw_command(state)) == expected_sign
    assert np.sign(expert._yaw_command(state)) == expected_sign  # the direction, once chosen, stays


def test_expert_rim_side_ignores_rounding_between_mirror_sides():
    """A bowl between four tall objects: the hand clears the ones along x by the same gap on
    either side (the +x one stands 1 nm further out, a rounding difference): the rim is grasped
    on the side facing the robot (-x), not on the far side that reaches past the bowl."""
    from envs.experts import ExpertSpec, PickPlaceExpert

    obstacles = [[0.17 + 1e-9, 0.0, 0.03, 0.2], [-0.17, 0.0, 0.03, 0.2], [0.0, 0.17, 0.05, 0.2], [0.0, -0.17, 0.05, 0.2]]
    state = {**_block_state(0.0, (0.0535, 0.0535), obstacles), "pick_top_z": 0.05}
    expert = PickPlaceExpert(ExpertSpec(place_offset=(0.0, 0.0, 0.0), grasp_depth=0.012, rim_inset=0.008))
    assert np.allclose(expert._choose_rim_direction(state), (-1.0, 0.0)), expert._choose_rim_direction(state)
