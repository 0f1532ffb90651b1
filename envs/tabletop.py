"""Offline tabletop suites modelled on LIBERO, built from robosuite 1.4's own objects.

    tabletop_spatial/<0-9>   (libero_spatial-like) two identical red blocks, a plate, a
                             green box and a blue cylinder; the instruction names the block
                             to move by its spatial relation: "pick up the red block next to
                             the green box and place it on the plate".
    tabletop_object/<0-9>    (libero_object-like) four different objects and a basket:
                             "pick up the bread and place it in the basket".

Each task is a fixed layout: every object has a region (centre and jitter, metres, table
frame: x towards the agentview camera, y to the image's right) and a yaw range. Like
LIBERO, each task ships 50 fixed initial states (``envs/tabletop_init/<suite>/<id>.npy``,
float64 ``[50, n_objects, 3]`` = x, y, yaw), drawn once from those regions by
``make_init_states`` and stored, so evaluations are comparable across versions;
``init_state="sampled"`` draws a fresh layout from the regions instead (demonstrations are
collected that way, so a policy is never trained on its evaluation states).

Everything robosuite-specific about rendering, cameras, perturbations and the observation
contract is ``RobosuiteEnv``'s; this module only adds the scene class, the task specs, the
initial states and the success predicates (target resting on the plate / in the basket,
not held).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs.errors import EnvUserError, unknown_name
from envs.robosuite_env import RobosuiteEnv, TaskSpec
from envs.sim_base import STORED_INIT_STATE_MODES, choose_init_state

TABLE_TOP_Z_M = 0.8  # robosuite TableArena with table_offset (0, 0, 0.8)
TABLE_FULL_SIZE_M = (0.8, 0.8, 0.05)
INIT_STATES_DIR = Path(__file__).parent / "tabletop_init"
INIT_STATES_PER_TASK = 50
INIT_STATE_MODES = ("sampled", *STORED_INIT_STATE_MODES)
SUITES = ("tabletop_spatial", "tabletop_object")
MAX_STEPS = {"tabletop_spatial": 300, "tabletop_object": 300}  # ~3x the expert's longest episode
DROP_CLEARANCE_M = 0.002  # objects start this far above their resting height
INIT_SEED_BASE = {"tabletop_spatial": 1_000, "tabletop_object": 2_000}  # seeds that drew the stored states


@dataclass(frozen=True)
class ObjectKind:
    """How to build one kind of object and how the expert handles it.

    primitive: robosuite primitive class name (Box/Cylinder/Ball/Capsule) or None for a mesh object
    (``mesh``: robosuite XML object class name). size: primitive size (metres, MuJoCo
    convention). grasp_z_m: grasp point above the body origin; noun: what instructions call it.
    """

    noun: str
    primitive: str | None = None
    mesh: str | None = None
    size: tuple[float, ...] = ()
    rgba: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 1.0)
    grasp_z_m: float = 0.0
    random_yaw: bool = True


KINDS: dict[str, ObjectKind] = {
    "red_block": ObjectKind("red block", "Box", size=(0.02, 0.02, 0.02), rgba=(0.85, 0.1, 0.1, 1)),
    "blue_cylinder": ObjectKind("blue cylinder", "Cylinder", size=(0.022, 0.035), rgba=(0.1, 0.25, 0.85, 1), random_yaw=False),
    "yellow_ball": ObjectKind("yellow ball", "Ball", size=(0.024,), rgba=(0.95, 0.85, 0.1, 1), random_yaw=False),
    "green_box": ObjectKind("green box", "Box", size=(0.04, 0.04, 0.03), rgba=(0.15, 0.6, 0.2, 1)),
    "white_capsule": ObjectKind("white capsule", "Capsule", size=(0.02, 0.025), rgba=(0.95, 0.95, 0.95, 1), random_yaw=False),
    "orange_block": ObjectKind("orange block", "Box", size=(0.024, 0.024, 0.024), rgba=(1.0, 0.5, 0.05, 1)),
    "purple_block": ObjectKind("purple block", "Box", size=(0.018, 0.03, 0.022), rgba=(0.55, 0.2, 0.7, 1)),
    "can": ObjectKind("soda can", mesh="CanObject", grasp_z_m=0.01, random_yaw=False),
    "black_cylinder": ObjectKind("black cylinder", "Cylinder", size=(0.026, 0.025), rgba=(0.08, 0.08, 0.08, 1), random_yaw=False),
    "bread": ObjectKind("bread", mesh="BreadObject", grasp_z_m=0.0),
    "bottle": ObjectKind("bottle", mesh="BottleObject", grasp_z_m=0.02, random_yaw=False),
    "plate": ObjectKind("plate", "Cylinder", size=(0.055, 0.006), rgba=(0.92, 0.92, 0.9, 1), random_yaw=False),
    "basket": ObjectKind("basket", random_yaw=False),
}
# Body origin to base (metres) of robosuite's mesh objects, from their collision geoms' bounding
# boxes (``TabletopScene.bottom_m``; a test keeps the two equal); their XML bottom sites are lower.
MESH_BOTTOM_M = {"CanObject": 0.0404, "BreadObject": 0.0233, "BottleObject": 0.0649}
BASKET_INNER_HALF_M = 0.07
BASKET_WALL_HALF_HEIGHT_M = 0.03
BASKET_WALL_HALF_THICKNESS_M = 0.006
BASKET_BASE_HALF_HEIGHT_M = 0.005


@dataclass(frozen=True)
class Placement:
    """One object of a layout: ``name`` (unique in the scene), ``kind`` (a key of
    ``KINDS``), region centre ``xy`` and uniform jitter half-width ``jitter`` (metres,
    table frame); ``on``: name of an object it stands on (its top), or None for the table; an
    object on another keeps 0.3 of its jitter around that object's centre, so it stays on top."""

    name: str
    kind: str
    xy: tuple[float, float]
    jitter: float = 0.015
    on: str | None = None


