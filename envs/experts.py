"""Scripted experts that solve the tasks from privileged simulator state.

Every expert is a ``WaypointExpert``: a phase machine that drives the grip site to one
waypoint per phase with a gripper command. A per-task spec picks the kind and its geometry:
``ExpertSpec`` (pick and place: where to grasp, where to carry the object and how high to
release it), ``TurnSpec`` (grasp a knob and turn it about the vertical), ``PullSpec``
(grasp a drawer's handle bar and pull it open) or ``SequenceSpec`` (such experts one after the
other, e.g. a drawer pulled open, then a pick and place into it). Experts read
``expert.observe(env.unwrapped)`` (by default ``privileged_state()``; positions in metres, world
frame) and output the env's native OSC_POSE action ``[7]``: delta xyz (1.0 = 5 cm), delta
rotation (axis-angle, 1.0 = 0.5 rad; about world z only, except the drawer pull's turns to face
the drawer and back), gripper.

``run_episode(env_name, seed, **env_kwargs) -> bool`` is the same loop the collector uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from envs.errors import unknown_name

OPEN, CLOSE = -1.0, 1.0
POSITION_GAIN = 10.0  # action units per metre of position error (0.1 m error -> full speed)
YAW_GAIN = 2.0  # action units per radian of gripper yaw error (1.0 = 0.5 rad per step)
REACHED_M = 0.012  # distance counted as "at the waypoint"
PHASE_TIMEOUT_STEPS = 60  # a phase that has not converged by then moves on
ELONGATED_RATIO = 1.3  # footprint long/short side ratio from which the fingers close across the short side
# The Panda hand's collision box around the grip site (measured in robosuite): it reaches this far
# along the finger axis and across it, and its underside is this far above the grip site.
HAND_HALF_LENGTH_M, HAND_HALF_WIDTH_M, HAND_BOTTOM_ABOVE_GRIP_M = 0.105, 0.032, 0.026
WRIST_MARGIN_RAD = 1.0  # wrist turn kept in reserve at the grasp: carrying turned it up to ~0.6 rad more
SUPPORTED_M = 0.001  # the lowering counts as supported once the hand descends less than this in a step
SUPPORTED_AFTER_STEPS = 5  # ... after this many steps of lowering (the hand starts from rest)
CLEARANCE_TIE_M = 0.005  # hand clearances closer than this count as equal (rim side choice)


@dataclass(frozen=True)
class ExpertSpec:
    """Geometry of one task for the pick-and-place state machine (metres).

    grasp_offset: grasp point relative to the pick body's origin.
    place_offset: release point relative to ``place_pos`` (None: lift only, by ``lift_height``).
    carry_height: clearance above the release point while carrying.

    Measured geometry (envs whose ``privileged_state`` has pick_top_z, pick_bottom_z and
    place_top_z, e.g. LIBERO's), used when ``grasp_depth`` is set:
    grasp_depth: grasp this far below the pick object's top, at mid-height at most (``grasp_offset`` added).
    rim_inset: grasp on the rim instead of the centre, this far inside the footprint's edge,
        fingers radial (bowls wider than the gripper's opening).
    release_clearance: the held object's bottom this far above the place target's top at release;
        negative sets it down into a dish (a plate's floor lies below its rim). The lowering stops
        early where the held object is supported (the hand stops descending), and lets go there.
    descend_push: the least downward command (action units) while descending onto the grasp, so
        a tall neighbour brushing the arm does not stall it short of a flat object.
    rim_side: world xy direction: the rim is grasped on the footprint's side nearest it (None: on
        the side whose hand clears the other objects most).
    clear_shift: world xy (metres) by which the approach waypoint and the lift's end stand off
        the grasp point: the hand comes down and the object leaves along a slant, out from under
        an overhang (e.g. an open drawer standing over the object).
    Then the carry runs at the lift's height at least, over every obstacle on the way.
    """

    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    place_offset: tuple[float, float, float] | None = None
    lift_height: float = 0.15
    carry_height: float = 0.10
    gripper_steps: int = 12
    align_yaw: bool = True
    grasp_depth: float | None = None
    rim_inset: float | None = None
    release_clearance: float = 0.02
    descend_push: float = 0.0
    rim_side: tuple[float, float] | None = None
    clear_shift: tuple[float, float] = (0.0, 0.0)


EXPERT_SPECS: dict[str, ExpertSpec] = {
    "Lift": ExpertSpec(),
    "Stack": ExpertSpec(place_offset=(0.0, 0.0, 0.055), carry_height=0.06),
    "PickPlaceCan": ExpertSpec(grasp_offset=(0.0, 0.0, 0.01), place_offset=(0.0, 0.0, 0.12), lift_height=0.2, align_yaw=False),
}


class WaypointExpert:
    """The phase machine every expert kind shares: ``PHASES`` run in order, each driving the
    grip site to a waypoint with a gripper command; ``phase_steps`` counts the steps in the
    current one, and ``done`` turns true once the last phase (the retreat) has reached its
    waypoint: the expert's part is over (``SequenceExpert`` starts the next one there).

    Call ``reset()`` at the start of an episode and ``act(state) -> action [7]`` each step,
    where ``state`` is ``observe(env.unwrapped)``.
    """

    PHASES: tuple[str, ...] = ()

    def __init__(self, spec: Any):
        self.spec = spec
        self.reset()

    def reset(self) -> None:
        self.phase = self.PHASES[0]
        self.phase_steps = 0
        self.done = False

    def observe(self, env: Any) -> dict[str, Any]:
        """The state ``act`` reads: the env's ``privileged_state()``."""
        return env.privileged_state()

    def _advance(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    def _command(self, state: dict[str, Any], target: np.ndarray, gripper: float, yaw: float = 0.0) -> np.ndarray:
        """OSC_POSE action ``[7]``: toward waypoint ``target`` [3] (metres, world) at
        ``POSITION_GAIN``, rotation command ``yaw`` about world z, ``gripper`` (OPEN / CLOSE)."""
        action = np.zeros(7, dtype=np.float32)
        action[:3] = np.clip(POSITION_GAIN * (target - state["eef_pos"]), -1.0, 1.0)
        action[5] = yaw
        action[6] = gripper
        return action


class PickPlaceExpert(WaypointExpert):
    """Waypoint state machine: approach, descend, grasp, lift, carry, lower, release."""

    PHASES = ("approach", "descend", "grasp", "lift", "carry", "lower", "release", "retreat")

    def reset(self) -> None:
        super().reset()
        self.grasp_pos: np.ndarray | None = None
        self.grasp_axis: np.ndarray | None = None
        self.rim_direction: np.ndarray | None = None  # [2], chosen once (``rim_inset``)
        self.hold = 0.0  # grasp height above the pick object's bottom (metres), measured at the grasp
        self.held_offset = np.zeros(2)  # grip site minus held object centre in xy (metres), from the lift
        self.set_down: np.ndarray | None = None  # [3] where the lowering stopped, supported (``grasp_depth``)
        self.previous_eef_z = 0.0

    def _grasp_point(self, state: dict[str, Any]) -> np.ndarray:
        """Where the grip site closes ``[3]`` (metres, world): the pick body's origin plus
        ``grasp_offset``, or with ``grasp_depth`` below the object's top, at its centre or rim."""
        spec = self.spec
        if spec.grasp_depth is None:
            return state["pick_pos"] + np.array(spec.grasp_offset)
        point = np.array(state["pick_pos"], dtype=np.float64)
        point[2] = max(state["pick_top_z"] - spec.grasp_depth, (state["pick_top_z"] + state["pick_bottom_z"]) / 2)
        if spec.rim_inset is not None:
            if self.rim_direction is None:
                self.rim_direction = self._choose_rim_direction(state)
            point[:2] += self.rim_direction * self._rim_radius(self.rim_direction, state)
        return point + np.array(spec.grasp_offset)

    def _rim_radius(self, direction: np.ndarray, state: dict[str, Any]) -> float:
        """Distance (metres) from the pick centre to the grasp on the rim along unit ``direction`` [2]."""
        yaw = state["pick_yaw"]
        along = abs(float(direction @ np.array([np.cos(yaw), np.sin(yaw)])))
        half = state["pick_half_extents"]
        return float(half[0] if along > 0.5 else half[1]) - self.spec.rim_inset

    def _choose_rim_direction(self, state: dict[str, Any]) -> np.ndarray:
        """Unit ``[2]``: which of the four sides of the footprint (along the pick object's x and y)
        to grasp the rim on: the one whose hand (fingers radial) clears the other objects most,
        the side facing the robot (smallest x) among those within ``CLEARANCE_TIE_M`` of the best
        (mirror-image sides tie up to rounding, which must not pick the far side); with
        ``rim_side`` set, the side nearest that direction."""
        yaw = state["pick_yaw"]
        sides = [np.array([np.cos(yaw + a), np.sin(yaw + a)]) for a in np.arange(4) * np.pi / 2]
        if self.spec.rim_side is not None:
            return max(sides, key=lambda side: float(side @ np.array(self.spec.rim_side)))
        centre = np.array(state["pick_pos"], dtype=np.float64)
        clearances = []
        for side in sides:
            grasp = centre.copy()
            grasp[:2] += side * self._rim_radius(side, state)
            grasp[2] = state["pick_top_z"] - self.spec.grasp_depth
            clearances.append(min(self._hand_clearance(side, state, grasp), 0.1))
        best = max(clearances)
        return min((side for side, gap in zip(sides, clearances) if gap >= best - CLEARANCE_TIE_M), key=lambda side: side[0])

    def _release_point(self, state: dict[str, Any]) -> np.ndarray | None:
        """Where the object is let go ``[3]``, or None for a lift-only task."""
        spec = self.spec
        if spec.place_offset is None or state["place_pos"] is None:
            return None
        release = state["place_pos"] + np.array(spec.place_offset)
        if spec.grasp_depth is not None:  # the held object's centre over the target, not the grip
            release[:2] += self.held_offset
            release[2] = state["place_top_z"] + self.hold + spec.release_clearance + spec.place_offset[2]
        return release

    def _choose_grasp_axis(self, state: dict[str, Any]) -> np.ndarray:
        """Finger axis ``[2]`` along one of the pick object's faces (the pick body's x or y).

        An elongated footprint (``ELONGATED_RATIO``): the short one, so the fingers close
        across the object. Otherwise the one whose hand (long along the finger axis) clears
        the other objects at the grasp (``_hand_clearance``), or if both do, the one closest
        to the current axis (least rotation).
        """
        if self.spec.rim_inset is not None:
            self._grasp_point(state)
            return self.rim_direction  # fingers radial
        yaw = state["pick_yaw"]
        candidates = [np.array([np.cos(yaw + a), np.sin(yaw + a)]) for a in (0.0, np.pi / 2)]
        half = state["pick_half_extents"]
        if max(half) > ELONGATED_RATIO * min(half):
            return candidates[int(np.argmin(half))]
        clearances = [self._hand_clearance(axis, state) for axis in candidates]
        if min(clearances) < 0:
            return candidates[int(np.argmax(clearances))]
        return max(candidates, key=lambda axis: abs(float(axis @ state["eef_finger_axis"])))

    def _hand_clearance(self, axis: np.ndarray, state: dict[str, Any], grasp: np.ndarray | None = None) -> float:
        """Smallest gap (metres; negative: overlap) in xy between the hand at ``grasp`` [3] (default:
        the pick body's origin plus ``grasp_offset``) with its fingers along ``axis`` [2] and the
        footprint of any other object tall enough to reach it."""
        if grasp is None:
            grasp = state["pick_pos"] + np.array(self.spec.grasp_offset)
        obstacles = state["obstacles"]
        tall = obstacles[obstacles[:, 3] > grasp[2] + HAND_BOTTOM_ABOVE_GRIP_M]
        if not len(tall):
            return float("inf")
        offsets = tall[:, :2] - grasp[:2]
        across = np.array([-axis[1], axis[0]])
        gaps = np.maximum(np.abs(offsets @ axis) - HAND_HALF_LENGTH_M, np.abs(offsets @ across) - HAND_HALF_WIDTH_M) - tall[:, 2]
        return float(gaps.min())

    def _yaw_command(self, state: dict[str, Any]) -> float:
        """Rotation command about world z turning the fingers onto the (signed) grasp axis."""
        if not self.spec.align_yaw or self.phase not in ("approach", "descend"):
            return 0.0
        if self.grasp_axis is None:
            self.grasp_axis = self._signed_grasp_axis(state)
        return float(np.clip(YAW_GAIN * _turn(state["eef_finger_axis"], self.grasp_axis), -1.0, 1.0))

    def _signed_grasp_axis(self, state: dict[str, Any]) -> np.ndarray:
        """The grasp axis ``[2]``, signed once for the episode: the fingers are symmetric, so
        turning them onto the axis or its opposite both align them; take the shorter turn if it
        leaves the wrist ``WRIST_MARGIN_RAD`` from its joint limits (``eef_yaw_range``), so it
        can still follow the arm while carrying, else the turn leaving more room."""
        axis = self._choose_grasp_axis(state)
        if abs(_turn(state["eef_finger_axis"], axis)) > np.pi / 2:
            axis = -axis  # the shorter turn first
        short = _turn(state["eef_finger_axis"], axis)
        low, high = state["eef_yaw_range"]
        room_short, room_long = (min(turn - low, high - turn) for turn in (short, short - np.copysign(np.pi, short)))
        return axis if room_short >= WRIST_MARGIN_RAD or room_short >= room_long else -axis

    def _targets(self, state: dict[str, Any]) -> tuple[np.ndarray, float]:
        """Waypoint ``[3]`` (metres) and gripper command for the current phase."""
        spec = self.spec
        grasp = self._grasp_point(state)
        up = np.array([0.0, 0.0, 1.0])
        release = self._release_point(state)
        if self.phase == "approach":
            return grasp + np.array([*spec.clear_shift, 0.08]), OPEN
        if self.phase == "descend":
            return grasp, OPEN
        if self.phase == "grasp":
            return self.grasp_pos, CLOSE
        if self.phase == "lift":
            return self.grasp_pos + np.array([*spec.clear_shift, spec.lift_height]), CLOSE
        if self.phase == "carry":
            carry = release + up * spec.carry_height
            if spec.grasp_depth is not None:  # over every obstacle: no lower than the lift
                carry[2] = max(carry[2], self.grasp_pos[2] + spec.lift_height)
            return carry, CLOSE
        if self.phase == "lower":
            return release, CLOSE
        if self.phase == "release":
            return (release if self.set_down is None else self.set_down), OPEN
        return (release if release is not None else self.grasp_pos) + up * 0.1, OPEN

    def act(self, state: dict[str, Any]) -> np.ndarray:
        """The action ``[7]`` for this step; advances the phase when a waypoint is reached."""
        if self.phase == "grasp" and self.grasp_pos is None:
            self.grasp_pos = state["eef_pos"].copy()
            if self.spec.grasp_depth is not None:
                self.hold = float(self.grasp_pos[2] - state["pick_bottom_z"])
        target, gripper = self._targets(state)
        yaw_command = self._yaw_command(state)
        error = target - state["eef_pos"]
        reached = np.linalg.norm(error) < REACHED_M
        self.phase_steps += 1
        timed_out = self.phase_steps >= PHASE_TIMEOUT_STEPS
        place_task = self.spec.place_offset is not None and state["place_pos"] is not None
        supported = (
            self.spec.grasp_depth is not None
            and self.phase == "lower"
            and self.phase_steps > SUPPORTED_AFTER_STEPS
            and self.previous_eef_z - state["eef_pos"][2] < SUPPORTED_M
        )
        self.previous_eef_z = float(state["eef_pos"][2])
        if supported and not reached:
            self.set_down = state["eef_pos"].copy()
            self._advance("release")
        elif self.phase in ("approach", "descend", "carry", "lower") and (reached or timed_out):
            following = {"approach": "descend", "descend": "grasp", "carry": "lower", "lower": "release"}
            self._advance(following[self.phase])
        elif self.phase in ("grasp", "release") and self.phase_steps >= self.spec.gripper_steps:
            self._advance("lift" if self.phase == "grasp" else "retreat")
        elif self.phase == "lift" and (reached or timed_out) and place_task:
            self.held_offset = state["eef_pos"][:2] - state["pick_pos"][:2]  # as lifted: fixed while carried
            self._advance("carry")
        elif self.phase == "retreat" and (reached or timed_out):
            self.done = True
        action = self._command(state, target, gripper, yaw_command)
        if self.phase == "descend" and error[2] < -REACHED_M / 2:
            action[2] = min(action[2], -self.spec.descend_push)  # through the contact of a neighbour brushing the arm
        return action


@dataclass(frozen=True)
class TurnSpec:
    """A knob turned about the vertical (metres, radians): grasp it ``grasp_depth`` below its
    top, fingers along ``knob_axis``, and turn the wrist counter-clockwise until the knob's
    angle reaches ``turn_to``.

    observe: ``env -> state`` with eef_pos [3], eef_finger_axis [2], eef_yaw_range (low, high
        rad of wrist turn left), knob_pos [3] (centre of the knob's box), knob_top_z,
        knob_axis [2] (the direction the fingers close across) and knob_angle (rad).
    """

    observe: Callable[[Any], dict[str, Any]]
    turn_to: float = 1.0
    grasp_depth: float = 0.015
    turn_command: float = 0.25  # yaw action while turning (1.0 = 0.5 rad per step)
    gripper_steps: int = 12
    turn_steps: int = 80  # the turn gives up after this many steps


class TurnExpert(WaypointExpert):
    """Approach the knob, descend, grasp, turn it, let go, retreat."""

    PHASES = ("approach", "descend", "grasp", "turn", "release", "retreat")

    def reset(self) -> None:
        super().reset()
        self.grasp_axis: np.ndarray | None = None
        self.grasp_pos: np.ndarray | None = None

    def observe(self, env: Any) -> dict[str, Any]:
        return self.spec.observe(env)

    def _signed_axis(self, state: dict[str, Any]) -> np.ndarray:
        """``knob_axis`` or its opposite: the one leaving the wrist more counter-clockwise room
        after the alignment turn (the knob turns that way), among those within its range."""
        low, high = state["eef_yaw_range"]
        candidates = [state["knob_axis"], -state["knob_axis"]]
        turns = [_turn(state["eef_finger_axis"], axis) for axis in candidates]
        return candidates[max(range(2), key=lambda i: (turns[i] >= low, high - turns[i]))]

    def act(self, state: dict[str, Any]) -> np.ndarray:
        """The action ``[7]`` for this step; advances the phase when a waypoint is reached."""
        spec = self.spec
        if self.grasp_axis is None:
            self.grasp_axis = self._signed_axis(state)
        grasp = np.array([*state["knob_pos"][:2], state["knob_top_z"] - spec.grasp_depth])
        up = np.array([0.0, 0.0, 1.0])
        self.phase_steps += 1
        yaw = 0.0
        if self.phase in ("approach", "descend"):
            target, gripper = grasp + up * (0.08 if self.phase == "approach" else 0.0), OPEN
            yaw = float(np.clip(YAW_GAIN * _turn(state["eef_finger_axis"], self.grasp_axis), -1.0, 1.0))
            if np.linalg.norm(target - state["eef_pos"]) < REACHED_M or self.phase_steps >= PHASE_TIMEOUT_STEPS:
                self._advance("descend" if self.phase == "approach" else "grasp")
                self.grasp_pos = state["eef_pos"].copy()
        elif self.phase == "grasp":
            target, gripper = self.grasp_pos, CLOSE
            if self.phase_steps >= spec.gripper_steps:
                self._advance("turn")
        elif self.phase == "turn":
            target, gripper, yaw = self.grasp_pos, CLOSE, spec.turn_command
            if state["knob_angle"] >= spec.turn_to or self.phase_steps >= spec.turn_steps:
                self._advance("release")
        elif self.phase == "release":
            target, gripper = self.grasp_pos, OPEN
            if self.phase_steps >= spec.gripper_steps:
                self._advance("retreat")
        else:
            target, gripper = self.grasp_pos + up * 0.1, OPEN
            if np.linalg.norm(target - state["eef_pos"]) < REACHED_M or self.phase_steps >= PHASE_TIMEOUT_STEPS:
                self.done = True
        return self._command(state, target, gripper, yaw)


@dataclass(frozen=True)
class PullSpec:
    """A drawer pulled open by its handle bar (metres): the hand turns to point into the
    drawer with the fingers opening vertically (across a horizontal bar), comes in along the
    pull direction from ``standoff`` in front of the handle, grasps it and pulls until the
    drawer is ``open_to`` out, lets go, backs off to ``standoff`` in front of the handle and
    returns to the pose it started in (pointing down, within reach: for what follows).

    observe: ``env -> state`` with eef_pos [3], eef_rotation [3, 3] (the grip site's axes as
        columns: x the finger axis, z the approach), handle_pos [3] (the bar's centre),
        pull_direction [3] (unit, world) and opening (how far the drawer is out).
    """

    observe: Callable[[Any], dict[str, Any]]
    open_to: float = 0.15
    standoff: float = 0.1
    pull_ahead: float = 0.06  # the pull aims this far past the handle's current position
    gripper_steps: int = 12
    pull_steps: int = 100  # the pull gives up after this many steps
    turn_raise: float = 0.0  # the turn happens this far above the standoff point, then the hand lowers onto it
    turn_steps: int = 100  # the turns (to face the drawer, and back to the start) move on after this many steps


class PullExpert(WaypointExpert):
    """Turn to face the drawer (``turn_raise`` above the point) in front of its handle, lower onto
    it, come in, grasp, pull, let go, back off, return to the start pose."""

    PHASES = ("turn", "lower", "approach", "grasp", "pull", "release", "back_off", "retreat")
    TURNED_RAD = 0.1  # orientation error counted as faced

    def reset(self) -> None:
        super().reset()
        self.start_pos: np.ndarray | None = None  # [3] the grip site at the first step (metres, world)
        self.start_rotation: np.ndarray | None = None  # [3, 3] its axes then

    def observe(self, env: Any) -> dict[str, Any]:
        return self.spec.observe(env)

    def _facing_rotation(self, state: dict[str, Any]) -> np.ndarray:
        """The grip site's axes ``[3, 3]`` (columns) approaching along -pull_direction with the
        fingers opening along world z (or -z, the nearer)."""
        approach = -state["pull_direction"]
        finger = np.array([0.0, 0.0, 1.0 if state["eef_rotation"][2, 0] >= 0 else -1.0])
        return np.stack([finger, np.cross(approach, finger), approach], axis=1)

    def _start_rotation(self, state: dict[str, Any]) -> np.ndarray:
        """The grip site's axes ``[3, 3]`` at the start, or the same turned half a turn about the
        approach (the fingers are symmetric), whichever is the smaller turn from now: the turn to
        face the drawer can take nearly half a turn, and back through so ill-defined an axis the
        hand swings wide."""
        flipped = self.start_rotation @ np.diag([-1.0, -1.0, 1.0])
        return min((self.start_rotation, flipped), key=lambda axes: np.linalg.norm(_axis_angle(axes @ state["eef_rotation"].T)))

    def act(self, state: dict[str, Any]) -> np.ndarray:
        """The action ``[7]`` for this step; advances the phase when a waypoint is reached."""
        spec = self.spec
        pull = state["pull_direction"]
        self.phase_steps += 1
        if self.start_pos is None:
            self.start_pos, self.start_rotation = state["eef_pos"].copy(), state["eef_rotation"].copy()
        goal_rotation = self._start_rotation(state) if self.phase == "retreat" else self._facing_rotation(state)
        # world axis-angle, 1.0 = 0.5 rad per step
        rotation = np.clip(YAW_GAIN * _axis_angle(goal_rotation @ state["eef_rotation"].T), -1.0, 1.0)
        faced = np.linalg.norm(rotation) < YAW_GAIN * self.TURNED_RAD
        gripper = CLOSE if self.phase in ("grasp", "pull") else OPEN
        if self.phase == "turn":
            target = state["handle_pos"] + pull * spec.standoff + np.array([0.0, 0.0, spec.turn_raise])
            if (faced and np.linalg.norm(target - state["eef_pos"]) < REACHED_M) or self.phase_steps >= spec.turn_steps:
                self._advance("lower")
        elif self.phase == "lower":
            target = state["handle_pos"] + pull * spec.standoff
            if np.linalg.norm(target - state["eef_pos"]) < REACHED_M or self.phase_steps >= PHASE_TIMEOUT_STEPS:
                self._advance("approach")
        elif self.phase == "approach":
            target = state["handle_pos"]
            if np.linalg.norm(target - state["eef_pos"]) < REACHED_M or self.phase_steps >= PHASE_TIMEOUT_STEPS:
                self._advance("grasp")
        elif self.phase == "grasp":
            target = state["handle_pos"]
            if self.phase_steps >= spec.gripper_steps:
                self._advance("pull")
        elif self.phase == "pull":
            target = state["handle_pos"] + pull * spec.pull_ahead
            if state["opening"] >= spec.open_to or self.phase_steps >= spec.pull_steps:
                self._advance("release")
        elif self.phase == "release":
            target = state["eef_pos"]
            if self.phase_steps >= spec.gripper_steps:
                self._advance("back_off")
        elif self.phase == "back_off":
            target = state["handle_pos"] + pull * spec.standoff
            if np.linalg.norm(target - state["eef_pos"]) < REACHED_M or self.phase_steps >= PHASE_TIMEOUT_STEPS:
                self._advance("retreat")
        else:
            target = self.start_pos
            if (faced and np.linalg.norm(target - state["eef_pos"]) < REACHED_M) or self.phase_steps >= spec.turn_steps:
                self.done = True
        action = self._command(state, target, gripper)
        action[3:6] = rotation
        return action


@dataclass(frozen=True)
class SequenceSpec:
    """Experts one after the other: each step's expert acts until it is ``done`` (its retreat
    reached), then the next one's starts from wherever that left the hand.

    steps: the specs in order (``ExpertSpec``, ``TurnSpec`` or ``PullSpec``), e.g. a ``PullSpec``
        that opens a drawer, then an ``ExpertSpec`` that puts an object inside.
    """

    steps: tuple[Any, ...]


class SequenceExpert(WaypointExpert):
    """The experts of ``SequenceSpec.steps`` in turn, each reading its own ``observe``."""

    def reset(self) -> None:
        self.experts = [EXPERT_KINDS[type(step)](step) for step in self.spec.steps]
        self.current = 0  # index of the expert acting now
        self.done = False

    def observe(self, env: Any) -> dict[str, Any]:
        return self.experts[self.current].observe(env)

    def act(self, state: dict[str, Any]) -> np.ndarray:
        """The current expert's action ``[7]``; the next expert takes over once it is done."""
        expert = self.experts[self.current]
        action = expert.act(state)
        if expert.done and self.current + 1 < len(self.experts):
            self.current += 1
        self.done = self.experts[-1].done
        return action


def _axis_angle(rotation: np.ndarray) -> np.ndarray:
    """Axis-angle ``[3]`` (rad) of rotation matrix ``[3, 3]``."""
    angle = float(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)))
    if angle < 1e-6:
        return np.zeros(3)
    axis = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    return axis / (2.0 * np.sin(angle)) * angle


EXPERT_KINDS: dict[type, type[WaypointExpert]] = {
    ExpertSpec: PickPlaceExpert,
    TurnSpec: TurnExpert,
    PullSpec: PullExpert,
    SequenceSpec: SequenceExpert,
}


def _turn(current: np.ndarray, target: np.ndarray) -> float:
    """Signed angle (rad, in (-pi, pi], counter-clockwise positive) from xy direction
    ``current`` [2] to ``target`` [2]."""
    cross = current[0] * target[1] - current[1] * target[0]
    return float(np.arctan2(cross, float(current @ target)))


_EXPERT_SPEC_FACTORIES: dict[str, Callable[[], Any]] = {}


def register_expert(task: str, spec: Callable[[], Any]) -> None:
    """Register the expert of ``task`` (an env's ``task`` name): ``spec()`` gives an
    ``ExpertSpec``, ``TurnSpec``, ``PullSpec`` or ``SequenceSpec`` (``EXPERT_KINDS``), built on first use."""
    _EXPERT_SPEC_FACTORIES[task] = spec


def has_expert(task: str) -> bool:
    """Whether ``make_expert(task)`` has an expert to build."""
    return task in _EXPERT_SPEC_FACTORIES or task in EXPERT_SPECS


def make_expert(task: str) -> WaypointExpert:
    """The scripted expert for ``task`` (a key of ``EXPERT_SPECS`` or a registered task)."""
    if not has_expert(task):
        raise unknown_name("expert task", task, [*EXPERT_SPECS, *_EXPERT_SPEC_FACTORIES])
    spec = _EXPERT_SPEC_FACTORIES[task]() if task in _EXPERT_SPEC_FACTORIES else EXPERT_SPECS[task]
    return EXPERT_KINDS[type(spec)](spec)


@dataclass
class Transition:
    """One expert step: the observation and MuJoCo state ``[S]`` the action was chosen in,
    the clean expert action ``[7]``, and what the env returned."""

    obs: dict
    sim_state: np.ndarray
    action: np.ndarray
    reward: float
    done: bool
    info: dict


def rollout_expert(
    env: Any,
    seed: int,
    action_noise: float = 0.0,
    on_step: Callable[[Transition], None] | None = None,
    reset_options: dict[str, Any] | None = None,
) -> tuple[bool, int]:
    """Run one seeded episode with the expert; returns (success, steps).

    ``reset_options`` go to ``env.reset`` (the collector asks for ``{"init_state": "sampled"}``:
    demonstrations in freshly drawn scenes, never an evaluation's stored initial states).

    ``action_noise``: std of Gaussian noise added to the executed xyz command (the
    recorded label stays the clean expert action). ``on_step`` sees each ``Transition``.
    """
    expert = make_expert(env.unwrapped.task)
    noise_rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed, options=reset_options)
    success, steps = False, 0
    while True:
        sim_state = np.array(env.unwrapped.sim.get_state().flatten()) if on_step is not None else None
        clean_action = expert.act(expert.observe(env.unwrapped))
        executed = clean_action.copy()
        executed[:3] = np.clip(executed[:3] + noise_rng.normal(0.0, action_noise, 3), -1.0, 1.0)
        next_obs, reward, terminated, truncated, info = env.step(executed)
        steps += 1
        success = success or bool(info["success"])
        if on_step is not None:
            on_step(Transition(obs, sim_state, clean_action, float(reward), terminated or truncated, info))
        obs = next_obs
        if terminated or truncated:
            return success, steps


def run_episode(env_name: str, seed: int, **env_kwargs: Any) -> bool:
    """Build ``env_name``, run one seeded expert episode, close the env; return success."""
    from envs.registry import make

    env = make(env_name, **env_kwargs)
    try:
        return rollout_expert(env, seed)[0]
    finally:
        env.close()
