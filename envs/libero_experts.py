"""Scripted experts (``envs.experts``) for LIBERO tasks, from privileged simulator state.

Pick and place (libero_spatial, libero_object and six libero_goal tasks): the bowls (10.7 cm
across, wider than the Panda's 8 cm opening) are grasped at the rim, 1.2 cm below its top,
fingers radial; everything else at its centre, 2.5 cm below its top (mid-height when shorter).
The pick object is the BDDL file's first object of interest, the place target its second.

libero_goal's "turn on the stove" grasps the stove's knob handle and turns it (``TurnSpec``;
LIBERO's ``turnon`` holds from 0.5 rad); "open the middle drawer" grasps the drawer's handle bar
with the hand pointing into the drawer and pulls it (``PullSpec``; LIBERO's ``open`` holds from
14 cm out); "open the top drawer and put the bowl inside" pulls the top drawer so, then picks the
bowl and places it in the drawer's region (``SequenceSpec``). ``GOAL_UNCOVERED`` lists the tasks
no expert solves yet, and why.

``register_all()`` registers an expert for every task of ``EXPERT_SUITES`` except those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
from typing import Any

import numpy as np

from envs.experts import ExpertSpec, PullSpec, SequenceSpec, TurnSpec, register_expert
from envs.libero_env import EXPERT_SUITES, SUITES, LiberoEnv, _benchmark

RIM_GRASPED = ("akita_black_bowl",)
# A rim-held bowl is set down before it is let go (below the plate's rim: its floor lies ~1 cm
# lower; the lowering stops where the bowl is supported): dropped from above, it rides the inner
# finger (box-box contact with the bowl's thin wall boxes) as the fingers open, 3 cm sideways.
RIM_RELEASE_CLEARANCE_M = -0.02
# The tasks no expert solves. The plate push (tried): from behind, the plate's back edge is 3.5 cm
# from the cabinet's drawer handles, less than the hand needs; from inside the plate its rim is too
# low to drag it by (the closed fingers slide over it); pinched at the rim like a bowl, the fingers
# stall on its sloped floor above the rim's bottom.
GOAL_UNCOVERED = {5: "push the plate to the front of the stove"}
GOAL_TURNED = {7: "flat_stove_1_button"}  # task id -> the knob's MuJoCo body
GOAL_PULLED = {0: "wooden_cabinet_1_cabinet_middle", 3: "wooden_cabinet_1_cabinet_top"}  # task id -> the drawer's body
GOAL_PLACED_IN_DRAWER = (3,)  # pulled tasks whose pick object then goes into the drawer's region
# The middle drawer's handle stands 11 cm above the table: the hand, turning on the way there (its
# finger axis becomes vertical, 21 cm long), swept the bowl standing between the robot and the
# cabinet into the drawer's way; it turns this far higher (metres), over the bowl, then lowers.
DRAWER_TURN_RAISE_M = 0.12
# Into the top drawer (libero_goal/3): the pull stops at DRAWER_PLACE_OPEN_TO_M (it coasts ~1.5 cm
# on) so the 10.7 cm bowl fits between the cabinet's top plate and the drawer's front, whose corner
# then stands over the bowl's edge in most stored states. The rim is grasped on the side facing the
# robot (the hand, long along the radial fingers, lies beside the drawer); the hand comes down and
# the bowl leaves along a slant from DRAWER_CLEAR_SHIFT_M off the grasp (world +y, the pull
# direction: the cabinet faces it in every libero_goal scene), so that the hand does not push the
# drawer shut nor the bowl meet its floor, rises DRAWER_LIFT_M (over the drawer's walls) and is set
# down DRAWER_PLACE_OFFSET_M off the drawer region's centre, toward the front, clear of the top plate.
DRAWER_PLACE_OPEN_TO_M = 0.125
DRAWER_RIM_SIDE = (-1.0, 0.0)  # world xy direction
DRAWER_CLEAR_SHIFT_M = (0.0, 0.08)  # world xy
DRAWER_LIFT_M = 0.25
DRAWER_PLACE_OFFSET_M = (0.0, 0.015, 0.0)  # world xyz
KNOB_RAISED_M = 0.01  # the knob's handle: its geoms whose top stands this far above the dial's


def _objects_of_interest(suite: str, task_id: int) -> list[str]:
    """LIBERO's objects of interest of the task, in BDDL order (no assets needed)."""
    bddl_file = _benchmark(suite).get_task_bddl_file_path(task_id)  # imports libero first (its config)
    from libero.libero.envs import bddl_utils

    with contextlib.redirect_stdout(io.StringIO()):
        problem = bddl_utils.robosuite_parse_problem(bddl_file)
    return problem["obj_of_interest"]


