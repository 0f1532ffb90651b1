"""Gymnasium env over robosuite 1.4 manipulation tasks (Panda, OSC_POSE).

Every robosuite-task quirk lives in this file: controller config, the global-numpy seeding
of robosuite's placement samplers, which bodies are the task objects and surfaces (where
OOD perturbations, ``envs.ood``, place distractors); what all robosuite-backed envs share
(image flip, render flags, the observation spec below, the model hooks perturbations use) is
``envs.sim_base``.

Perturbations edit MuJoCo model fields after ``reset``; robosuite keeps its model across
resets (``hard_reset=False``), so ``reset`` first restores every field in
``envs.sim_base.PERTURBABLE_FIELDS`` (and the headlight) to its compiled value: edits never accumulate.

Observation, action and info: ``envs.sim_base`` (OSC_POSE scale here: delta position
1.0 = 5 cm per step, delta rotation 1.0 = 0.5 rad per step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.errors import EnvUserError, unknown_name
from envs.sim_base import (
    CONTROL_FREQ_HZ,
    DEFAULT_CAMERAS,
    PANDA_REACH_M,
    PlacementRegion,
    SimEnv,
    check_distractor_slots,
    import_robosuite,
    mjgeom,
    seeded_global_numpy,
    with_distractor_slots,
)

CAMERAS = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview", "robot0_robotview")


@dataclass(frozen=True)
class TaskSpec:
    """A robosuite task: its env class, what to say, and which bodies matter.

    pick_body / place_body: body names whose world positions the scripted expert and the
    tracking diagnostics read (place_body None: the task only lifts).
    surface_body: the body whose top (its largest collision box) distractors stand on.
    surface_materials: materials of the visible work surfaces (table top, bins).
    max_steps: episode limit in env steps (20 Hz), about 5x the scripted expert's mean
    episode length (Lift 50, Stack 117, PickPlaceCan 211), so a policy has room to retry.
    """

    env_class: str
    instruction: str
    pick_body: str
    place_body: str | None
    max_steps: int
    surface_body: str
    surface_materials: tuple[str, ...]


_TABLE = {"surface_body": "table", "surface_materials": ("table_ceramic",)}
TASKS: dict[str, TaskSpec] = {
    "Lift": TaskSpec("Lift", "lift the red cube", "cube_main", None, 300, **_TABLE),
    "Stack": TaskSpec("Stack", "stack the red cube on top of the green cube", "cubeA_main", "cubeB_main", 600, **_TABLE),
    "PickPlaceCan": TaskSpec(
        "PickPlaceCan",
        "pick up the can and place it in its bin",
        "Can_main",
        None,
        1000,
        surface_body="bin1",
        surface_materials=("light-wood", "dark-wood"),
    ),
}
# Materials of the arena's large surfaces: the textures a work surface may be swapped to.
ARENA_MATERIALS = ("table_ceramic", "light-wood", "dark-wood", "floorplane", "walls_mat", "table_legs_metal", "table_mat")


class RobosuiteEnv(SimEnv):
    """One robosuite task as a Gymnasium env (see the module docstring for the spec).

    Args:
        task: a key of ``TASKS`` (Lift, Stack, PickPlaceCan).
        cameras: camera names to render (subset of ``CAMERAS``).
        image_size: square image side in pixels.
        render_quality: "fast" (no multisampling, reflections or shadows; ~3x faster)
            or "full" (robosuite's defaults). Use one setting for collection,
            training and evaluation.
        max_steps: episode length limit in env steps (default: the task's).
        terminate_on_success: end the episode on the first successful step.
        distractor_slots: spare free-joint bodies built into the scene for the
            ``distractors`` perturbation (``envs.ood``); parked out of view unless placed.
        init_state: where objects start, one of ``INIT_STATE_MODES`` (default
            ``DEFAULT_INIT_STATE``): "sampled", robosuite's own placement sampler drawn from
            the reset seed; a scene subclass adds its stored states (``envs.tabletop``).
        init_state_index: the stored state for init_state="fixed".
        spec: the ``TaskSpec`` itself (scene subclasses); ``task`` is then only its name.
    """

    def __init__(
        self,
        task: str = "Lift",
        cameras: tuple[str, ...] | list[str] = DEFAULT_CAMERAS,
        image_size: int = 128,
        render_quality: str = "fast",
        max_steps: int | None = None,
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
        distractor_slots: int = 0,
        init_state: str | None = None,
        init_state_index: int | None = None,
        spec: TaskSpec | None = None,
    ):
        if spec is None and task not in TASKS:
            raise unknown_name("robosuite task", task, TASKS)
        spec = spec or TASKS[task]
        init_state = init_state or self.DEFAULT_INIT_STATE
        if init_state not in self.INIT_STATE_MODES:
            raise unknown_name(f"init_state for {task}", init_state, self.INIT_STATE_MODES)
        if init_state_index is not None and init_state != "fixed":
            raise EnvUserError(f"init_state_index={init_state_index} needs init_state='fixed' (got {init_state!r})")
        self._check_init_state(init_state, init_state_index)
        self._check_view(cameras, image_size, render_quality, CAMERAS)
        distractor_slots = check_distractor_slots(distractor_slots)
        self.spec_task = spec
        self.task = task
        self.init_state = init_state
        self.init_state_index = init_state_index
        self.instruction = self.spec_task.instruction
        self._set_episode_limits(max_steps or self.spec_task.max_steps, terminate_on_success, render_mode)
        self.distractor_slots = distractor_slots

        robosuite = import_robosuite()
        from robosuite.controllers import load_controller_config

        env_class, scene_kwargs = self._sim_env_class(robosuite)
        if self.distractor_slots:
            env_class = with_distractor_slots(env_class, self.distractor_slots)
        # robosuite draws some object sizes (Lift's cube: 2.0-2.2 cm) from the global RNG when it
        # builds the model: seeded, every process (eval worker, rank) simulates the same objects
        with seeded_global_numpy(0):
            self.sim_env = env_class(
                **scene_kwargs,
                robots="Panda",
                controller_configs=load_controller_config(default_controller="OSC_POSE"),
                has_renderer=False,
                has_offscreen_renderer=True,
                use_camera_obs=True,
                use_object_obs=False,
                camera_names=list(self.cameras),
                camera_heights=self.image_size,
                camera_widths=self.image_size,
                hard_reset=False,
                ignore_done=True,
                control_freq=CONTROL_FREQ_HZ,
                reward_shaping=False,
            )
        self._build_spaces()
        self._snapshot_compiled_fields()

    # --- hooks a scene subclass overrides (``envs.tabletop.TabletopEnv``) ---
    INIT_STATE_MODES: tuple[str, ...] = ("sampled",)  # robosuite's own placement sampler, from the reset seed
    DEFAULT_INIT_STATE = "sampled"

    def _check_init_state(self, init_state: str, init_state_index: int | None) -> None:
        """Fail now (one line) on initial states that cannot be had; robosuite tasks sample theirs."""

    def _sim_env_class(self, robosuite: Any) -> tuple[type, dict[str, Any]]:
        """(robosuite env class, extra constructor keywords) of this task."""
        return robosuite.environments.base.REGISTERED_ENVS[self.spec_task.env_class], {}

    def _before_sim_reset(self, seed: int | None, episode_seed: int, options: dict | None) -> None:
        """Set up the next episode's scene before robosuite resets (a stored layout, ...)."""

    @property
    def paraphrases(self) -> tuple[str, ...]:
        """Rewordings of the instruction, closest first, for the ``language`` perturbation
        (robosuite tasks have theirs in ``envs.ood.PARAPHRASES``)."""
        return ()

    # --- simulator access (privileged; for experts, perturbations and diagnostics) ---
    def body_position(self, body: str) -> np.ndarray:
        """World position ``[3]`` (metres) of MuJoCo body ``body``."""
        return np.array(self.sim.data.body_xpos[self.sim.model.body_name2id(body)])

    def body_yaw(self, body: str) -> float:
        """Rotation (rad) of body ``body`` about the world z axis."""
        rotation = self.sim.data.body_xmat[self.sim.model.body_name2id(body)].reshape(3, 3)
        return float(np.arctan2(rotation[1, 0], rotation[0, 0]))

    def _collision_geoms(self, body: str) -> np.ndarray:
        """Ids ``[G]`` of the colliding geoms attached to body ``body``."""
        model = self.mj_model
        return np.flatnonzero((model.geom_bodyid == model.body(body).id) & (model.geom_contype > 0))

    def body_half_extents(self, body: str) -> np.ndarray:
        """Half sizes ``[2]`` (metres) of body ``body``'s collision footprint along the body's own
        x and y axes (from MuJoCo's geom bounding boxes), e.g. (0.018, 0.03) for a 36 x 60 mm block."""
        model, data = self.mj_model, self.mj_data
        body_id = model.body(body).id
        geoms = self._collision_geoms(body)
        to_body = data.xmat[body_id].reshape(3, 3).T
        rotations = np.einsum("ij,gjk->gik", to_body, data.geom_xmat[geoms].reshape(-1, 3, 3))  # geom -> body frame
        centres = (data.geom_xpos[geoms] - data.xpos[body_id]) @ to_body.T + np.einsum(
            "gij,gj->gi", rotations, model.geom_aabb[geoms, :3]
        )
        halves = np.einsum("gij,gj->gi", np.abs(rotations), model.geom_aabb[geoms, 3:])
        return ((centres + halves).max(axis=0) - (centres - halves).min(axis=0))[:2] / 2

    def privileged_state(self) -> dict[str, Any]:
        """Ground-truth state for scripted experts: positions in metres, world frame.

        Keys: eef_pos [3], eef_finger_axis [2] (unit xy direction the fingers open
        along), eef_yaw_range [2] (``_wrist_yaw_range``), gripper_qpos [2], pick_pos [3],
        pick_yaw (rad, about world z),
        pick_half_extents [2] (footprint along the pick body's x and y axes),
        obstacles [N, 4] (``scene_obstacles``), place_pos [3] or None, success (bool).
        """
        robot = self.sim_env.robots[0]
        place_pos = None
        if self.spec_task.place_body is not None:
            place_pos = self.body_position(self.spec_task.place_body)
        elif self.task == "PickPlaceCan":
            can_index = self.sim_env.object_to_id["can"]
            place_pos = np.array(self.sim_env.target_bin_placements[can_index])
        return {
            "eef_pos": np.array(self.sim.data.site_xpos[robot.eef_site_id]),
            "eef_finger_axis": self._finger_axis(robot),
            "eef_yaw_range": self._wrist_yaw_range(robot),
            "gripper_qpos": np.array(self.sim.data.qpos[robot._ref_gripper_joint_pos_indexes]),
            "pick_pos": self.body_position(self.spec_task.pick_body),
            "pick_yaw": self.body_yaw(self.spec_task.pick_body),
            "pick_half_extents": self.body_half_extents(self.spec_task.pick_body),
            "obstacles": self.scene_obstacles(),
            "place_pos": place_pos,
            "success": bool(self.sim_env._check_success()),
        }

    # --- scene geometry for perturbations (robosuite names stay in this file) ---
    def task_bodies(self) -> tuple[str, ...]:
        """Names of the bodies the task is about (the pick object, then the place object if any)."""
        place = (self.spec_task.place_body,) if self.spec_task.place_body else ()
        return (self.spec_task.pick_body, *place)

    def visual_geoms(self, body: str) -> np.ndarray:
        """Ids ``[G]`` of the rendered (group 1) geoms attached to body ``body``."""
        model = self.mj_model
        return np.flatnonzero((model.geom_bodyid == model.body(body).id) & (model.geom_group == 1))

    def surface_geoms(self) -> dict[str, np.ndarray]:
        """Visible work surfaces: material name -> ids ``[G]`` of the geoms compiled with it
        (the table top; the two bins for PickPlaceCan)."""
        compiled_matids = self._compiled_fields["geom_matid"]
        return {
            name: np.flatnonzero(compiled_matids == self.mj_model.material(name).id) for name in self.spec_task.surface_materials
        }

    def arena_materials(self) -> dict[str, int]:
        """Name -> id of the arena surface materials present in this scene (see ``ARENA_MATERIALS``)."""
        model = self.mj_model
        present = {model.material(i).name for i in range(model.nmat)}
        return {name: model.material(name).id for name in ARENA_MATERIALS if name in present}

    def scene_bodies(self) -> tuple[str, ...]:
        """Every object body standing on the surface, which distractors must not overlap: the
        task bodies (a scene subclass adds its other objects: decoys, landmarks)."""
        return self.task_bodies()

    def task_footprints(self) -> list[tuple[np.ndarray, float]]:
        """(world xy ``[2]`` metres, radius metres) of each scene body's collision geoms, about z."""
        model, data = self.mj_model, self.mj_data
        footprints = []
        for body in self.scene_bodies():
            geoms = self._collision_geoms(body)
            aabb = model.geom_aabb[geoms]  # [G, 6]: centre (3), half sizes (3) in the geom frame
            radius = np.linalg.norm(model.geom_pos[geoms, :2] + aabb[:, :2], axis=1) + np.linalg.norm(aabb[:, 3:5], axis=1)
            footprints.append((np.array(data.xpos[model.body(body).id, :2]), float(radius.max())))
        return footprints

    def scene_obstacles(self) -> np.ndarray:
        """``[N, 4]`` (x, y, radius, top z; metres, world) of every scene body but the pick object:
        its footprint circle (``task_footprints``) and the height of its highest collision point."""
        model, data = self.mj_model, self.mj_data
        rows = []
        for body, (xy, radius) in zip(self.scene_bodies(), self.task_footprints()):
            if body == self.spec_task.pick_body:
                continue
            geoms = self._collision_geoms(body)
            rotations = data.geom_xmat[geoms].reshape(-1, 3, 3)
            centres_z = data.geom_xpos[geoms, 2] + np.einsum("gj,gj->g", rotations[:, 2, :], model.geom_aabb[geoms, :3])
            tops = centres_z + np.einsum("gj,gj->g", np.abs(rotations[:, 2, :]), model.geom_aabb[geoms, 3:])
            rows.append([*xy, radius, float(tops.max())])
        return np.array(rows, dtype=np.float64).reshape(-1, 4)

    def placement_region(self) -> PlacementRegion:
        """The surface distractors may stand on: top face of ``surface_body``'s largest collision box."""
        model, data = self.mj_model, self.mj_data
        body_id = model.body(self.spec_task.surface_body).id
        boxes = np.flatnonzero((model.geom_bodyid == body_id) & (model.geom_contype > 0) & (model.geom_type == mjgeom("BOX")))
        top = boxes[np.argmax(model.geom_size[boxes, 0] * model.geom_size[boxes, 1])]
        return PlacementRegion(
            centre_xy=np.array(data.geom_xpos[top, :2]),
            half_extent_xy=np.array(model.geom_size[top, :2]),
            surface_z=float(data.geom_xpos[top, 2] + model.geom_size[top, 2]),
            reach_centre_xy=np.array(self.sim_env.robots[0].base_pos[:2]),
            reach_radius_m=PANDA_REACH_M,
        )

    # --- gymnasium API ---
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**31 - 1))
        self._restore_compiled_fields()
        self._before_sim_reset(seed, episode_seed, options)
        with seeded_global_numpy(episode_seed):
            raw = self.sim_env.reset()
        for robot in self.sim_env.robots:
            # robosuite's soft reset keeps the gripper's integrated command: clear it so
            # the same seed and actions give the same trajectory.
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        self._steps = 0
        self._last_obs = self._observation(raw)
        return self._last_obs, self._info(False)

    def _success(self, done: bool) -> bool:
        return bool(self.sim_env._check_success())

    def close(self) -> None:
        if getattr(self, "sim_env", None) is not None:
            self.sim_env.close()
            self.sim_env = None


def _factory(task: str):
    def make_task(**kwargs: Any) -> RobosuiteEnv:
        return RobosuiteEnv(task=task, **kwargs)

    return make_task


def register_all() -> None:
    """Register ``robosuite/<Task>`` for every task in ``TASKS``."""
    from envs.registry import register

    for task in TASKS:
        register(f"robosuite/{task}", _factory(task))