# Paraphrases of "pick up the {subject} and place it {destination}", closest first (the
# ``language`` perturbation draws from the first ceil(severity * 6)).
PARAPHRASE_TEMPLATES = (
    "put the {subject} {destination}",
    "place the {subject} {destination}",
    "move the {subject} so that it is {destination}",
    "grab the {subject} and set it down {destination}",
    "the {subject} goes {destination}",
    "take hold of the {subject}, carry it over and leave it {destination}",
)


@dataclass(frozen=True)
class TabletopTask:
    """One task: its layout, what to move where, and what to say ("pick up the {subject} and
    place it {destination}")."""

    suite: str
    task_id: int
    subject: str  # "red block next to the green box", "soda can"
    destination: str  # "on the plate", "in the basket"
    layout: tuple[Placement, ...]
    target: str  # name of the object to move
    receptacle: str  # name of the plate / basket

    @property
    def name(self) -> str:
        return f"{self.suite}/{self.task_id}"

    @property
    def instruction(self) -> str:
        return f"pick up the {self.subject} and place it {self.destination}"

    @property
    def paraphrases(self) -> tuple[str, ...]:
        return tuple(t.format(subject=self.subject, destination=self.destination) for t in PARAPHRASE_TEMPLATES)

    def placement(self, name: str) -> Placement:
        return next(p for p in self.layout if p.name == name)


def _spatial(
    task_id: int,
    relation: str,
    target: tuple,
    decoy: tuple,
    plate: tuple,
    box: tuple,
    cylinder: tuple,
    target_on: str | None = None,
) -> TabletopTask:
    layout = (
        Placement("plate", "plate", plate, 0.01),
        Placement("green_box", "green_box", box, 0.01),
        Placement("blue_cylinder", "blue_cylinder", cylinder),
        Placement("block_target", "red_block", target, 0.01 if target_on else 0.015, on=target_on),
        Placement("block_decoy", "red_block", decoy),
    )
    return TabletopTask("tabletop_spatial", task_id, f"red block {relation}", "on the plate", layout, "block_target", "plate")


