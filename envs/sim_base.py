"""What every robosuite-backed env here shares (robosuite tasks, tabletop suites, LIBERO).

The observation contract, the camera/size/quality checks, the fast render settings, the
projection of task objects into the images, and the step / render loop. A subclass builds
``sim_env`` (a robosuite environment) after ``_check_view`` and ``_set_episode_limits``,
calls ``_build_spaces``, and provides ``task_bodies()``, ``body_position(name)`` and
``_success(done)``.

Observation spec (declared once, here):
    images:  {camera: uint8 [H, W, 3]}, right side up (robosuite renders bottom-up: flipped)
    proprio: float32 [9] = end-effector position (3, metres, world frame), end-effector
             quaternion (4, x y z w), gripper finger joint positions (2, metres)
Action: float32 [7] in [-1, 1], OSC_POSE: delta position (3), delta axis-angle (3), gripper
    (-1 open, +1 close), at ``CONTROL_FREQ_HZ``.
Info: success (bool), task (str), instruction (str), object_xy (camera -> [N, 2] image
    positions of the task objects, for diagnostics).

Model hooks for the OOD perturbations (``envs.ood``), shared by every env here: ``mj_model`` /
``mj_data`` (the fields perturbations write, ``PERTURBABLE_FIELDS``, restored to their compiled
values by ``_restore_compiled_fields`` at every reset, so edits never accumulate), ``observe()``
(re-render after an edit), spare distractor bodies (``with_distractor_slots``,
``place_distractor``), the arm's joints (``arm_qpos``, ``set_arm_qpos``, ``robot_geoms``), the task
objects' placement ranges and free joints (``placement_ranges``, ``move_object``, ``settle``,
``penetrations``); a subclass adds the scene geometry perturbations read (``task_bodies``,
``visual_geoms``, ``surface_geoms``, ``arena_materials``, ``task_footprints``, ``placement_region``).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from envs.errors import EnvUserError, unknown_name
from envs.rendering import close_at_exit, ensure_gl_backend

DEFAULT_CAMERAS = ("agentview", "robot0_eye_in_hand")
RENDER_QUALITIES = ("fast", "full")
IMAGE_SIZE_RANGE = (16, 512)
CONTROL_FREQ_HZ = 20
PROPRIO_DIM = 9


def import_robosuite() -> Any:
    """Import robosuite after choosing a GL backend, with its import-time chatter silenced
    (its log warnings, and the line ``robosuite.wrappers`` prints when the old ``gym`` package is missing)."""
    ensure_gl_backend()
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        import robosuite
        import robosuite.wrappers  # noqa: F401 - imported here for the notice its import prints

    return robosuite


STORED_INIT_STATE_MODES = ("cycle", "fixed", "random")  # how an episode picks one of a task's stored states


def choose_init_state(mode: str, seed: int, count: int, index: int | None = None, where: str = "") -> int:
    """Which of ``count`` stored initial states an episode reset with ``seed`` starts from
    (LIBERO's and the tabletop suites' alike).

    fixed: ``index``; cycle: ``seed mod count`` (consecutive seeds walk through all);
    random: one drawn from ``seed``. ``where`` (e.g. " for tabletop_spatial/3") ends errors.
    """
    if mode == "fixed":
        if index is None or not 0 <= index < count:
            raise EnvUserError(f"init_state_index={index!r} is out of range; valid: 0..{count - 1}{where}")
        return int(index)
    if mode == "cycle":
        return seed % count
    if mode == "random":
        return int(np.random.default_rng([seed, 11]).integers(count))
    raise unknown_name(f"init_state{where}", mode, STORED_INIT_STATE_MODES)


@contextlib.contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """robosuite samples placements from the global numpy RNG: seed it, then restore it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


# Model fields perturbations may write; ``_restore_compiled_fields`` restores them (plus the headlight).
PERTURBABLE_FIELDS = (
    "light_pos",
    "light_dir",
    "light_diffuse",
    "light_ambient",
    "light_specular",
    "cam_pos",
    "cam_quat",
    "cam_fovy",
    "geom_rgba",
    "geom_matid",
    "geom_type",
    "geom_size",
    "mat_rgba",
)
HEADLIGHT_FIELDS = ("ambient", "diffuse", "specular")

