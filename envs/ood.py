"""Out-of-distribution perturbations: Gymnasium wrappers that act at reset.

    env = envs.ood.make("robosuite/Lift", "lighting+distractors", severity=0.5, image_size=84)
    env = envs.ood.wrap(envs.make("robosuite/Lift", distractor_slots=4), "lighting+distractors")

A spec is one name of ``PERTURBATIONS`` or several joined by '+', applied in order (the
first wraps the env, the next wraps that); "clean" or "" is no perturbation. Each wrapper

- draws its perturbation after the inner reset from its own RNG, seeded from (reset seed,
  its name, ``wrap``'s seed when given) through ``np.random.SeedSequence``: the same reset
  seed gives the same perturbation, and composing does not change any one's draw. An
  unseeded reset continues the stream;
- edits MuJoCo model fields and re-renders (the env restores those fields at every reset,
  so nothing accumulates), or transforms the images or the instruction;
- reports what it drew, JSON-serialisable, as ``info["ood"][name] = {"severity": s, ...}``
  on reset and on every step;
- is the identity at severity 0; severity 1 is the largest perturbation below.

What severity s in [0, 1] scales:
  lighting      scene lights and headlight: intensity x 3**U(-s, s); per-channel colour
                tint 1 + U(-0.4, 0.4) s; each light's direction turned s * 45 deg and its
                position moved s * 0.5 m, in random directions.
  distractors   max(1, round(4 s)) primitives (box, cylinder or sphere; random colour;
                half-size 1.5 cm to 1.5 + 2.5 s cm) standing on the work surface within
                the robot's reach and 25 cm of the pick object, >= 6 cm from the task's
                objects and 1 cm from every other scene object and each other.
                The env needs that many ``distractor_slots`` (``make`` builds it so).
  camera        each rendered world-mounted camera (agentview, frontview, birdview,
                sideview; not the wrist camera) moved s * 10 cm and turned s * 10 deg, in
                random directions, and its field of view scaled by 1 + U(-0.2, 0.2) s.
  robot_init    the arm's 7 joint angles offset together by s * 0.4 rad (the offset's Euclidean
                norm) in a random direction of joint space, after the env's reset (LIBERO: after
                its stored state and settling): the episode starts there, the arm at rest. A draw
                within 0.05 rad of a joint limit, or putting the arm into anything (a contact
                more than 1 mm deep that was not there), is redrawn (at most 50 times).
  layout        each task object with a placement region (robosuite: its placement sampler's
                x/y range; tabletop: its jitter square; LIBERO: its BDDL region, as LIBERO's
                sampler draws from it; each widened about its centre to at least 10 cm across)
                moved the fraction s of the way from where the reset put it to a point drawn
                uniformly in that region (height and orientation kept), then 10 env steps of
                no motion settle it. A draw that puts an object more than 2 mm deep into
                anything it was not in the unmoved scene (as reset, or settled alike), or lets
                one slide more than 1 cm or drop more than 2 cm while settling, is redrawn (at
                most 20 times).
  table         each work-surface material (table top; the bins for PickPlaceCan; LIBERO's table or floor) tinted
                from its colour towards a random colour by s; with probability s its
                texture is swapped for another arena surface's.
  object_color  task objects drawn in a flat colour moved from their mean texture colour
                towards a random colour by s.
  noise         Gaussian blur (sigma = s * 2% of the image width), then Gaussian pixel noise
                (std s * 25 grey levels) drawn afresh for every observation.
  language      the instruction replaced by one of the ceil(s * n) paraphrases closest to it
                (of the task's n, listed closest first; LIBERO's: ``instruction_paraphrases``).
A draw that finds no valid placement in its tries leaves the scene as the reset made it (robot_init:
offset 0; layout: no objects in the report).
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np

from envs.errors import EnvUserError, unknown_name

CLEAN_SPECS = ("clean", "")
MAX_DISTRACTORS = 4  # objects placed by ``distractors`` at severity 1
PERTURBATIONS: dict[str, type[Perturbation]] = {}


def _register(name: str) -> Callable[[type[Perturbation]], type[Perturbation]]:
    def add(cls: type[Perturbation]) -> type[Perturbation]:
        cls.name = name
        PERTURBATIONS[name] = cls
        return cls

    return add


def names() -> list[str]:
    """All perturbation names, sorted (the spec "clean" is not among them)."""
    return sorted(PERTURBATIONS)


def check_severity(severity: Any) -> float:
    """``severity`` as a float, or an ``EnvUserError`` unless it is a number in [0, 1]."""
    if isinstance(severity, bool) or not isinstance(severity, (int, float, np.integer, np.floating)) or not 0 <= severity <= 1:
        raise EnvUserError(f"severity={severity!r} is out of range; valid: a number in [0, 1]")
    return float(severity)


def check_seed(seed: Any) -> int | None:
    """``seed`` as an int (or None), or an ``EnvUserError`` unless it is a non-negative integer."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise EnvUserError(f"seed={seed!r} is invalid; valid: None or an integer >= 0")
    return None if seed is None else int(seed)