# (relation, target, decoy, plate, green box, blue cylinder) centres in metres; the decoy
# block never satisfies the relation; tasks 8 and 9 share a mirrored layout, so only the
# instruction says which block to move.
_SPATIAL = (
    ("between the plate and the green box", (0.05, 0.02), (-0.14, -0.06), (0.05, 0.2), (0.05, -0.16), (0.17, 0.07)),
    ("next to the green box", (-0.04, -0.06), (0.1, 0.13), (-0.12, 0.18), (-0.04, -0.16), (0.15, -0.14)),
    ("in the middle of the table", (0.0, 0.0), (0.13, -0.19), (-0.11, 0.19), (0.15, 0.15), (-0.15, -0.15)),
    ("on top of the green box", (0.05, -0.1), (-0.1, 0.06), (0.1, 0.19), (0.05, -0.1), (-0.13, -0.19)),
    ("next to the plate", (0.0, 0.04), (0.0, -0.16), (0.0, 0.15), (-0.15, -0.05), (0.15, -0.05)),
    ("next to the blue cylinder", (0.1, -0.04), (-0.1, 0.08), (-0.05, 0.2), (-0.12, -0.15), (0.1, -0.13)),
    ("in front of the green box", (0.08, 0.0), (-0.05, -0.15), (0.04, 0.19), (-0.05, 0.0), (-0.16, 0.15)),
    ("behind the green box", (-0.08, 0.0), (0.15, 0.14), (0.0, -0.19), (0.05, 0.0), (0.15, -0.14)),
    ("to the left of the plate", (0.0, -0.12), (0.0, 0.12), (0.0, 0.0), (0.15, -0.2), (-0.15, 0.2)),
    ("to the right of the plate", (0.0, 0.12), (0.0, -0.12), (0.0, 0.0), (0.15, -0.2), (-0.15, 0.2)),
)

# libero_object-like: target kind per task; the three objects after it (cyclically) share the scene.
_OBJECT_TARGETS = (
    "can",
    "black_cylinder",
    "white_capsule",
    "bread",
    "bottle",
    "red_block",
    "blue_cylinder",
    "yellow_ball",
    "purple_block",
    "orange_block",
)
_OBJECT_SLOTS = ((0.1, -0.04), (-0.08, -0.06), (0.1, -0.2), (-0.07, -0.22))  # target slot rotates with the task id
_BASKET_XY = (0.0, 0.17)


def _object_task(task_id: int) -> TabletopTask:
    kinds = [_OBJECT_TARGETS[(task_id + i) % len(_OBJECT_TARGETS)] for i in range(4)]
    slots = [_OBJECT_SLOTS[(task_id + i) % len(_OBJECT_SLOTS)] for i in range(4)]
    layout = (
        Placement("basket", "basket", _BASKET_XY, 0.01),
        *(Placement(f"obj{i}_{kind}", kind, xy) for i, (kind, xy) in enumerate(zip(kinds, slots))),
    )
    return TabletopTask("tabletop_object", task_id, KINDS[kinds[0]].noun, "in the basket", layout, f"obj0_{kinds[0]}", "basket")


TASKS: dict[str, TabletopTask] = {
    **{t.name: t for t in (_spatial(i, *row, target_on="green_box" if i == 3 else None) for i, row in enumerate(_SPATIAL))},
    **{t.name: t for t in (_object_task(i) for i in range(len(_OBJECT_TARGETS)))},
}


def suite_tasks(suite: str) -> list[str]:
    """Env names of ``suite``'s tasks in task-id order."""
    return [name for name, task in TASKS.items() if task.suite == suite]


def draw_layout(task: TabletopTask, rng: np.random.Generator) -> np.ndarray:
    """One initial layout ``[n_objects, 3]`` (x, y metres; yaw rad) from the task's regions."""
    poses = np.zeros((len(task.layout), 3))
    for i, placement in enumerate(task.layout):
        if placement.on is not None:
            base = poses[[p.name for p in task.layout].index(placement.on)]
            poses[i, :2] = base[:2] + rng.uniform(-placement.jitter, placement.jitter, 2) * 0.3
        else:
            poses[i, :2] = np.asarray(placement.xy) + rng.uniform(-placement.jitter, placement.jitter, 2)
        poses[i, 2] = rng.uniform(-np.pi, np.pi) if KINDS[placement.kind].random_yaw else 0.0
    return poses


