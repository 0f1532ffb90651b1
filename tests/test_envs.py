"""The Gymnasium robosuite envs on the real simulator: spec, seeding, errors, rendering."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import rendering
from envs.errors import EnvUserError
from envs.robosuite_env import TASKS
from envs.sim_base import PROPRIO_DIM
from tests.helpers import SMALL_ENV, finger_pad_direction


@pytest.mark.parametrize("task", sorted(TASKS))
def test_env_passes_gymnasium_checker(task):
    env = envs.make(f"robosuite/{task}", **SMALL_ENV)
    try:
        check_env(env, skip_render_check=True)
        obs, info = env.reset(seed=0)
        assert set(obs["images"]) == set(SMALL_ENV["cameras"])
        for image in obs["images"].values():
            assert image.shape == (32, 32, 3) and image.dtype == np.uint8
        assert obs["proprio"].shape == (PROPRIO_DIM,) and obs["proprio"].dtype == np.float32
        objects = info.pop("object_xy")
        assert info == {"success": False, "task": task, "instruction": TASKS[task].instruction}
        assert set(objects) == set(SMALL_ENV["cameras"]) and all(np.shape(xy)[1] == 2 for xy in objects.values())
        _, _, _, _, info = env.step(env.action_space.sample())
        assert set(info) == {"success", "task", "instruction", "object_xy"}
    finally:
        env.close()


def test_seeded_reset_reproduces_the_scene():
    env = envs.make("robosuite/Lift", **SMALL_ENV)
    try:
        first, _ = env.reset(seed=7)
        other, _ = env.reset(seed=8)
        again, _ = env.reset(seed=7)
        frame = first["images"]["agentview"]
        assert np.array_equal(frame, again["images"]["agentview"])
        assert not np.array_equal(frame, other["images"]["agentview"])
        assert np.array_equal(first["proprio"], again["proprio"])
    finally:
        env.close()


def test_images_are_right_side_up():
    """The table (bright, near the robot) fills the bottom of agentview; the top is the far wall."""
    env = envs.make("robosuite/Lift", cameras=["agentview"], image_size=64)
    try:
        obs, _ = env.reset(seed=0)
        image = obs["images"]["agentview"].astype(np.float32)
        assert image[40:].mean() > image[:8].mean()
    finally:
        env.close()


def test_fast_render_quality_differs_from_full():
    frames = {}
    for quality in ("fast", "full"):
        env = envs.make("robosuite/Lift", cameras=["agentview"], image_size=64, render_quality=quality)
        frames[quality] = env.reset(seed=0)[0]["images"]["agentview"]
        env.close()
    assert not np.array_equal(frames["fast"], frames["full"])


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("robosuite/Lfit", {}, "unknown env 'robosuite/Lfit' (did you mean 'robosuite/Lift'?)"),
        ("robosuite/Lift", {"cameras": ["agentvew"]}, "unknown camera 'agentvew'"),
        ("robosuite/Lift", {"image_size": 4}, "image_size=4 is out of range"),
        ("robosuite/Lift", {"image_size": 100000}, "image_size=100000 is out of range"),
        ("robosuite/Lift", {"render_quality": "ultra"}, "unknown render_quality 'ultra'"),
    ],
)
def test_bad_input_is_one_clear_line(name, kwargs, expected):
    with pytest.raises(EnvUserError) as caught:
        envs.make(name, **kwargs)
    message = str(caught.value)
    assert expected in message and "\n" not in message and "valid" in message


def test_register_a_user_wrapper():
    def factory(**kwargs):
        return envs.make("robosuite/Lift", **kwargs)

    envs.register("mylab/Lift", factory)
    assert "mylab/Lift" in envs.names()
    with pytest.raises(ValueError):
        envs.register("mylab/Lift", factory)
    env = envs.make("mylab/Lift", **SMALL_ENV)
    env.close()


def test_gl_backend_choice_and_missing_library_message(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    assert rendering._backend_works("egl") or rendering._backend_works("osmesa")
    assert not rendering._backend_works("no-such-backend")
    monkeypatch.setattr(rendering, "_backend_works", lambda backend: False)
    with pytest.raises(EnvUserError) as caught:
        rendering.ensure_gl_backend()
    assert "libegl1" in str(caught.value) and "libosmesa6" in str(caught.value)


def test_user_set_backend_is_kept(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert rendering.ensure_gl_backend() == "osmesa"


def test_object_image_positions_land_on_the_objects():
    """info["object_xy"] projects the task objects into each camera image: on Stack the red
    cube's point is red and the green cube's green, in both cameras, after reset and a step."""
    import envs

    env = envs.make("robosuite/Stack", cameras=["agentview", "robot0_eye_in_hand"], image_size=84)
    obs, info = env.reset(seed=1)
    for observation, step_info in ((obs, info), env.step(np.zeros(7, np.float32))[::4]):
        for camera, xy in step_info["object_xy"].items():
            xy = np.asarray(xy)
            assert xy.shape == (2, 2) and ((xy > 0) & (xy < 1)).all()
            red, green = (observation["images"][camera][int(y * 84), int(x * 84)].astype(int) for x, y in xy)
            assert red[0] > max(red[1], red[2]) + 40 and green[1] > max(green[0], green[2]) + 15, (camera, red, green)
    env.close()


@pytest.mark.parametrize("name", ["robosuite/Lift", "tabletop_object/8"])
def test_finger_axis_is_the_direction_between_the_finger_pads(name):
    """At several gripper yaws (OSC rotation about z), open and closed."""
    env = envs.make(name, cameras=["agentview"], image_size=16)
    try:
        env.reset(seed=0)
        for yaw_command, gripper in ((0.0, -1.0), (0.4, -1.0), (0.4, 1.0), (-0.6, -1.0)):
            for _ in range(8):
                env.step(np.array([0, 0, 0, 0, 0, yaw_command, gripper], np.float32))
            axis = env.unwrapped.privileged_state()["eef_finger_axis"]
            assert abs(float(axis @ finger_pad_direction(env))) > 0.999, (yaw_command, gripper, axis)
    finally:
        env.close()


def test_body_half_extents_are_the_footprint_in_the_body_frame():
    """The purple block is a 36 x 60 mm box whatever its yaw; the bread mesh's geom is turned 90 degrees in its body."""
    for name, expected in (("tabletop_object/8", (0.018, 0.03)), ("tabletop_object/3", (0.024, 0.02))):
        env = envs.make(name, cameras=["agentview"], image_size=16)
        try:
            for seed in (0, 1):
                env.reset(seed=seed, options={"init_state": "sampled"})
                state = env.unwrapped.privileged_state()
                np.testing.assert_allclose(state["pick_half_extents"], expected, atol=1e-4)
        finally:
            env.close()


def test_scene_obstacles_are_the_other_objects_with_their_tops():
    """tabletop_spatial/0: plate, green box, blue cylinder and the decoy block, not the target;
    Lift has none."""
    from envs.tabletop import KINDS, TABLE_TOP_Z_M

    env = envs.make("tabletop_spatial/0", cameras=["agentview"], image_size=16)
    try:
        env.reset(seed=0)
        obstacles = env.unwrapped.privileged_state()["obstacles"]
        assert obstacles.shape == (4, 4)
        plate = obstacles[np.argmax(obstacles[:, 2])]  # the widest footprint
        assert plate[3] == pytest.approx(TABLE_TOP_Z_M + 2 * KINDS["plate"].size[1], abs=3e-3)
    finally:
        env.close()
    env = envs.make("robosuite/Lift", cameras=["agentview"], image_size=16)
    try:
        env.reset(seed=0)
        assert env.unwrapped.privileged_state()["obstacles"].shape == (0, 4)
    finally:
        env.close()
