"""OOD perturbation wrappers on the real simulator: what each changes, its report, seeding,
no accumulation across resets, composition, the expert under perturbation, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import envs
from envs import ood
from envs.errors import EnvUserError
from envs.experts import rollout_expert
from envs.robosuite_env import TASKS
from envs.sim_base import HEADLIGHT_FIELDS, PERTURBABLE_FIELDS

IMAGE_SIZE = 48
CAMERA = "agentview"
SCENE_PERTURBATIONS = ("lighting", "distractors", "camera", "table", "object_color", "robot_init", "layout")
IMAGE_PERTURBATIONS = (*SCENE_PERTURBATIONS, "noise")
CHANGED_LEVELS = 30  # a pixel counts as changed when a channel moves by more than this


@pytest.fixture(scope="module")
def lift():
    """One Lift env with distractor slots, shared by the tests (each wraps it afresh)."""
    env = envs.make("robosuite/Lift", cameras=[CAMERA], image_size=IMAGE_SIZE, distractor_slots=ood.MAX_DISTRACTORS)
    yield env
    env.close()


def _model_fields(env) -> dict[str, np.ndarray]:
    model = env.unwrapped.mj_model
    fields = {field: getattr(model, field).copy() for field in PERTURBABLE_FIELDS}
    fields.update({f"headlight_{f}": getattr(model.vis.headlight, f).copy() for f in HEADLIGHT_FIELDS})
    return fields


def _fields_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[field], b[field]) for field in a)


def _changed_pixels(image: np.ndarray, reference: np.ndarray) -> int:
    return int((np.abs(image.astype(int) - reference.astype(int)).max(axis=2) > CHANGED_LEVELS).sum())


def _check_lighting(env, before, after, report):
    assert not np.array_equal(after["light_diffuse"], before["light_diffuse"])
    assert not np.array_equal(after["headlight_diffuse"], before["headlight_diffuse"])
    assert not np.array_equal(after["light_dir"], before["light_dir"])
    turned = math.degrees(math.acos(np.clip(after["light_dir"][0] @ before["light_dir"][0], -1, 1)))
    assert turned == pytest.approx(report["turn_deg"], abs=1e-6) and report["turn_deg"] == pytest.approx(22.5)


def _check_camera(env, before, after, report):
    agentview = env.unwrapped.mj_model.camera(CAMERA).id
    moved = np.linalg.norm(after["cam_pos"] - before["cam_pos"], axis=1)
    assert moved[agentview] == pytest.approx(0.05) and np.count_nonzero(moved) == 1
    assert set(report["cameras"]) == {CAMERA}
    fov_change = after["cam_fovy"][agentview] / before["cam_fovy"][agentview] - 1
    assert 0 < abs(fov_change) <= 0.5 * ood.Camera.MAX_FOV_CHANGE  # severity 0.5
    assert report["cameras"][CAMERA]["fovy_deg"] == pytest.approx(after["cam_fovy"][agentview])


def _check_table(env, before, after, report):
    table = env.unwrapped.surface_geoms()["table_ceramic"]
    assert not np.array_equal(after["geom_rgba"][table], before["geom_rgba"][table])
    assert np.allclose(after["geom_rgba"][table, :3], report["surfaces"]["table_ceramic"]["rgb"])


def _check_object_color(env, before, after, report):
    cube = env.unwrapped.visual_geoms("cube_main")
    assert (after["geom_matid"][cube] == -1).all()
    assert np.allclose(after["geom_rgba"][cube, :3], report["objects"]["cube_main"]["rgb"])


def _check_distractors(env, before, after, report):
    scene = env.unwrapped
    objects = report["objects"]
    assert len(objects) == 2  # round(0.5 * MAX_DISTRACTORS)
    region = scene.placement_region()
    ((cube_xy, cube_radius),) = scene.task_footprints()
    footprints = []
    for slot, placed in enumerate(objects):
        body = scene.mj_model.body(f"distractor{slot}").id
        position = scene.mj_data.xpos[body]
        assert np.allclose(position, placed["pos"])
        assert (np.abs(position[:2] - region.centre_xy) < region.half_extent_xy).all()
        assert position[2] > region.surface_z
        assert np.linalg.norm(position[:2] - cube_xy) > cube_radius + ood.Distractors.TASK_CLEARANCE_M
        size = placed["size_m"]
        footprints.append((position[:2], np.linalg.norm(size[:2]) if placed["shape"] == "box" else size[0]))
    (first_xy, first_radius), (second_xy, second_radius) = footprints
    assert np.linalg.norm(first_xy - second_xy) >= first_radius + second_radius
    parked = scene.mj_data.xpos[scene.mj_model.body("distractor3").id]
    assert parked[0] > 3.0  # beyond the front wall, out of view


SCENE_CLAIMS = {
    "lighting": _check_lighting,
    "camera": _check_camera,
    "table": _check_table,
    "object_color": _check_object_color,
    "distractors": _check_distractors,
}


def test_registry_names():
    assert ood.names() == sorted(
        ["lighting", "distractors", "camera", "table", "object_color", "noise", "language", "robot_init", "layout"]
    )
    assert all(ood.PERTURBATIONS[name].name == name for name in ood.names())


@pytest.mark.parametrize("name", IMAGE_PERTURBATIONS)
def test_perturbation_changes_image_reproducibly_without_accumulating(lift, name):
    clean_obs, _ = lift.reset(seed=3)
    pristine = _model_fields(lift)
    clean = clean_obs["images"][CAMERA]
    env = ood.wrap(lift, name, severity=0.5)

    first, first_info = env.reset(seed=3)
    first_fields = _model_fields(lift)
    other, other_info = env.reset(seed=4)
    again, again_info = env.reset(seed=3)

    image = first["images"][CAMERA]
    assert _changed_pixels(image, clean) >= 4, "the perturbation shows in the image"
    assert np.array_equal(image, again["images"][CAMERA]), "same seed, same images"
    assert first_info["ood"] == again_info["ood"], "same seed, same draw"
    assert other_info["ood"] != first_info["ood"] or name == "noise", "another seed, another draw"
    assert not np.array_equal(other["images"][CAMERA], image)
    assert _fields_equal(_model_fields(lift), first_fields), "resets re-draw, they do not accumulate"

    report = first_info["ood"][name]
    assert report["severity"] == 0.5 and json.loads(json.dumps(first_info)) == first_info
    if name in SCENE_CLAIMS:
        SCENE_CLAIMS[name](lift, pristine, first_fields, report)

    stepped, _, _, _, step_info = env.step(np.zeros(7, dtype=np.float32))
    assert step_info["ood"] == again_info["ood"]
    if name == "noise":
        assert report == {"severity": 0.5, "noise_std": 12.5, "blur_sigma_fraction": 0.01}
        assert not np.array_equal(stepped["images"][CAMERA], again["images"][CAMERA])

    lift.reset(seed=3)
    assert _fields_equal(_model_fields(lift), pristine), "a plain reset restores every model field"


def test_wrap_seed_gives_other_draws_for_one_reset_seed(lift):
    draws = [ood.wrap(lift, "lighting", seed=seed).reset(seed=0)[1]["ood"]["lighting"] for seed in (1, 1, 2)]
    assert draws[0] == draws[1] and draws[0] != draws[2]


def test_severity_zero_is_the_identity(lift):
    clean_obs, clean_info = lift.reset(seed=5)
    env = ood.wrap(lift, "+".join(ood.names()), severity=0)
    obs, info = env.reset(seed=5)
    assert np.array_equal(obs["images"][CAMERA], clean_obs["images"][CAMERA])
    assert info["instruction"] == clean_info["instruction"]
    assert info["ood"] == {name: {"severity": 0.0} for name in ood.names()}
    assert ood.wrap(lift, "clean") is lift and ood.wrap(lift, "") is lift


def test_robot_init_offsets_the_arm_by_the_severity(lift):
    lift.reset(seed=3)
    start = lift.arm_qpos()
    env = ood.wrap(lift, "robot_init", severity=0.5)
    _, info = env.reset(seed=3)
    report, qpos = info["ood"]["robot_init"], lift.arm_qpos()
    assert np.linalg.norm(qpos - start) == pytest.approx(0.5 * ood.RobotInit.MAX_OFFSET_RAD, abs=1e-9)
    np.testing.assert_allclose(qpos - start, report["offset_rad"], atol=1e-12)
    limits = lift.arm_joint_ranges()
    assert ((qpos > limits[:, 0]) & (qpos < limits[:, 1])).all()
    assert not lift.penetrations(lift.robot_geoms(), ood.RobotInit.MAX_PENETRATION_M)
    env.step(np.zeros(7, dtype=np.float32))  # the episode starts there: the arm does not spring back
    assert np.linalg.norm(lift.arm_qpos() - qpos) < 0.25 * np.linalg.norm(qpos - start)


def test_layout_moves_the_cube_within_its_region_at_rest(lift):
    lift.reset(seed=3)
    start = lift.object_position("cube_main")
    (low, high) = lift.placement_ranges()["cube_main"]
    np.testing.assert_allclose([low, high], [[-0.03, -0.03], [0.03, 0.03]])  # Lift's sampler range about the table centre
    env = ood.wrap(lift, "layout", severity=0.5)
    _, info = env.reset(seed=3)
    report = info["ood"]["layout"]["objects"]["cube_main"]
    region_low, region_high = np.array(report["region"])
    np.testing.assert_allclose([region_low, region_high], [[-0.05, -0.05], [0.05, 0.05]])  # widened to 10 cm
    now = lift.object_position("cube_main")
    np.testing.assert_allclose(report["from_xy"], start[:2])
    assert report["shift_m"] > 0.005 and np.linalg.norm(now[:2] - start[:2]) == pytest.approx(report["shift_m"], abs=1e-3)
    assert (now[:2] > region_low).all() and (now[:2] < region_high).all()
    assert 0 <= start[2] - now[2] <= ood.Layout.MAX_DROP_M  # settled onto the table (robosuite drops it from 1 cm)
    assert not lift.penetrations(lift.object_geoms("cube_main"), ood.Layout.MAX_PENETRATION_M)


def test_an_object_put_into_another_counts_as_interpenetrating(lift):
    """What ``layout`` and ``robot_init`` reject: a box put where the cube stands interpenetrates it."""
    lift.reset(seed=3)
    cube = lift.object_geoms("cube_main")
    assert not lift.penetrations(cube, ood.Layout.MAX_PENETRATION_M)
    lift.place_distractor(0, "box", np.full(3, 0.03), np.ones(4), lift.object_position("cube_main"), 0.0)
    lift.sim.forward()
    assert lift.penetrations(cube, ood.Layout.MAX_PENETRATION_M)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_has_paraphrases(task):
    paraphrases = ood.PARAPHRASES[task]
    assert len(set(paraphrases)) >= 4 and TASKS[task].instruction not in paraphrases


def test_language_replaces_the_instruction(lift):
    paraphrases, original = ood.PARAPHRASES["Lift"], TASKS["Lift"].instruction
    env = ood.wrap(lift, "language", severity=0.5)
    seen = set()
    for seed in range(8):
        _, info = env.reset(seed=seed)
        seen.add(info["instruction"])
        assert info["instruction"] in paraphrases[:3] and info["ood"]["language"]["instruction"] == info["instruction"]
    assert len(seen) > 1
    _, _, _, _, step_info = env.step(np.zeros(7, dtype=np.float32))
    assert step_info["instruction"] == info["instruction"] != original
    assert env.reset(seed=0)[1] == env.reset(seed=0)[1]


def test_composition_keeps_each_draw(lift):
    composed = ood.wrap(lift, "lighting+distractors", severity=0.5)
    obs, info = composed.reset(seed=6)
    assert list(info["ood"]) == ["lighting", "distractors"]
    singles = {}
    for name in ("lighting", "distractors"):
        single_obs, single_info = ood.wrap(lift, name, severity=0.5).reset(seed=6)
        assert single_info["ood"][name] == info["ood"][name]
        singles[name] = single_obs["images"][CAMERA]
    for image in singles.values():
        assert _changed_pixels(obs["images"][CAMERA], image) >= 4


def test_expert_solves_lift_under_every_perturbation(lift):
    env = ood.wrap(lift, "+".join(ood.names()), severity=0.5)
    for seed in (0, 1):
        success, _ = rollout_expert(env, seed)
        assert success, seed


@pytest.mark.parametrize("task", ["Stack", "PickPlaceCan"])
def test_every_perturbation_runs_on_other_tasks(task):
    env = ood.make(f"robosuite/{task}", "+".join(ood.names()), severity=0.5, cameras=[CAMERA], image_size=32)
    try:
        obs, info = env.reset(seed=0)
        assert list(info["ood"]) == ood.names() and len(info["ood"]["distractors"]["objects"]) == 2
        assert info["instruction"] in ood.PARAPHRASES[task]
        clean_obs, _ = env.unwrapped.reset(seed=0)
        assert _changed_pixels(obs["images"][CAMERA], clean_obs["images"][CAMERA]) >= 4
        for _ in range(3):
            obs, _, _, _, info = env.step(env.action_space.sample())
        assert obs["images"][CAMERA].shape == (32, 32, 3) and set(info["ood"]) == set(ood.names())
    finally:
        env.close()


def test_robot_init_and_layout_on_a_tabletop_task_keep_the_block_on_its_box():
    """tabletop_spatial/3: the target block stands on the green box; layout moves it within 30% of
    its jitter about the box (widened), and a draw it would fall from is redrawn."""
    env = ood.make("tabletop_spatial/3", "robot_init+layout", severity=1.0, cameras=[CAMERA], image_size=32)
    scene = env.unwrapped
    try:
        scene.reset(seed=0)
        start = {name: scene.object_position(name) for name in scene.placement_ranges()}
        _, info = env.reset(seed=0)
        assert set(info["ood"]["layout"]["objects"]) == {"block_target_main", "plate_main"}
        block = scene.object_position("block_target_main")
        assert abs(block[2] - start["block_target_main"][2]) < 0.005  # still on the box
        assert np.linalg.norm(block[:2] - start["block_target_main"][:2]) > 0.005
        assert info["ood"]["robot_init"]["norm_rad"] == pytest.approx(ood.RobotInit.MAX_OFFSET_RAD)
    finally:
        env.close()


@pytest.mark.parametrize(
    "spec, severity, expected",
    [
        ("lightning", 0.5, "unknown perturbation 'lightning' (did you mean 'lighting'?)"),
        ("lighting+tabel", 0.5, "unknown perturbation 'tabel' (did you mean 'table'?)"),
        ("lighting,table", 0.5, "join names with '+', not ','"),
        ("noise+noise", 0.5, "names noise more than once"),
        ("lighting", 1.5, "severity=1.5 is out of range; valid: a number in [0, 1]"),
        ("lighting", -0.1, "severity=-0.1 is out of range"),
        ("lighting", "high", "severity='high' is out of range"),
    ],
)
def test_bad_spec_or_severity_is_one_clear_line(lift, spec, severity, expected):
    with pytest.raises(EnvUserError) as caught:
        ood.wrap(lift, spec, severity=severity)
    message = str(caught.value)
    assert expected in message and "\n" not in message and "valid" in message


def test_bad_seed_is_one_clear_line(lift):
    with pytest.raises(EnvUserError, match=r"seed=-1 is invalid; valid: None or an integer >= 0"):
        ood.wrap(lift, "noise", seed=-1)


def test_distractors_need_slots():
    with pytest.raises(EnvUserError) as caught:
        envs.make("robosuite/Lift", distractor_slots=99)
    assert "distractor_slots=99 is out of range" in str(caught.value)
    env = envs.make("robosuite/Lift", cameras=["robot0_eye_in_hand"], image_size=16)
    try:
        with pytest.raises(EnvUserError, match=r"distractor_slots=0; build it with distractor_slots=4"):
            ood.wrap(env, "distractors", severity=1.0)
        with pytest.raises(EnvUserError, match="moves world-mounted cameras, but this env renders only robot0_eye_in_hand"):
            ood.wrap(env, "camera")
    finally:
        env.close()