def parse(spec: str) -> list[str]:
    """The perturbation names in ``spec`` ("lighting+distractors"), in order; [] for clean."""
    if spec in CLEAN_SPECS:
        return []
    parts = [part.strip() for part in spec.split("+")]
    for part in parts:
        if part not in PERTURBATIONS:
            if "," in part:
                raise EnvUserError(f"perturbation spec {spec!r}: join names with '+', not ','; valid: {', '.join(names())}")
            raise unknown_name("perturbation", part, [*PERTURBATIONS, "clean"])
    repeated = sorted({part for part in parts if parts.count(part) > 1})
    if repeated:
        raise EnvUserError(
            f"perturbation spec {spec!r} names {', '.join(repeated)} more than once; valid: each name at most once"
        )
    return parts


def wrap(env: gym.Env, spec: str, severity: float = 0.5, seed: int | None = None) -> gym.Env:
    """``env`` wrapped in the perturbations of ``spec`` (see the module docstring).

    severity: in [0, 1], shared by all of them. seed: mixed into every draw, so one reset
    seed can be paired with several perturbation draws; None: draws depend on the reset
    seed alone. Clean specs return ``env`` itself.
    """
    severity = check_severity(severity)
    for name in parse(spec):
        env = PERTURBATIONS[name](env, severity=severity, seed=seed)
    return env


def make(env_name: str, spec: str = "clean", severity: float = 0.5, seed: int | None = None, **env_kwargs: Any) -> gym.Env:
    """``envs.make(env_name, **env_kwargs)`` built ready for ``spec`` (with
    ``distractor_slots=MAX_DISTRACTORS`` unless given when it has distractors), then wrapped."""
    from envs.registry import make as make_env

    if "distractors" in parse(spec):
        env_kwargs.setdefault("distractor_slots", MAX_DISTRACTORS)
    return wrap(make_env(env_name, **env_kwargs), spec, severity=severity, seed=seed)


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.ravel(values)]


def _random_unit(rng: np.random.Generator, size: int = 3) -> np.ndarray:
    vector = rng.normal(size=size)
    return vector / np.linalg.norm(vector)


class Perturbation(gym.Wrapper):
    """One perturbation: draws at reset, reports in ``info["ood"][name]``.

    Subclasses set ``name`` (by ``_register``) and override ``_perturb(rng) -> report``
    (called after the inner reset when severity > 0), ``_transform`` (observations) or
    ``_edit_info``. ``edits_scene`` ones need the unwrapped env's MuJoCo model hooks, one
    interface for robosuite, tabletop and LIBERO envs (``envs.sim_base.SimEnv``: ``mj_model``,
    ``observe()``, ``place_distractor``, and the scene geometry each env provides), and
    re-render after drawing.
    """

    name: ClassVar[str] = ""
    edits_scene: ClassVar[bool] = False

    def __init__(self, env: gym.Env, severity: float = 0.5, seed: int | None = None):
        super().__init__(env)
        self.severity = check_severity(severity)
        self.seed = check_seed(seed)
        self.report: dict[str, Any] = {"severity": self.severity}
        self._rng: np.random.Generator | None = None
        if self.edits_scene and not hasattr(env.unwrapped, "mj_model"):
            raise EnvUserError(
                f"perturbation {self.name!r} edits the MuJoCo scene, which {type(env.unwrapped).__name__} does not expose; "
                "use a robosuite/*, tabletop_* or libero/* env (envs.sim_base.SimEnv)"
            )
        self.scene = env.unwrapped

    def _episode_rng(self, reset_seed: int | None) -> np.random.Generator:
        """A fresh RNG from (reset seed, name, wrap seed) on a seeded reset; else the running one
        (the first unseeded reset starts from (name, wrap seed), or OS entropy without a wrap seed)."""
        if reset_seed is None and self._rng is not None:
            return self._rng
        key = [zlib.crc32(self.name.encode())] + ([self.seed] if self.seed is not None else [])
        if reset_seed is not None:
            entropy: list[int] | None = [int(reset_seed), *key]
        else:
            entropy = key if self.seed is not None else None
        self._rng = np.random.default_rng(np.random.SeedSequence(entropy))
        return self._rng

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        rng = self._episode_rng(seed)
        self.report = {"severity": self.severity}
        if self.severity > 0:
            self.report.update(self._perturb(rng))
            if self.edits_scene:
                obs = self.env.get_wrapper_attr("observe")()
        return self._transform(obs), self._with_report(info)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._transform(obs), reward, terminated, truncated, self._with_report(info)

    def observe(self) -> dict[str, Any]:
        """The current observation re-rendered through this wrapper and those inside it."""
        return self._transform(self.env.get_wrapper_attr("observe")())

    def _with_report(self, info: dict) -> dict:
        info = self._edit_info(dict(info))
        info["ood"] = {**info.get("ood", {}), self.name: dict(self.report)}
        return info

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        return {}

    def _transform(self, obs: dict[str, Any]) -> dict[str, Any]:
        return obs

    def _edit_info(self, info: dict) -> dict:
        return info