# Spare free-joint bodies for distractor objects (``distractor_slots``). Each is compiled
# as a box of the largest half-size a perturbation may draw, so the compiled bounding
# volumes (geom_rbound, geom_aabb, BVH) contain any smaller box, cylinder or sphere written
# into its geom later; its mass and inertia stay those of the compiled box.
DISTRACTOR_SLOTS_RANGE = (0, 8)
DISTRACTOR_MAX_HALF_SIZE_M = 0.04
DISTRACTOR_MASS_KG = 0.1
DISTRACTOR_SHAPES = ("box", "cylinder", "sphere")
# Unused slots rest on the floor here, far beyond every arena's walls: no camera sees them.
DISTRACTOR_PARKING_X_M = 4.0
DISTRACTOR_PARKING_SPACING_M = 0.2
PANDA_REACH_M = 0.75  # horizontal reach from the robot base at table height used for placements
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)  # OSC_POSE: no motion, gripper open


@dataclass(frozen=True)
class PlacementRegion:
    """Where extra objects may stand: a rectangle on the surface, within the robot's reach.

    centre_xy [2] and half_extent_xy [2] (metres, world frame) bound the surface top at
    height surface_z (metres); reach_centre_xy [2] is the robot base, reach_radius_m its
    horizontal reach.
    """

    centre_xy: np.ndarray
    half_extent_xy: np.ndarray
    surface_z: float
    reach_centre_xy: np.ndarray
    reach_radius_m: float


def check_distractor_slots(slots: Any) -> int:
    """``slots`` as an int, or one ``EnvUserError`` line unless it is in ``DISTRACTOR_SLOTS_RANGE``."""
    low, high = DISTRACTOR_SLOTS_RANGE
    if isinstance(slots, bool) or not isinstance(slots, (int, np.integer)) or not low <= slots <= high:
        raise EnvUserError(f"distractor_slots={slots!r} is out of range; valid: an integer in [{low}, {high}]")
    return int(slots)


def _distractor_body(index: int) -> ET.Element:
    """MJCF for spare body ``distractor<index>``: a free joint and one visible, colliding box
    geom (group 1), resting on the floor at its parking spot.

    robosuite computes inertia from group-0 geoms only, so the box's inertia is explicit.
    """
    half = DISTRACTOR_MAX_HALF_SIZE_M
    parking = f"{DISTRACTOR_PARKING_X_M} {index * DISTRACTOR_PARKING_SPACING_M} {half}"
    body = ET.Element("body", name=f"distractor{index}", pos=parking)
    box_inertia = DISTRACTOR_MASS_KG * 2 * half**2 / 3  # solid cube of half-size `half`, about any axis
    ET.SubElement(body, "inertial", pos="0 0 0", mass=str(DISTRACTOR_MASS_KG), diaginertia=f"{box_inertia} " * 3)
    ET.SubElement(body, "freejoint", name=f"distractor{index}_joint")
    ET.SubElement(
        body,
        "geom",
        name=f"distractor{index}_geom",
        type="box",
        size=f"{half} {half} {half}",
        rgba="0.5 0.5 0.5 1",
        group="1",
    )
    return body


@functools.lru_cache(maxsize=None)
def with_distractor_slots(env_class: type, slots: int) -> type:
    """Subclass of robosuite (or LIBERO) env class ``env_class`` whose model gains ``slots``
    spare distractor bodies, appended last to the world body (so their joints come last in
    qpos/qvel). robosuite builds its MJCF in ``_load_model`` during ``__init__``, so the bodies
    are appended there; their qpos0 is the parking spot, so every reset parks them."""

    def _load_model(self: Any) -> None:
        env_class._load_model(self)
        for index in range(slots):
            self.model.worldbody.append(_distractor_body(index))

    # robosuite's metaclass registers every subclass under its class name.
    return type(env_class)(f"{env_class.__name__}WithDistractorSlots{slots}", (env_class,), {"_load_model": _load_model})


def mjgeom(name: str) -> int:
    """MuJoCo geom type id for ``name`` (BOX, CYLINDER, SPHERE, ...)."""
    import mujoco

    return int(getattr(mujoco.mjtGeom, f"mjGEOM_{name}"))