def make_init_states(task: TabletopTask, count: int = INIT_STATES_PER_TASK) -> np.ndarray:
    """The task's fixed initial states ``[count, n_objects, 3]``, drawn from its regions with
    a seed fixed per task (what ``envs/tabletop_init`` holds)."""
    rng = np.random.default_rng(INIT_SEED_BASE[task.suite] + task.task_id)
    return np.stack([draw_layout(task, rng) for _ in range(count)])


def init_states_path(task: TabletopTask) -> Path:
    return INIT_STATES_DIR / task.suite / f"{task.task_id}.npy"


@functools.lru_cache(maxsize=None)
def load_init_states(name: str) -> np.ndarray:
    """The stored initial states of task ``name`` ``[N, n_objects, 3]``; a missing or
    mismatched file fails with one line saying how to regenerate it."""
    task = TASKS[name]
    path = init_states_path(task)
    regenerate = "regenerate with: python -m envs.tabletop --write-init-states"
    if not path.exists():
        raise EnvUserError(f"missing initial states {path}; {regenerate}")
    try:
        states = np.load(path)
    except (OSError, ValueError) as err:
        raise EnvUserError(f"{path} is not a readable .npy file ({err}); {regenerate}") from None
    if states.ndim != 3 or states.shape[1:] != (len(task.layout), 3):
        raise EnvUserError(f"{path} holds shape {states.shape}, expected [N, {len(task.layout)}, 3]; {regenerate}")
    return states


def _build_object(placement: Placement) -> Any:
    """The robosuite object for one placement (free joint; name = placement name)."""
    import robosuite.models.objects as objects

    kind = KINDS[placement.kind]
    if placement.kind == "basket":
        return _basket(placement.name)
    if kind.primitive is not None:
        cls = getattr(objects, f"{kind.primitive}Object")
        density = 50.0 if placement.kind in ("plate", "green_box") else 500.0
        return cls(
            name=placement.name,
            size=list(kind.size),
            rgba=list(kind.rgba),
            density=density,
            friction=(1.0, 0.005, 0.0001),
            solref=(0.01, 1),
            obj_type="all",
            duplicate_collision_geoms=True,
        )
    return getattr(objects, kind.mesh)(name=placement.name)


def _basket(name: str) -> Any:
    """An open box (base and four walls) from robosuite's CompositeObject."""
    from robosuite.models.objects import CompositeObject

    inner, wall_h, wall_t, base_h = (
        BASKET_INNER_HALF_M,
        BASKET_WALL_HALF_HEIGHT_M,
        BASKET_WALL_HALF_THICKNESS_M,
        BASKET_BASE_HALF_HEIGHT_M,
    )
    outer = inner + 2 * wall_t
    total = (outer, outer, base_h + wall_h)
    walls_z = 2 * base_h
    sizes = [
        (outer, outer, base_h),
        (wall_t, outer, wall_h),
        (wall_t, outer, wall_h),
        (inner, wall_t, wall_h),
        (inner, wall_t, wall_h),
    ]
    # CompositeObject locations are the geoms' lower corners, from the object's lower corner
    locations = [
        (0, 0, 0),
        (0, 0, walls_z),
        (2 * outer - 2 * wall_t, 0, walls_z),
        (2 * wall_t, 0, walls_z),
        (2 * wall_t, 2 * outer - 2 * wall_t, walls_z),
    ]
    return CompositeObject(
        name=name,
        total_size=total,
        geom_types=["box"] * 5,
        geom_sizes=sizes,
        geom_locations=locations,
        geom_names=["base", "wall_x0", "wall_x1", "wall_y0", "wall_y1"],
        geom_rgbas=[(0.55, 0.35, 0.2, 1)] * 5,
        density=300.0,
        solref=(0.01, 1.0),
    )