@_register("lighting")
class Lighting(Perturbation):
    """Scene lights and the headlight: intensity, colour tint, direction and position."""

    edits_scene = True
    MAX_INTENSITY_FACTOR = 3.0
    MAX_TINT = 0.4
    MAX_TURN_DEG = 45.0
    MAX_SHIFT_M = 0.5

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        import mujoco

        model, s = self.scene.mj_model, self.severity
        intensity = float(self.MAX_INTENSITY_FACTOR ** rng.uniform(-s, s))
        tint = 1.0 + rng.uniform(-self.MAX_TINT, self.MAX_TINT, 3) * s
        for field in ("light_diffuse", "light_ambient", "light_specular"):
            getattr(model, field)[:] *= intensity * tint
        for field in ("ambient", "diffuse", "specular"):
            getattr(model.vis.headlight, field)[:] *= intensity * tint
        lights = []
        for light in range(model.nlight):
            direction = model.light_dir[light] / np.linalg.norm(model.light_dir[light])
            axis = np.cross(direction, _random_unit(rng))  # perpendicular: the light turns by the full angle
            axis /= np.linalg.norm(axis)
            turn = np.zeros(4)
            mujoco.mju_axisAngle2Quat(turn, axis, math.radians(s * self.MAX_TURN_DEG))
            mujoco.mju_rotVecQuat(model.light_dir[light], direction.copy(), turn)
            model.light_pos[light] += _random_unit(rng) * s * self.MAX_SHIFT_M
            lights.append({"dir": _floats(model.light_dir[light]), "pos": _floats(model.light_pos[light])})
        return {"intensity": intensity, "tint": _floats(tint), "turn_deg": s * self.MAX_TURN_DEG, "lights": lights}


@_register("camera")
class Camera(Perturbation):
    """Pose and field-of-view jitter of every rendered camera mounted on the world (not the wrist camera)."""

    edits_scene = True
    MAX_SHIFT_M = 0.10
    MAX_TURN_DEG = 10.0
    MAX_FOV_CHANGE = 0.2  # relative change of the vertical field of view at severity 1

    def __init__(self, env: gym.Env, severity: float = 0.5, seed: int | None = None):
        super().__init__(env, severity, seed)
        model = self.scene.mj_model
        self.cameras = [c for c in self.scene.cameras if model.cam_bodyid[model.camera(c).id] == 0]
        if not self.cameras:
            rendered = ", ".join(self.scene.cameras)
            raise EnvUserError(f"perturbation 'camera' moves world-mounted cameras, but this env renders only {rendered}")

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        import mujoco

        model, s = self.scene.mj_model, self.severity
        report = {}
        for camera in self.cameras:
            cam = model.camera(camera).id
            shift = _random_unit(rng) * s * self.MAX_SHIFT_M
            axis = _random_unit(rng)  # in the camera frame
            turn = np.zeros(4)
            mujoco.mju_axisAngle2Quat(turn, axis, math.radians(s * self.MAX_TURN_DEG))
            model.cam_pos[cam] += shift
            mujoco.mju_mulQuat(model.cam_quat[cam], model.cam_quat[cam].copy(), turn)
            model.cam_fovy[cam] *= 1.0 + rng.uniform(-1.0, 1.0) * s * self.MAX_FOV_CHANGE
            report[camera] = {
                "shift_m": _floats(shift),
                "turn_axis": _floats(axis),
                "turn_deg": s * self.MAX_TURN_DEG,
                "fovy_deg": float(model.cam_fovy[cam]),
            }
        return {"cameras": report}


