"""OOD perturbations on real LIBERO scenes through the model hooks every sim env shares
(``envs.sim_base``): each changes the frame, the episode still runs, the next reset restores
the scene exactly; distractor slots keep LIBERO's stored initial states; the scripted expert
still solves a task under lighting + distractors (real LIBERO, 128 px: its distractors are a few pixels wide at 64, few steps)."""

from __future__ import annotations

import numpy as np
import pytest

import envs
import envs.libero_env as libero_env
import envs.ood as ood
from envs.experts import rollout_expert

SEED = 100005  # stored initial state 5


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("LIBERO_CONFIG_PATH", str(tmp_path_factory.mktemp("libero_config")))
    env = libero_env.LiberoEnv(
        "libero_spatial", 6, cameras=("agentview",), image_size=128, max_steps=3, distractor_slots=ood.MAX_DISTRACTORS
    )
    yield env
    env.close()
    patch.undo()


@pytest.mark.parametrize("name", ["lighting", "distractors", "camera", "object_color", "table", "robot_init", "layout"])
def test_perturbation_changes_a_libero_frame_runs_and_is_undone_at_reset(scene, name):
    clean, _ = scene.reset(seed=SEED)
    clean_frame = clean["images"]["agentview"].copy()
    env = ood.wrap(scene, name, severity=0.5)
    obs, info = env.reset(seed=SEED)
    changed = np.abs(obs["images"]["agentview"].astype(int) - clean_frame).max(axis=2) > 8
    assert changed.sum() >= 40, f"{name} changed {changed.sum()} pixels"
    assert info["ood"][name]["severity"] == 0.5
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        steps += 1
        assert name in info["ood"] and obs["images"]["agentview"].shape == (128, 128, 3)
        if terminated or truncated:
            break
    assert steps == 3
    again, _ = scene.reset(seed=SEED)  # model fields restored, distractors parked
    np.testing.assert_array_equal(again["images"]["agentview"], clean_frame)


def test_frames_are_right_side_up_where_the_camera_projects_the_objects(scene):
    """The orientation check: recolouring the task's objects changes the frame at the image
    positions the camera matrix projects them to (x right, y down), not at their mirror images."""
    clean, info = scene.reset(seed=SEED)
    recoloured, _ = ood.wrap(scene, "object_color", severity=1.0).reset(seed=SEED)
    change = np.abs(recoloured["images"]["agentview"].astype(int) - clean["images"]["agentview"]).max(axis=2)
    size = scene.image_size
    for x, y in info["object_xy"]["agentview"]:
        column, row = int(x * size), int(y * size)
        assert change[row - 1 : row + 2, column - 1 : column + 2].mean() > 20  # the object's own pixels
        flipped = size - 1 - row
        if abs(flipped - row) > 10:  # its mirror image across the horizontal midline is table, unchanged
            assert change[flipped - 1 : flipped + 2, column - 1 : column + 2].mean() < 5


def test_distractors_stand_on_the_table_near_the_task(scene):
    env = ood.wrap(scene, "distractors", severity=1.0)
    _, info = env.reset(seed=SEED)
    placed = info["ood"]["distractors"]["objects"]
    assert len(placed) >= 1
    region = scene.placement_region()
    bowl = scene.object_box("akita_black_bowl_1")[0]
    for index, placement in enumerate(placed):
        position = scene.mj_data.xpos[scene.mj_model.body(f"distractor{index}").id]
        assert abs(position[2] - placement["pos"][2]) < 0.01  # resting, not falling through
        assert position[2] > region.surface_z and np.linalg.norm(position[:2] - bowl[:2]) <= ood.Distractors.NEAR_TASK_M


def test_distractor_slots_keep_the_stored_initial_states(scene):
    stored = scene.initial_states[5]
    slots_q, slots_v = 7 * ood.MAX_DISTRACTORS, 6 * ood.MAX_DISTRACTORS
    nq, nv = scene.mj_model.nq - slots_q, scene.mj_model.nv - slots_v
    assert len(stored) == 1 + nq + nv  # LIBERO's own model, without the slots
    scene.reset(seed=SEED)
    scene._load_state(scene._full_state(stored))
    np.testing.assert_array_equal(scene.mj_data.qpos[:nq], stored[1 : 1 + nq])
    np.testing.assert_array_equal(scene.mj_data.qvel[:nv], stored[1 + nq :])
    np.testing.assert_array_equal(scene.mj_data.qpos[nq:], scene.mj_model.qpos0[nq:])  # parked
    assert not scene.mj_data.qvel[nv:].any()