@functools.lru_cache(maxsize=None)
def scene_env_class() -> type:
    """robosuite env class ``TabletopScene(task=TabletopTask, ...)`` (built on first use, so
    importing this module does not import robosuite)."""
    from envs.sim_base import import_robosuite

    import_robosuite()
    from robosuite.environments.manipulation.manipulation_env import ManipulationEnv
    from robosuite.models.arenas import TableArena
    from robosuite.models.tasks import ManipulationTask

    class TabletopScene(ManipulationEnv):
        """A table with the objects of one ``TabletopTask``; ``next_layout`` ``[n_objects, 3]``
        (x, y, yaw) is where the next reset puts them."""

        def __init__(
            self, robots: Any, task: TabletopTask, use_object_obs: bool = False, reward_shaping: bool = False, **kwargs: Any
        ):
            self.task_spec = task
            self.next_layout = make_init_states(task, 1)[0]
            super().__init__(
                robots=robots, mount_types="default", gripper_types="default", initialization_noise="default", **kwargs
            )

        def reward(self, action: Any = None) -> float:
            return float(self._check_success())

        def _load_model(self) -> None:
            super()._load_model()
            robot = self.robots[0].robot_model
            robot.set_base_xpos(robot.base_xpos_offset["table"](TABLE_FULL_SIZE_M[0]))
            arena = TableArena(
                table_full_size=TABLE_FULL_SIZE_M, table_friction=(1.0, 5e-3, 1e-4), table_offset=(0, 0, TABLE_TOP_Z_M)
            )
            arena.set_origin([0, 0, 0])
            self.scene_objects = {p.name: _build_object(p) for p in self.task_spec.layout}
            self.model = ManipulationTask(
                mujoco_arena=arena,
                mujoco_robots=[r.robot_model for r in self.robots],
                mujoco_objects=list(self.scene_objects.values()),
            )

        def _setup_references(self) -> None:
            super()._setup_references()
            self.object_body_ids = {name: self.sim.model.body_name2id(obj.root_body) for name, obj in self.scene_objects.items()}
            self.bottom_m, self.top_m = self._vertical_extents()

        def _vertical_extents(self) -> tuple[dict[str, float], dict[str, float]]:
            """Per object, metres from its body origin down to its lowest and up to its highest
            collision geom point, upright (as compiled), from MuJoCo's geom bounding boxes
            (robosuite's bottom/top sites of mesh objects are off by up to 2 cm)."""
            import mujoco

            model, data = self.sim.model._model, self.sim.data._data
            mujoco.mj_forward(model, data)
            bottoms, tops = {}, {}
            for name, body in self.object_body_ids.items():
                geoms = np.flatnonzero((model.body_rootid[model.geom_bodyid] == body) & (model.geom_contype > 0))
                rotations = data.geom_xmat[geoms].reshape(-1, 3, 3)
                centres = data.geom_xpos[geoms] + np.einsum("gij,gj->gi", rotations, model.geom_aabb[geoms, :3])
                half_z = np.einsum("gj,gj->g", np.abs(rotations[:, 2, :]), model.geom_aabb[geoms, 3:])
                origin_z = data.xpos[body, 2]
                bottoms[name] = float(origin_z - (centres[:, 2] - half_z).min())
                tops[name] = float((centres[:, 2] + half_z).max() - origin_z)
            return bottoms, tops

        def _resting_z(self, name: str, support_top: float) -> float:
            """Body-origin height (metres) at which object ``name`` rests on a surface at ``support_top``."""
            return support_top + self.bottom_m[name] + DROP_CLEARANCE_M

        def _reset_internal(self) -> None:
            super()._reset_internal()
            tops: dict[str, float] = {}
            for placement, (x, y, yaw) in zip(self.task_spec.layout, self.next_layout):
                support = TABLE_TOP_Z_M if placement.on is None else tops[placement.on]
                z = self._resting_z(placement.name, support)
                obj = self.scene_objects[placement.name]
                tops[placement.name] = z + self.top_m[placement.name]
                quat_wxyz = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
                self.sim.data.set_joint_qpos(obj.joints[0], np.array([x, y, z, *quat_wxyz]))

        def _check_success(self) -> bool:
            task = self.task_spec
            pos = np.array(self.sim.data.body_xpos[self.object_body_ids[task.target]])
            receptacle = np.array(self.sim.data.body_xpos[self.object_body_ids[task.receptacle]])
            bottom = pos[2] - self.bottom_m[task.target]
            if task.receptacle == "plate":
                plate_top = receptacle[2] + KINDS["plate"].size[1]
                placed = (
                    np.linalg.norm(pos[:2] - receptacle[:2]) < KINDS["plate"].size[0]
                    and plate_top - 0.01 < bottom < plate_top + 0.02
                )
            else:
                floor = receptacle[2] - BASKET_WALL_HALF_HEIGHT_M + BASKET_BASE_HALF_HEIGHT_M
                placed = (
                    bool(np.all(np.abs(pos[:2] - receptacle[:2]) < BASKET_INNER_HALF_M))
                    and bottom < floor + BASKET_WALL_HALF_HEIGHT_M
                )
            held = self._check_grasp(gripper=self.robots[0].gripper, object_geoms=self.scene_objects[task.target])
            return bool(placed and not held)

    return TabletopScene