@_register("table")
class Table(Perturbation):
    """Work-surface colour (tint towards a random colour) and texture (another arena surface's)."""

    edits_scene = True

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        model, s = self.scene.mj_model, self.severity
        arena = self.scene.arena_materials()
        report = {}
        for material, geoms in self.scene.surface_geoms().items():
            original = model.mat_rgba[model.material(material).id, :3]
            colour = original + s * (rng.uniform(0.0, 1.0, 3) - original)
            others = sorted(name for name in arena if name != material)
            swap, replacement = rng.random() < s, others[rng.integers(len(others))]
            texture = replacement if swap else material
            # A geom rgba other than MuJoCo's default (0.5 0.5 0.5 1) overrides its material's.
            model.geom_rgba[geoms, :3] = colour
            model.geom_matid[geoms] = arena[texture]
            report[material] = {"rgb": _floats(colour), "texture": texture}
        return {"surfaces": report}


@_register("object_color")
class ObjectColor(Perturbation):
    """Task objects in a flat colour between their own (mean texture) colour and a random one."""

    edits_scene = True

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        model, s = self.scene.mj_model, self.severity
        report = {}
        for body in self.scene.task_bodies():
            geoms = self.scene.visual_geoms(body)
            original = _appearance_rgb(model, int(geoms[0]))
            colour = original + s * (rng.uniform(0.0, 1.0, 3) - original)
            model.geom_matid[geoms] = -1
            model.geom_rgba[geoms, :3] = colour
            report[body] = {"rgb": _floats(colour), "original_rgb": _floats(original)}
        return {"objects": report}


def _appearance_rgb(model: Any, geom: int) -> np.ndarray:
    """Mean colour ``[3]`` in [0, 1] geom ``geom`` is drawn with: its material's rgba times
    the mean of the material's texture, or its own rgba without a material."""
    import mujoco

    material = model.geom_matid[geom]
    if material < 0:
        return np.array(model.geom_rgba[geom, :3])
    colour = np.array(model.mat_rgba[material, :3])
    texture = model.mat_texid[material, mujoco.mjtTextureRole.mjTEXROLE_RGB]
    if texture >= 0:
        start = model.tex_adr[texture]
        channels = model.tex_nchannel[texture]
        count = model.tex_width[texture] * model.tex_height[texture] * channels
        pixels = model.tex_data[start : start + count].reshape(-1, channels)[::7, :3]  # a subsample is plenty
        colour *= pixels.mean(axis=0) / 255.0
    return colour