def expert_spec(suite: str, task_id: int) -> ExpertSpec | TurnSpec | PullSpec | SequenceSpec:
    """The scripted expert's spec of a LIBERO task: pick-and-place geometry from the BDDL
    file's objects of interest (the pick object first), for libero_goal's stove a turn, for its
    drawers a pull (then, into the top drawer, the pick and place)."""
    if suite == "libero_goal" and task_id in GOAL_PULLED:
        pull = PullSpec(observe=functools.partial(drawer_state, body=GOAL_PULLED[task_id]))
        if task_id not in GOAL_PLACED_IN_DRAWER:
            return dataclasses.replace(pull, turn_raise=DRAWER_TURN_RAISE_M)
        pull = dataclasses.replace(pull, open_to=DRAWER_PLACE_OPEN_TO_M)
        place = dataclasses.replace(
            _pick_place_spec(suite, task_id),
            place_offset=DRAWER_PLACE_OFFSET_M,
            rim_side=DRAWER_RIM_SIDE,
            clear_shift=DRAWER_CLEAR_SHIFT_M,
            lift_height=DRAWER_LIFT_M,
        )
        return SequenceSpec((pull, place))
    if suite == "libero_goal" and task_id in GOAL_TURNED:
        return TurnSpec(observe=functools.partial(knob_state, body=GOAL_TURNED[task_id]))
    return _pick_place_spec(suite, task_id)


def _pick_place_spec(suite: str, task_id: int) -> ExpertSpec:
    """Pick-and-place geometry of a LIBERO task: a rim grasp for the bowls, else a centre grasp."""
    pick = _objects_of_interest(suite, task_id)[0].rsplit("_", 1)[0]
    if pick in RIM_GRASPED:
        return ExpertSpec(
            place_offset=(0.0, 0.0, 0.0),
            grasp_depth=0.012,
            rim_inset=0.008,
            align_yaw=True,
            release_clearance=RIM_RELEASE_CLEARANCE_M,
        )
    return ExpertSpec(place_offset=(0.0, 0.0, 0.0), grasp_depth=0.025, descend_push=0.5)


def knob_state(env: LiberoEnv, body: str) -> dict[str, Any]:
    """``TurnSpec``'s state for the knob on MuJoCo body ``body`` (a hinge about world z): the
    box of its raised handle (the geoms standing ``KNOB_RAISED_M`` above the dial) in the
    body's yaw frame, the direction across its short side, and the hinge angle (rad)."""
    model, data = env.mj_model, env.mj_data
    body_id = model.body(body).id
    geoms = np.flatnonzero((model.geom_bodyid == body_id) & (model.geom_contype > 0))
    rotation = data.xmat[body_id].reshape(3, 3)
    yaw = float(np.arctan2(rotation[1, 0], rotation[0, 0]))
    to_frame = np.array([[np.cos(yaw), np.sin(yaw), 0.0], [-np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    rotations = np.einsum("ij,gjk->gik", to_frame, data.geom_xmat[geoms].reshape(-1, 3, 3))
    centres = data.geom_xpos[geoms] @ to_frame.T + np.einsum("gij,gj->gi", rotations, model.geom_aabb[geoms, :3])
    halves = np.einsum("gij,gj->gi", np.abs(rotations), model.geom_aabb[geoms, 3:])
    tops = centres[:, 2] + halves[:, 2]
    raised = tops > tops.min() + KNOB_RAISED_M
    low, high = (centres[raised] - halves[raised]).min(axis=0), (centres[raised] + halves[raised]).max(axis=0)
    short = int(np.argmin((high - low)[:2]))
    robot = env.sim_env.robots[0]
    return {
        "eef_pos": np.array(env.sim.data.site_xpos[robot.eef_site_id]),
        "eef_finger_axis": env._finger_axis(robot),
        "eef_yaw_range": env._wrist_yaw_range(robot),
        "knob_pos": to_frame.T @ ((low + high) / 2),
        "knob_top_z": float(high[2]),
        "knob_axis": to_frame.T[:2, short],
        "knob_angle": float(data.qpos[model.jnt_qposadr[model.body_jntadr[body_id]]]),
    }


def drawer_state(env: LiberoEnv, body: str) -> dict[str, Any]:
    """``PullSpec``'s state for the drawer on MuJoCo body ``body`` (a slide joint; LIBERO's
    cabinets open toward negative joint positions): its handle is the colliding geom standing
    furthest out along the pull direction."""
    model, data = env.mj_model, env.mj_data
    body_id = model.body(body).id
    joint = model.body_jntadr[body_id]
    pull = -(data.xmat[body_id].reshape(3, 3) @ model.jnt_axis[joint])
    geoms = np.flatnonzero((model.geom_bodyid == body_id) & (model.geom_contype > 0))
    handle = geoms[int(np.argmax(data.geom_xpos[geoms] @ pull))]
    robot = env.sim_env.robots[0]
    return {
        "eef_pos": np.array(env.sim.data.site_xpos[robot.eef_site_id]),
        "eef_rotation": np.array(env.sim.data.site_xmat[robot.eef_site_id]).reshape(3, 3),
        "handle_pos": np.array(data.geom_xpos[handle]),
        "pull_direction": pull,
        "opening": -float(data.qpos[model.jnt_qposadr[joint]]),
    }


def covered_tasks(suite: str) -> list[int]:
    """Task ids of ``suite`` that have a scripted expert."""
    uncovered = GOAL_UNCOVERED if suite == "libero_goal" else {}
    return [task_id for task_id in range(SUITES[suite].tasks) if task_id not in uncovered]


def register_all() -> None:
    """Register the scripted expert of every covered task of ``EXPERT_SUITES``."""
    for suite in EXPERT_SUITES:
        for task_id in covered_tasks(suite):
            register_expert(f"libero/{suite}/{task_id}", functools.partial(expert_spec, suite, task_id))