def task_names() -> list[str]:
    return list(TASKS)


def write_init_states() -> list[Path]:
    """(Re)write every task's initial-states file from ``make_init_states``."""
    written = []
    for task in TASKS.values():
        path = init_states_path(task)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, make_init_states(task))
        written.append(path)
    return written


def choose_layout(name: str, mode: str, seed: int, index: int | None) -> np.ndarray:
    """Initial layout ``[n_objects, 3]`` for one episode of task ``name``.

    fixed: stored state ``index``; cycle: stored state ``seed mod N`` (consecutive seeds walk
    through all N); random: a stored state drawn from ``seed``; sampled: a fresh layout drawn
    from the task's regions with ``seed`` (never one of the stored states' seeds).
    """
    if mode not in INIT_STATE_MODES:
        raise unknown_name(f"init_state for {name}", mode, INIT_STATE_MODES)
    if mode == "sampled":
        return draw_layout(TASKS[name], np.random.default_rng([seed, 7]))
    states = load_init_states(name)
    return states[choose_init_state(mode, seed, len(states), index, where=f" for {name}")]


def _object_bottom_m(kind: ObjectKind) -> float:
    """Distance (metres) from an object's body origin down to its base."""
    if kind.primitive == "Ball":
        return kind.size[0]
    if kind.primitive == "Cylinder":
        return kind.size[1]
    if kind.primitive == "Capsule":
        return kind.size[0] + kind.size[1]
    if kind.primitive == "Box":
        return kind.size[2]
    return MESH_BOTTOM_M[kind.mesh]


def root_body(placement: Placement) -> str:
    """MuJoCo name of the body robosuite builds for ``placement`` (``CompositeObject`` roots
    are ``<name>_root``, every other object's ``<name>_main``)."""
    return f"{placement.name}_root" if placement.kind == "basket" else f"{placement.name}_main"


def task_spec(name: str) -> TaskSpec:
    """The ``RobosuiteEnv`` ``TaskSpec`` of tabletop task ``name``."""
    task = TASKS[name]
    return TaskSpec(
        "TabletopScene",
        task.instruction,
        root_body(task.placement(task.target)),
        root_body(task.placement(task.receptacle)),
        MAX_STEPS[task.suite],
        surface_body="table",
        surface_materials=("table_ceramic",),
    )