@_register("distractors")
class Distractors(Perturbation):
    """Extra primitive objects on the work surface, clear of the task objects and each other."""

    edits_scene = True
    SHAPES = ("box", "cylinder", "sphere")
    MIN_HALF_SIZE_M = 0.015
    MAX_EXTRA_HALF_SIZE_M = 0.025  # at severity 1
    TASK_CLEARANCE_M = 0.06  # room for the open gripper around task objects
    NEAR_TASK_M = 0.25  # objects stand within this of the pick object: in view and in the way
    GAP_M = 0.01
    EDGE_MARGIN_M = 0.02
    PLACEMENT_TRIES = 200

    def __init__(self, env: gym.Env, severity: float = 0.5, seed: int | None = None):
        super().__init__(env, severity, seed)
        self.count = max(1, round(self.severity * MAX_DISTRACTORS)) if self.severity > 0 else 0
        slots = getattr(self.scene, "distractor_slots", 0)
        if slots < self.count:
            raise EnvUserError(
                f"perturbation 'distractors' at severity {self.severity} places {self.count} objects but the env has "
                f"distractor_slots={slots}; build it with distractor_slots={MAX_DISTRACTORS} (or use envs.ood.make)"
            )

    def _draw_shape(self, rng: np.random.Generator) -> tuple[str, np.ndarray, float, float]:
        """(shape, MuJoCo size [3] m, half height m, footprint radius m) of one object."""
        shape = self.SHAPES[rng.integers(len(self.SHAPES))]
        half = rng.uniform(self.MIN_HALF_SIZE_M, self.MIN_HALF_SIZE_M + self.severity * self.MAX_EXTRA_HALF_SIZE_M, 3)
        if shape == "box":
            return shape, half, half[2], float(np.linalg.norm(half[:2]))
        if shape == "cylinder":
            return shape, np.array([half[0], half[2], 0.0]), half[2], half[0]
        return shape, np.array([half[0], 0.0, 0.0]), half[0], half[0]

    def _find_spot(
        self, rng: np.random.Generator, region: Any, near_xy: np.ndarray, occupied: list[tuple[np.ndarray, float]], radius: float
    ) -> np.ndarray | None:
        """A free xy ``[2]`` (metres) on the surface, within reach and ``NEAR_TASK_M`` of
        ``near_xy``, for an object of footprint ``radius``; None when none of the tries is."""
        room = region.half_extent_xy - radius - self.EDGE_MARGIN_M
        candidates = region.centre_xy + rng.uniform(-1.0, 1.0, (self.PLACEMENT_TRIES, 2)) * room
        free = np.linalg.norm(candidates - region.reach_centre_xy, axis=1) <= region.reach_radius_m
        free &= np.linalg.norm(candidates - near_xy, axis=1) <= self.NEAR_TASK_M
        for centre, keep_out in occupied:
            free &= np.linalg.norm(candidates - centre, axis=1) >= keep_out + radius
        return candidates[np.argmax(free)] if free.any() else None

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        region = self.scene.placement_region()
        footprints = self.scene.task_footprints()  # one per ``scene_bodies()``, in its order
        task = set(self.scene.task_bodies())
        clearances = [self.TASK_CLEARANCE_M if body in task else self.GAP_M for body in self.scene.scene_bodies()]
        occupied = [(xy, r + clearance) for (xy, r), clearance in zip(footprints, clearances)]
        bodies = list(self.scene.scene_bodies())
        pick = self.scene.task_bodies()[0]
        near_xy = footprints[bodies.index(pick) if pick in bodies else 0][0]
        objects = []
        for _ in range(self.count):
            shape, size, half_height, radius = self._draw_shape(rng)
            rgba = np.append(rng.uniform(0.0, 1.0, 3), 1.0)
            yaw = float(rng.uniform(-np.pi, np.pi))
            xy = self._find_spot(rng, region, near_xy, occupied, radius)
            if xy is None:
                continue
            position = np.array([*xy, region.surface_z + half_height])
            self.scene.place_distractor(len(objects), shape, size, rgba, position, yaw)
            occupied.append((xy, radius + self.GAP_M))
            objects.append({"shape": shape, "size_m": _floats(size), "rgba": _floats(rgba), "pos": _floats(position), "yaw": yaw})
        return {"objects": objects}


@_register("robot_init")
class RobotInit(Perturbation):
    """The arm's initial joint angles offset: the episode starts from a perturbed arm configuration."""

    edits_scene = True
    MAX_OFFSET_RAD = 0.4  # Euclidean norm of the joint-angle offset at severity 1
    LIMIT_MARGIN_RAD = 0.05  # perturbed angles stay this far inside the joint limits
    MAX_PENETRATION_M = 0.001  # deeper contacts of the arm with anything else reject a draw
    TRIES = 50

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        scene, norm = self.scene, self.severity * self.MAX_OFFSET_RAD
        start, limits, robot = scene.arm_qpos(), scene.arm_joint_ranges(), scene.robot_geoms()
        touching = scene.penetrations(robot, self.MAX_PENETRATION_M)  # before the offset: not its doing
        for tries in range(1, self.TRIES + 1):
            offset = _random_unit(rng, len(start)) * norm
            qpos = start + offset
            if np.any(qpos < limits[:, 0] + self.LIMIT_MARGIN_RAD) or np.any(qpos > limits[:, 1] - self.LIMIT_MARGIN_RAD):
                continue
            scene.set_arm_qpos(qpos)
            if scene.penetrations(robot, self.MAX_PENETRATION_M) <= touching:
                return {"offset_rad": _floats(offset), "norm_rad": norm, "qpos_rad": _floats(qpos), "tries": tries}
        scene.set_arm_qpos(start)  # no draw was free: the arm stays where the reset put it
        return {"offset_rad": [0.0] * len(start), "norm_rad": 0.0, "qpos_rad": _floats(start), "tries": self.TRIES}