def test_closing_another_env_leaves_this_ones_renders_intact(scene):
    """robosuite renders into whichever GL context is current: without ``SimEnv`` making its own
    current, closing another env (its context released) turned this one's frames black."""
    before = scene.reset(seed=SEED)[0]["images"]["agentview"].copy()
    other = envs.make("robosuite/Lift", cameras=["agentview"], image_size=16)
    other.reset(seed=0)
    other.close()
    np.testing.assert_array_equal(scene.reset(seed=SEED)[0]["images"]["agentview"], before)


def test_robot_init_starts_the_arm_off_the_stored_state(scene):
    scene.reset(seed=SEED)
    start = scene.arm_qpos()  # after LIBERO's stored state and settling
    env = ood.wrap(scene, "robot_init", severity=0.5)
    _, info = env.reset(seed=SEED)
    assert np.linalg.norm(scene.arm_qpos() - start) == pytest.approx(0.5 * ood.RobotInit.MAX_OFFSET_RAD, abs=1e-9)
    assert env.reset(seed=SEED)[1]["ood"] == info["ood"]  # seeded
    assert not scene.penetrations(scene.robot_geoms(), ood.RobotInit.MAX_PENETRATION_M)


def test_layout_moves_the_bowl_and_plate_within_their_bddl_regions(scene):
    scene.reset(seed=SEED)
    ranges = scene.placement_ranges()
    assert set(ranges) == {"akita_black_bowl_1", "plate_1"}  # the objects of interest LIBERO places on the table
    start = {name: scene.object_position(name) for name in ranges}
    touching = {name: scene.penetrations(scene.object_geoms(name), ood.Layout.MAX_PENETRATION_M) for name in ranges}
    env = ood.wrap(scene, "layout", severity=0.5)
    _, info = env.reset(seed=SEED)
    report = info["ood"]["layout"]
    assert set(report["objects"]) == set(ranges) and env.reset(seed=SEED)[1]["ood"] == info["ood"]  # seeded
    for name, moved in report["objects"].items():
        now, (low, high) = scene.object_position(name), np.array(moved["region"])
        assert moved["shift_m"] > 0.002 and np.linalg.norm(now[:2] - start[name][:2]) > 0.002
        assert (now[:2] > low).all() and (now[:2] < high).all() and abs(now[2] - start[name][2]) < 0.01
        assert (low <= ranges[name][0]).all() and (high >= ranges[name][1]).all()  # LIBERO's region, widened
        assert scene.penetrations(scene.object_geoms(name), ood.Layout.MAX_PENETRATION_M) <= touching[name]


def test_severity_zero_is_the_identity_on_libero(scene):
    clean, clean_info = scene.reset(seed=SEED)
    env = ood.wrap(scene, "robot_init+layout+table+language", severity=0)
    obs, info = env.reset(seed=SEED)
    np.testing.assert_array_equal(obs["images"]["agentview"], clean["images"]["agentview"])
    assert info["instruction"] == clean_info["instruction"]


def test_language_rewords_the_libero_instruction(scene):
    _, clean_info = scene.reset(seed=SEED)
    env = ood.wrap(scene, "language", severity=0.5)
    _, info = env.reset(seed=SEED)
    assert clean_info["instruction"] == "pick up the black bowl next to the cookie box and place it on the plate"
    assert info["instruction"] != clean_info["instruction"] and "black bowl next to the cookie box" in info["instruction"]
    assert info["instruction"] in ood.instruction_paraphrases(clean_info["instruction"])[:3]


def test_table_recolours_the_libero_table(scene):
    assert list(scene.surface_geoms()) == ["table_texture"]
    _, info = ood.wrap(scene, "table", severity=1.0).reset(seed=SEED)
    table = scene.surface_geoms()["table_texture"]
    np.testing.assert_allclose(scene.mj_model.geom_rgba[table, :3], [info["ood"]["table"]["surfaces"]["table_texture"]["rgb"]])


@pytest.mark.parametrize("name", ["robot_init", "layout"])
def test_expert_solves_a_libero_task_under(scene, name):
    """On the shared scene (building and closing a second LIBERO env is avoided here)."""
    limit = scene.max_steps
    scene.max_steps = libero_env.SUITES["libero_spatial"].max_steps
    try:
        success, steps = rollout_expert(ood.wrap(scene, name, severity=0.5), SEED)
    finally:
        scene.max_steps = limit
    assert success, f"no success in {steps} steps"


def test_expert_solves_a_libero_task_under_lighting_and_distractors(scene):
    env = ood.wrap(
        libero_env.LiberoEnv("libero_spatial", 6, cameras=("agentview",), image_size=32, distractor_slots=4),
        "lighting+distractors",
        severity=0.5,
    )
    try:
        success, steps = rollout_expert(env, SEED)
    finally:
        env.close()
    assert success, f"no success in {steps} steps"