class TabletopEnv(RobosuiteEnv):
    """A tabletop task: ``RobosuiteEnv`` with its scene (``TabletopTask``) built from
    robosuite objects, its 50 stored initial states (``init_state``: "cycle" by default,
    "fixed", "random", or "sampled" from the task's regions) and its paraphrases."""

    INIT_STATE_MODES = INIT_STATE_MODES
    DEFAULT_INIT_STATE = "cycle"

    def __init__(self, name: str, **kwargs: Any):
        self.scene = TASKS[name]
        super().__init__(task=name, spec=task_spec(name), **kwargs)

    def _check_init_state(self, init_state: str, init_state_index: int | None) -> None:
        choose_layout(self.scene.name, init_state, 0, init_state_index)  # a bad index or missing states file: now

    def _sim_env_class(self, robosuite: Any) -> tuple[type, dict[str, Any]]:
        return scene_env_class(), {"task": self.scene}

    def _before_sim_reset(self, seed: int | None, episode_seed: int, options: dict | None) -> None:
        reset_seed = seed if seed is not None else episode_seed
        mode = (options or {}).get("init_state", self.init_state)
        self.sim_env.next_layout = choose_layout(self.scene.name, mode, reset_seed, self.init_state_index)

    @property
    def paraphrases(self) -> tuple[str, ...]:
        return self.scene.paraphrases

    def scene_bodies(self) -> tuple[str, ...]:
        return tuple(root_body(p) for p in self.scene.layout)

    def placement_ranges(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Task body -> (low ``[2]``, high ``[2]``): its placement's jitter square (metres, world =
        table frame) about the region centre, or about the present xy of the object it stands on."""
        ranges = {}
        for placement in self.scene.layout:
            body = root_body(placement)
            if body not in self.task_bodies():
                continue
            if placement.on is None:
                centre, half = np.asarray(placement.xy, dtype=np.float64), placement.jitter
            else:
                centre, half = self.object_position(root_body(self.scene.placement(placement.on)))[:2], 0.3 * placement.jitter
            ranges[body] = (centre - half, centre + half)
        return ranges

    def _placed_object(self, name: str) -> Any:
        return next(obj for obj in self.sim_env.scene_objects.values() if obj.root_body == name)


def expert_spec(name: str) -> Any:
    """The scripted expert's geometry for tabletop task ``name``: grasp at the target's
    ``grasp_z_m``; release with the target's base 1 cm above the plate or 3 cm above the
    basket's rim; carry 6 cm above that."""
    from envs.experts import ExpertSpec

    task = TASKS[name]
    kind = KINDS[task.placement(task.target).kind]
    grasp_above_base = _object_bottom_m(kind) + kind.grasp_z_m
    if task.receptacle == "plate":
        release_z = KINDS["plate"].size[1] + 0.01 + grasp_above_base
    else:
        release_z = BASKET_BASE_HALF_HEIGHT_M + BASKET_WALL_HALF_HEIGHT_M + 0.03 + grasp_above_base
    return ExpertSpec(
        grasp_offset=(0.0, 0.0, kind.grasp_z_m), place_offset=(0.0, 0.0, release_z), carry_height=0.06, align_yaw=kind.random_yaw
    )


def _factory(name: str):
    def make_task(**kwargs: Any) -> TabletopEnv:
        return TabletopEnv(name, **kwargs)

    return make_task


def register_all() -> None:
    """Register ``tabletop_spatial/<i>``, ``tabletop_object/<i>``, their suites and experts."""
    from envs.experts import register_expert
    from envs.registry import register, register_suite

    for name in TASKS:
        register(name, _factory(name))
        register_expert(name, functools.partial(expert_spec, name))
    for suite in SUITES:
        register_suite(suite, functools.partial(suite_tasks, suite), functools.partial(check_init_states, suite))


def check_init_states(suite: str) -> None:
    """Every task of ``suite`` has its stored initial states (one line naming a missing file)."""
    for name in suite_tasks(suite):
        load_init_states(name)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Tabletop suites: (re)write the stored initial states.")
    parser.add_argument("--write-init-states", action="store_true", help="write envs/tabletop_init/<suite>/<id>.npy")
    args = parser.parse_args(argv)
    if args.write_init_states:
        for path in write_init_states():
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