@_register("layout")
class Layout(Perturbation):
    """The task's objects moved within their placement regions, settled, and checked to rest
    there without interpenetrating anything."""

    edits_scene = True
    MIN_HALF_EXTENT_M = 0.05  # regions narrower than 10 cm (LIBERO's are 2-5 cm) are widened to this about their centre
    SETTLE_STEPS = 10  # env steps (0.5 s) of no motion after moving
    MAX_SLIDE_M = 0.01  # a moved object settling further than this sideways from where it was put rejects the draw,
    MAX_DROP_M = 0.02  # and so does one dropping further (robosuite puts objects 1 cm above the table: they drop that)
    MAX_PENETRATION_M = 0.002  # so does a contact (not there before) deeper than this
    TRIES = 20

    def __init__(self, env: gym.Env, severity: float = 0.5, seed: int | None = None):
        super().__init__(env, severity, seed)
        if not self.scene.placement_ranges():
            raise EnvUserError(
                f"perturbation 'layout' moves the task's objects within their placement regions, but no task object of "
                f"{self.scene.task} ({', '.join(self.scene.task_bodies())}) is placed by a sampler on a surface"
            )

    def regions(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Object -> (low ``[2]``, high ``[2]``) world xy (metres) it may be moved to: its
        ``placement_ranges()`` rectangle, widened about its centre to ``MIN_HALF_EXTENT_M`` per axis."""
        regions = {}
        for name, (low, high) in self.scene.placement_ranges().items():
            centre, half = (low + high) / 2, np.maximum((high - low) / 2, self.MIN_HALF_EXTENT_M)
            regions[name] = (centre - half, centre + half)
        return regions

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        scene, s = self.scene, self.severity
        regions, saved = self.regions(), scene.sim_state()
        geoms = {name: scene.object_geoms(name) for name in regions}
        start = {name: scene.object_position(name) for name in regions}
        touching = {name: scene.penetrations(geoms[name], self.MAX_PENETRATION_M) for name in regions}
        scene.settle(self.SETTLE_STEPS)  # what the unmoved scene settles into (a light object sinks into soft contacts)
        for name in regions:
            touching[name] |= scene.penetrations(geoms[name], self.MAX_PENETRATION_M)
        for tries in range(1, self.TRIES + 1):
            scene.set_sim_state(saved)
            placed = {name: start[name].copy() for name in regions}
            for name, (low, high) in regions.items():
                placed[name][:2] += s * (rng.uniform(low, high) - start[name][:2])
                scene.move_object(name, placed[name][:2])
            if not self._clear(geoms, touching):
                continue
            scene.settle(self.SETTLE_STEPS)
            settled = {name: scene.object_position(name) for name in regions}
            if self._clear(geoms, touching) and all(
                np.linalg.norm(settled[name][:2] - placed[name][:2]) <= self.MAX_SLIDE_M
                and placed[name][2] - settled[name][2] <= self.MAX_DROP_M
                for name in regions
            ):
                objects = {
                    name: {
                        "from_xy": _floats(start[name][:2]),
                        "to_xy": _floats(placed[name][:2]),
                        "settled_xy": _floats(settled[name][:2]),
                        "shift_m": float(np.linalg.norm(placed[name] - start[name])),
                        "region": [_floats(low), _floats(high)],
                    }
                    for name, (low, high) in regions.items()
                }
                return {"objects": objects, "tries": tries}
        scene.set_sim_state(saved)  # no draw was valid: the objects stay where the reset put them
        return {"objects": {}, "tries": self.TRIES}

    def _clear(self, geoms: dict[str, np.ndarray], touching: dict[str, set]) -> bool:
        """No moved object interpenetrates anything deeper than ``MAX_PENETRATION_M`` that it did
        not in the unmoved scene (as the reset left it, or settled)."""
        return all(self.scene.penetrations(ids, self.MAX_PENETRATION_M) <= touching[name] for name, ids in geoms.items())


@_register("noise")
class Noise(Perturbation):
    """Sensor noise on every image: Gaussian blur, then Gaussian pixel noise (pure numpy)."""

    MAX_NOISE_STD = 25.0  # grey levels of 255
    MAX_BLUR_FRACTION = 0.02  # blur sigma as a fraction of the image width

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        return {"noise_std": self.severity * self.MAX_NOISE_STD, "blur_sigma_fraction": self.severity * self.MAX_BLUR_FRACTION}

    def _transform(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self.severity == 0:
            return obs
        return {**obs, "images": {camera: self._corrupt(image) for camera, image in obs["images"].items()}}

    def _corrupt(self, image: np.ndarray) -> np.ndarray:
        """Blurred, noisy copy of uint8 ``[H, W, 3]``."""
        blurred = _gaussian_blur(image.astype(np.float32), self.severity * self.MAX_BLUR_FRACTION * image.shape[1])
        noisy = blurred + self._rng.normal(0.0, self.severity * self.MAX_NOISE_STD, image.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of float ``[H, W, C]`` with std ``sigma`` pixels (reflected edges)."""
    radius = math.ceil(3 * sigma)
    if radius == 0:
        return image
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    for axis in (0, 1):
        pad = [(radius, radius) if a == axis else (0, 0) for a in range(image.ndim)]
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(image, pad, mode="reflect"), 2 * radius + 1, axis=axis)
        image = windows @ weights
    return image