class SimEnv(gym.Env):
    """Base of the robosuite-backed Gymnasium envs (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ_HZ}
    sim_env: Any
    task: str
    instruction: str

    def _check_view(self, cameras: Any, image_size: Any, render_quality: str, valid_cameras: tuple[str, ...]) -> None:
        """Validate and keep ``cameras`` (subset of ``valid_cameras``), ``image_size`` (pixels)
        and ``render_quality``; a bad value fails with one line naming the valid ones."""
        cameras = tuple(cameras)
        for camera in cameras:
            if camera not in valid_cameras:
                raise unknown_name("camera", camera, valid_cameras)
        if not cameras:
            raise EnvUserError(f"cameras is empty; choose from {', '.join(valid_cameras)}")
        low, high = IMAGE_SIZE_RANGE
        if not isinstance(image_size, (int, np.integer)) or not low <= image_size <= high:
            raise EnvUserError(f"image_size={image_size!r} is out of range; valid: an integer in [{low}, {high}] pixels")
        if render_quality not in RENDER_QUALITIES:
            raise unknown_name("render_quality", render_quality, RENDER_QUALITIES)
        self.cameras, self.image_size, self.render_quality = cameras, int(image_size), render_quality

    def _set_episode_limits(self, max_steps: int, terminate_on_success: bool, render_mode: str | None) -> None:
        self.max_steps, self.terminate_on_success, self.render_mode = int(max_steps), terminate_on_success, render_mode
        self._steps = 0
        self._last_obs: dict[str, Any] | None = None

    def _build_spaces(self) -> None:
        """Observation and action spaces from the cameras, image size and ``sim_env``'s action spec;
        with ``render_quality="fast"``, the cheaper render settings. A ``sim_env`` never closed is
        closed at interpreter exit, while its renderer can still be released (``close_at_exit``)."""
        if self.render_quality == "fast":
            self._disable_costly_render_effects()
        image_space = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({camera: image_space for camera in self.cameras}),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
            }
        )
        low, high = self.sim_env.action_spec
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        close_at_exit(self.sim_env)

    @property
    def sim(self) -> Any:
        """robosuite's MjSim (``.model``, ``.data``, ``.forward()``)."""
        return self.sim_env.sim

    # --- model hooks (perturbations, experts; privileged) ---
    distractor_slots: int = 0

    @property
    def mj_model(self) -> Any:
        """The ``mujoco.MjModel`` itself: the fields perturbations write (``PERTURBABLE_FIELDS``)."""
        return self.sim.model._model

    @property
    def mj_data(self) -> Any:
        """The ``mujoco.MjData`` itself."""
        return self.sim.data._data

    def _snapshot_compiled_fields(self) -> None:
        """Keep the compiled values of ``PERTURBABLE_FIELDS`` and the headlight (call once built)."""
        model = self.mj_model
        self._compiled_fields = {field: getattr(model, field).copy() for field in PERTURBABLE_FIELDS}
        self._compiled_headlight = {field: getattr(model.vis.headlight, field).copy() for field in HEADLIGHT_FIELDS}

    def _restore_compiled_fields(self) -> None:
        """Undo model-field edits (perturbations) of the last episode."""
        model = self.mj_model
        for field, value in self._compiled_fields.items():
            getattr(model, field)[:] = value
        for field, value in self._compiled_headlight.items():
            getattr(model.vis.headlight, field)[:] = value

    def observe(self) -> dict[str, Any]:
        """Recompute kinematics and re-render: the observation of the current model and state.

        For perturbations that edit model fields or qpos after ``reset``.
        """
        self.sim.forward()
        self._make_render_context_current()
        self._last_obs = self._observation(self.sim_env._get_observations(force_update=True))
        return self._last_obs

    def _make_render_context_current(self) -> None:
        """Make this env's offscreen GL context the thread's current one before it renders.

        robosuite makes a context current only when it creates it and renders into whichever is
        current: with several envs in one process, every env rendered into the last one built,
        and once that one was closed (its context released) the others rendered black frames."""
        context = getattr(self.sim, "_render_context_offscreen", None)
        if context is not None:
            context.gl_ctx.make_current()

    def place_distractor(
        self, slot: int, shape: str, size: np.ndarray, rgba: np.ndarray, position: np.ndarray, yaw: float
    ) -> None:
        """Put spare body ``slot`` (``with_distractor_slots``) in the scene as a ``shape`` at rest.

        size: MuJoCo geom size ``[3]`` in metres (box: half sizes; cylinder: radius, half
        height; sphere: radius), each at most ``DISTRACTOR_MAX_HALF_SIZE_M``.
        rgba ``[4]`` in [0, 1]; position ``[3]`` of the body centre (metres, world); yaw (rad).
        Call ``observe()`` afterwards to see it. The next ``reset`` parks it again.
        """
        if not 0 <= slot < self.distractor_slots:
            raise EnvUserError(f"distractor slot {slot} does not exist; this env has distractor_slots={self.distractor_slots}")
        if shape not in DISTRACTOR_SHAPES:
            raise unknown_name("distractor shape", shape, DISTRACTOR_SHAPES)
        if np.max(size) > DISTRACTOR_MAX_HALF_SIZE_M:
            raise EnvUserError(f"distractor size {list(size)} is too large; valid: each at most {DISTRACTOR_MAX_HALF_SIZE_M} m")
        model, data = self.mj_model, self.mj_data
        geom = model.geom(f"distractor{slot}_geom").id
        model.geom_type[geom] = mjgeom(shape.upper())
        model.geom_size[geom] = size
        model.geom_rgba[geom] = rgba
        joint = model.joint(f"distractor{slot}_joint")
        qpos, qvel = joint.qposadr[0], joint.dofadr[0]
        data.qpos[qpos : qpos + 3] = position
        data.qpos[qpos + 3 : qpos + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        data.qvel[qvel : qvel + 6] = 0.0

    # --- arm and object placement hooks (the robot_init and layout perturbations) ---
    def sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state ``[S]`` (time, qpos, qvel)."""
        return np.array(self.sim.get_state().flatten())

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a ``sim_state()`` and recompute kinematics and contacts."""
        self.sim.set_state_from_flattened(state)
        self.sim.forward()

    def arm_joint_ranges(self) -> np.ndarray:
        """Limits ``[J, 2]`` (rad) of the arm's joints (the Panda: J = 7), in ``arm_qpos`` order."""
        robot = self.sim_env.robots[0]
        return np.array([self.mj_model.joint(name).range for name in robot.robot_joints])

    def arm_qpos(self) -> np.ndarray:
        """The arm's joint angles ``[J]`` (rad), base to wrist (not the gripper's fingers)."""
        return np.array(self.mj_data.qpos[self.sim_env.robots[0]._ref_joint_pos_indexes])

    def set_arm_qpos(self, qpos: np.ndarray) -> None:
        """Put the arm at joint angles ``qpos`` ``[J]`` (rad) at rest and recompute kinematics;
        the OSC controller holds the arm where it is next (its goals are deltas from the present
        pose). Call ``observe()`` afterwards to see it."""
        robot = self.sim_env.robots[0]
        self.mj_data.qpos[robot._ref_joint_pos_indexes] = qpos
        self.mj_data.qvel[robot._ref_joint_vel_indexes] = 0.0
        self.sim.forward()

    def robot_geoms(self) -> np.ndarray:
        """Ids ``[G]`` of every geom of the robot: arm, mount and gripper (its root body's subtree)."""
        return self._subtree(self.mj_model.body(self.sim_env.robots[0].robot_model.root_body).id)

    def _subtree(self, root: int) -> np.ndarray:
        """Ids ``[G]`` of the colliding geoms of body ``root`` and every body below it."""
        model = self.mj_model
        inside = np.zeros(model.nbody, dtype=bool)
        inside[root] = True
        for body in range(root + 1, model.nbody):  # MuJoCo numbers a body after its parent
            inside[body] = inside[model.body_parentid[body]]
        return np.flatnonzero(inside[model.geom_bodyid] & ((model.geom_contype > 0) | (model.geom_conaffinity > 0)))

    def penetrations(self, geoms: np.ndarray, depth_m: float) -> set[tuple[int, int]]:
        """The (geom of ``geoms``, other geom) pairs whose contact now interpenetrates deeper than
        ``depth_m`` metres (contacts among ``geoms`` themselves do not count)."""
        data, own = self.mj_data, set(int(g) for g in geoms)
        pairs = set()
        for contact in data.contact[: data.ncon]:
            first, second = int(contact.geom1), int(contact.geom2)
            if contact.dist < -depth_m and (first in own) != (second in own):
                pairs.add((first, second) if first in own else (second, first))
        return pairs

    def _placed_object(self, name: str) -> Any:
        """The robosuite object behind ``placement_ranges`` name ``name``."""
        return next(obj for obj, _ in self._placement_samplers() if self._placement_name(obj) == name)

    def _placement_name(self, obj: Any) -> str:
        """What ``task_bodies()`` calls robosuite object ``obj`` (here: its root body)."""
        return obj.root_body

    def _placement_samplers(self) -> list[tuple[Any, Any]]:
        """(object, the sampler that places it) for every object the reset's placement samplers
        (``sim_env.placement_initializer``, composite samplers unfolded) put on a surface."""
        pending, pairs = [getattr(self.sim_env, "placement_initializer", None)], []
        while pending:
            sampler = pending.pop(0)
            if sampler is None:
                continue
            if hasattr(sampler, "samplers"):
                pending.extend(sampler.samplers.values())
            else:
                pairs.extend((obj, sampler) for obj in sampler.mujoco_objects)
        return pairs

    def placement_ranges(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Task body -> (low ``[2]``, high ``[2]``): the world xy rectangle (metres) its placement
        sampler draws its free joint's position from, for each of ``task_bodies()`` with a free
        joint that a sampler puts on a surface (robosuite's ``x_range``/``y_range``, LIBERO's BDDL
        region ranges, shrunk by the object's radius where the sampler does, about its reference)."""
        ranges = {}
        for obj, sampler in self._placement_samplers():
            name = self._placement_name(obj)
            if name not in self.task_bodies() or not obj.joints or self._free_joint(obj) is None:
                continue
            x_ranges = getattr(sampler, "x_ranges", [getattr(sampler, "x_range", None)])
            y_ranges = getattr(sampler, "y_ranges", [getattr(sampler, "y_range", None)])
            shrink = obj.horizontal_radius if sampler.ensure_object_boundary_in_range else 0.0
            bounds = np.array([[[r[0] + shrink, r[1] - shrink] for r in axis] for axis in (x_ranges, y_ranges)])  # [2, R, 2]
            reference = np.asarray(sampler.reference_pos, dtype=np.float64)[:2]
            ranges[name] = (bounds.min(axis=(1, 2)) + reference, bounds.max(axis=(1, 2)) + reference)
        return ranges

    def _free_joint(self, obj: Any) -> int | None:
        """qpos address of robosuite object ``obj``'s free joint (None without one)."""
        joint = self.mj_model.joint(obj.joints[-1])
        return int(joint.qposadr[0]) if joint.type[0] == 0 else None  # mjJNT_FREE

    def object_position(self, name: str) -> np.ndarray:
        """World position ``[3]`` (metres) of ``placement_ranges`` object ``name``'s free joint."""
        address = self._free_joint(self._placed_object(name))
        return np.array(self.mj_data.qpos[address : address + 3])

    def move_object(self, name: str, xy: np.ndarray) -> None:
        """Put ``placement_ranges`` object ``name`` at world xy ``[2]`` (metres), its height and
        orientation kept, at rest; recompute kinematics and contacts."""
        obj = self._placed_object(name)
        joint = self.mj_model.joint(obj.joints[-1])
        self.mj_data.qpos[joint.qposadr[0] : joint.qposadr[0] + 2] = xy
        self.mj_data.qvel[joint.dofadr[0] : joint.dofadr[0] + 6] = 0.0
        self.sim.forward()

    def object_geoms(self, name: str) -> np.ndarray:
        """Ids ``[G]`` of the colliding geoms of ``placement_ranges`` object ``name``."""
        return self._subtree(self.mj_model.body(self._placed_object(name).root_body).id)

    def settle(self, steps: int) -> None:
        """Simulate ``steps`` env steps of no arm motion with the gripper open, without rendering
        (objects come to rest). Call ``observe()`` afterwards."""
        self.set_image_rendering(False)
        try:
            for _ in range(steps):
                self.sim_env.step(SETTLE_ACTION)
        finally:
            self.set_image_rendering(True)

    def _finger_axis(self, robot: Any) -> np.ndarray:
        """Unit ``[2]`` world-xy direction the gripper's fingers open along: the grip site's x axis
        (the Panda's finger pads move along it; its y axis runs along the pads' faces)."""
        rotation = self.sim.data.site_xmat[robot.eef_site_id].reshape(3, 3)
        axis = rotation[:2, 0]
        return axis / max(float(np.linalg.norm(axis)), 1e-6)

    def _wrist_yaw_range(self, robot: Any) -> np.ndarray:
        """(most negative, most positive) rotation ``[2]`` (rad) of the gripper about world z that
        the arm's last joint still allows before its limits, from here (the joint axis points
        about straight down while the gripper does, so its turns are world-z turns of opposite sign)."""
        joint = self.mj_model.joint(robot.robot_joints[-1])
        position = float(self.mj_data.qpos[joint.qposadr[0]])
        return np.sort((joint.range - position) * float(self.mj_data.xaxis[joint.id, 2]))

    def _disable_costly_render_effects(self) -> None:
        """Rebuild the offscreen GL context without multisampling; drop reflections and shadows (~3x faster)."""
        import mujoco

        context = self.sim._render_context_offscreen
        model = self.sim.model._model
        model.vis.quality.offsamples = 0
        context.con.free()
        context.con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        context.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0

    # --- hooks ---
    def task_bodies(self) -> tuple[str, ...]:
        raise NotImplementedError

    def body_position(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def _success(self, done: bool) -> bool:
        """Whether the task is solved now; ``done`` is what ``sim_env.step`` returned."""
        raise NotImplementedError

    # --- observation ---
    def object_image_xy(self) -> dict[str, list[list[float]]]:
        """Where the task objects' centres appear in each camera image: camera -> ``N`` (x, y)
        pairs (x right, y down; plain floats, so infos stay JSON data) in [0, 1] image units, the
        compressors' coordinate convention (pixel i spans [i, i+1) / size), N =
        ``len(task_bodies())``. Points behind or outside the camera may fall outside [0, 1].
        Privileged: for diagnostics only."""
        from robosuite.utils.camera_utils import get_camera_transform_matrix

        centres = np.array([self.body_position(body) for body in self.task_bodies()]).reshape(-1, 3)
        homogeneous = np.concatenate([centres, np.ones((len(centres), 1))], axis=1)
        image_xy = {}
        for camera in self.cameras:
            pixels = homogeneous @ get_camera_transform_matrix(self.sim, camera, self.image_size, self.image_size).T
            image_xy[camera] = (pixels[:, :2] / pixels[:, 2:3] / self.image_size).tolist()  # principal point at W/2
        return image_xy

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        images = {camera: np.ascontiguousarray(raw[f"{camera}_image"][::-1]) for camera in self.cameras}
        proprio = np.concatenate([raw["robot0_eef_pos"], raw["robot0_eef_quat"], raw["robot0_gripper_qpos"]])
        return {"images": images, "proprio": proprio.astype(np.float32)}

    def _info(self, success: bool) -> dict[str, Any]:
        return {"success": success, "task": self.task, "instruction": self.instruction, "object_xy": self.object_image_xy()}

    # --- gymnasium API ---
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> None:  # type: ignore[override]
        """What every subclass's ``reset`` does first (``super().reset(seed=seed)``), before it
        resets ``sim_env``: seed ``np_random`` (gymnasium) and make this env's GL context current."""
        super().reset(seed=seed)
        self._make_render_context_current()

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._make_render_context_current()
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        raw, reward, done, _ = self.sim_env.step(action)
        self._steps += 1
        success = self._success(bool(done))
        self._last_obs = self._observation(raw)
        terminated = success and self.terminate_on_success
        truncated = self._steps >= self.max_steps and not terminated
        return self._last_obs, float(reward), terminated, truncated, self._info(success)

    def set_image_rendering(self, enabled: bool) -> None:
        """Render the camera images on the following ``step`` calls (default) or not.

        Off, a step keeps simulating, checking success and projecting ``object_xy`` but skips
        the renders: its ``images`` are the last rendered frames (stale). The camera
        observables keep their sampling clocks, so the frame rendered once it is back on is
        the same pixels as with rendering on throughout. Turn it back on before ``reset``."""
        for camera in self.cameras:
            observable = self.sim_env._observables[f"{camera}_image"]
            real = getattr(observable, "_real_sensor", None)
            if enabled and real is not None:
                observable._sensor, observable._real_sensor = real, None
            elif not enabled and real is None:

                def stale(_cache: dict, _observable: Any = observable) -> np.ndarray:
                    return _observable._current_observed_value

                stale.__modality__ = observable._sensor.__modality__
                observable._real_sensor, observable._sensor = observable._sensor, stale

    def render(self) -> np.ndarray | None:
        """The first camera's latest frame, uint8 ``[H, W, 3]``."""
        if self._last_obs is None:
            return None
        return self._last_obs["images"][self.cameras[0]]