# Paraphrases of each task's instruction, closest first (``language`` draws from the head).
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "Lift": (
        "pick up the red cube",
        "raise the red cube",
        "lift the red block off the table",
        "grab the red cube and lift it up",
        "take hold of the small red box and raise it into the air",
        "get the crimson block up off the table",
    ),
    "Stack": (
        "put the red cube on top of the green cube",
        "stack the red block on the green block",
        "place the red cube onto the green one",
        "pick up the red cube and set it down on the green cube",
        "build a two-block tower with the red cube above the green cube",
        "the green cube should end up underneath the red one",
    ),
    "PickPlaceCan": (
        "pick up the can and put it in its bin",
        "move the can into its bin",
        "place the can in the bin where it belongs",
        "grab the soda can and drop it into the correct bin",
        "transfer the can to its compartment in the other bin",
        "put the drink can away in the matching bin",
    ),
}


# Rewordings of any other instruction (LIBERO's), closest first: a "pick up the X and place it Y"
# one through the tabletop suites' templates, any other one framed.
PICK_AND_PLACE = re.compile(r"^pick up the (?P<subject>.+?) and place it (?P<destination>.+)$")
FRAMINGS = (
    "please {}",
    "{}, please",
    "your task: {}",
    "could you {}?",
    "i need you to {}",
    "go ahead and {} now",
)


def instruction_paraphrases(instruction: str) -> tuple[str, ...]:
    """Rewordings of ``instruction``, closest first (the ``language`` perturbation for envs
    without their own, such as LIBERO's: "pick up the X and place it Y" as the tabletop
    suites reword theirs, any other instruction framed: "please ...", "could you ...?")."""
    from envs.tabletop import PARAPHRASE_TEMPLATES

    match = PICK_AND_PLACE.match(instruction)
    if match:
        return tuple(template.format(**match.groupdict()) for template in PARAPHRASE_TEMPLATES)
    return tuple(framing.format(instruction) for framing in FRAMINGS)


@_register("language")
class Language(Perturbation):
    """The instruction (``info["instruction"]``) replaced by a paraphrase, on reset and every step."""

    def __init__(self, env: gym.Env, severity: float = 0.5, seed: int | None = None):
        super().__init__(env, severity, seed)
        task, instruction = getattr(self.scene, "task", None), getattr(self.scene, "instruction", None)
        if not isinstance(instruction, str) or not instruction:
            raise EnvUserError(
                f"perturbation 'language' rewords the instruction, but {type(self.scene).__name__} (task {task!r}) has none; "
                "use a robosuite/*, tabletop_* or libero/* env"
            )
        self.paraphrases = PARAPHRASES.get(task) or getattr(self.scene, "paraphrases", ()) or instruction_paraphrases(instruction)
        self.instruction: str | None = None  # stays None at severity 0

    def _perturb(self, rng: np.random.Generator) -> dict[str, Any]:
        closest = math.ceil(self.severity * len(self.paraphrases))
        self.instruction = self.paraphrases[rng.integers(closest)]
        return {"instruction": self.instruction}

    def _edit_info(self, info: dict) -> dict:
        if self.instruction is not None:
            info["instruction"] = self.instruction
        return info
