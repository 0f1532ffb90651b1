"""Gymnasium env over robosuite 1.4 manipulation tasks (Panda, OSC_POSE).

Every robosuite quirk lives in this file: the image flip (robosuite renders OpenGL
images bottom-up), controller config, render flags, the global-numpy seeding of
robosuite's placement samplers, and which bodies are the task objects.

Observation spec (declared once, here):
    images:  {camera: uint8 [H, W, 3]}, right side up, one per configured camera
    proprio: float32 [9] = end-effector position (3, metres, world frame),
             end-effector quaternion (4, x y z w), gripper finger joint positions (2, metres)
Action: float32 [7] in [-1, 1]: OSC_POSE delta position (x y z, 1.0 = 5 cm per step),
    delta axis-angle rotation (3, 1.0 = 0.5 rad per step), gripper (-1 open, +1 close).
Info: success (bool), task (str), instruction (str).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from envs.errors import EnvUserError, unknown_name
from envs.rendering import ensure_gl_backend

CAMERAS = ("agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview", "robot0_robotview")
DEFAULT_CAMERAS = ("agentview", "robot0_eye_in_hand")
RENDER_QUALITIES = ("fast", "full")
IMAGE_SIZE_RANGE = (16, 512)
CONTROL_FREQ_HZ = 20
PROPRIO_DIM = 9


@dataclass(frozen=True)
class TaskSpec:
    """A robosuite task: its env class, what to say, and which bodies matter.

    pick_body / place_body: body names whose world positions the scripted expert and the
    tracking diagnostics read (place_body None: the task only lifts).
    """

    env_class: str
    instruction: str
    pick_body: str
    place_body: str | None
    max_steps: int


TASKS: dict[str, TaskSpec] = {
    "Lift": TaskSpec("Lift", "lift the red cube", "cube_main", None, 150),
    "Stack": TaskSpec("Stack", "stack the red cube on top of the green cube", "cubeA_main", "cubeB_main", 250),
    "PickPlaceCan": TaskSpec("PickPlaceCan", "pick up the can and place it in its bin", "Can_main", None, 300),
}


def _import_robosuite() -> Any:
    """Import robosuite after choosing a GL backend, with its import-time chatter silenced."""
    ensure_gl_backend()
    logging.getLogger("robosuite_logs").setLevel(logging.ERROR)
    import robosuite

    return robosuite


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """robosuite samples placements from the global numpy RNG: seed it, then restore it."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


class RobosuiteEnv(gym.Env):
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
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ_HZ}

    def __init__(
        self,
        task: str = "Lift",
        cameras: tuple[str, ...] | list[str] = DEFAULT_CAMERAS,
        image_size: int = 128,
        render_quality: str = "fast",
        max_steps: int | None = None,
        terminate_on_success: bool = True,
        render_mode: str | None = "rgb_array",
    ):
        if task not in TASKS:
            raise unknown_name("robosuite task", task, TASKS)
        cameras = tuple(cameras)
        for camera in cameras:
            if camera not in CAMERAS:
                raise unknown_name("camera", camera, CAMERAS)
        if not cameras:
            raise EnvUserError(f"cameras is empty; choose from {', '.join(CAMERAS)}")
        low, high = IMAGE_SIZE_RANGE
        if not isinstance(image_size, (int, np.integer)) or not low <= image_size <= high:
            raise EnvUserError(f"image_size={image_size!r} is out of range; valid: an integer in [{low}, {high}] pixels")
        if render_quality not in RENDER_QUALITIES:
            raise unknown_name("render_quality", render_quality, RENDER_QUALITIES)
        self.spec_task = TASKS[task]
        self.task = task
        self.instruction = self.spec_task.instruction
        self.cameras = cameras
        self.image_size = int(image_size)
        self.render_quality = render_quality
        self.max_steps = int(max_steps or self.spec_task.max_steps)
        self.terminate_on_success = terminate_on_success
        self.render_mode = render_mode

        robosuite = _import_robosuite()
        from robosuite.controllers import load_controller_config

        self.sim_env = robosuite.make(
            self.spec_task.env_class,
            robots="Panda",
            controller_configs=load_controller_config(default_controller="OSC_POSE"),
            has_renderer=False,
            has_offscreen_renderer=True,
            use_camera_obs=True,
            use_object_obs=False,
            camera_names=list(cameras),
            camera_heights=self.image_size,
            camera_widths=self.image_size,
            hard_reset=False,
            ignore_done=True,
            control_freq=CONTROL_FREQ_HZ,
            reward_shaping=False,
        )
        if render_quality == "fast":
            self._disable_costly_render_effects()

        image_space = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({camera: image_space for camera in cameras}),
                "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
            }
        )
        low_act, high_act = self.sim_env.action_spec
        self.action_space = gym.spaces.Box(low_act.astype(np.float32), high_act.astype(np.float32), dtype=np.float32)
        self._steps = 0
        self._last_obs: dict[str, Any] | None = None

    # --- simulator access (privileged; for experts, perturbations and diagnostics) ---
    @property
    def sim(self) -> Any:
        """robosuite's MjSim (``.model``, ``.data``, ``.forward()``)."""
        return self.sim_env.sim

    def body_position(self, body: str) -> np.ndarray:
        """World position ``[3]`` (metres) of MuJoCo body ``body``."""
        return np.array(self.sim.data.body_xpos[self.sim.model.body_name2id(body)])

    def body_yaw(self, body: str) -> float:
        """Rotation (rad) of body ``body`` about the world z axis."""
        rotation = self.sim.data.body_xmat[self.sim.model.body_name2id(body)].reshape(3, 3)
        return float(np.arctan2(rotation[1, 0], rotation[0, 0]))

    def _finger_axis(self, robot: Any) -> np.ndarray:
        """Unit ``[2]`` world-xy direction of the gripper's finger-opening axis (site y axis)."""
        rotation = self.sim.data.site_xmat[robot.eef_site_id].reshape(3, 3)
        axis = rotation[:2, 1]
        return axis / max(float(np.linalg.norm(axis)), 1e-6)

    def privileged_state(self) -> dict[str, Any]:
        """Ground-truth state for scripted experts: positions in metres, world frame.

        Keys: eef_pos [3], eef_finger_axis [2] (unit xy direction the fingers open
        along), gripper_qpos [2], pick_pos [3], pick_yaw (rad, about world z),
        place_pos [3] or None, success (bool).
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
            "gripper_qpos": np.array(self.sim.data.qpos[robot._ref_gripper_joint_pos_indexes]),
            "pick_pos": self.body_position(self.spec_task.pick_body),
            "pick_yaw": self.body_yaw(self.spec_task.pick_body),
            "place_pos": place_pos,
            "success": bool(self.sim_env._check_success()),
        }

    def _disable_costly_render_effects(self) -> None:
        """Rebuild the offscreen GL context without multisampling; drop reflections and shadows."""
        import mujoco

        context = self.sim._render_context_offscreen
        model = self.sim.model._model
        model.vis.quality.offsamples = 0
        context.con.free()
        context.con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        context.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0

    # --- gymnasium API ---
    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        images = {camera: np.ascontiguousarray(raw[f"{camera}_image"][::-1]) for camera in self.cameras}
        proprio = np.concatenate([raw["robot0_eef_pos"], raw["robot0_eef_quat"], raw["robot0_gripper_qpos"]])
        return {"images": images, "proprio": proprio.astype(np.float32)}

    def _info(self, success: bool) -> dict[str, Any]:
        return {"success": success, "task": self.task, "instruction": self.instruction}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**31 - 1))
        with _seeded_global_numpy(episode_seed):
            raw = self.sim_env.reset()
        for robot in self.sim_env.robots:
            # robosuite's soft reset keeps the gripper's integrated command: clear it so
            # the same seed and actions give the same trajectory.
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
        self._steps = 0
        self._last_obs = self._observation(raw)
        return self._last_obs, self._info(False)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        raw, reward, _, _ = self.sim_env.step(action)
        self._steps += 1
        success = bool(self.sim_env._check_success())
        self._last_obs = self._observation(raw)
        terminated = success and self.terminate_on_success
        truncated = self._steps >= self.max_steps and not terminated
        return self._last_obs, float(reward), terminated, truncated, self._info(success)

    def render(self) -> np.ndarray | None:
        """The first camera's latest frame, uint8 ``[H, W, 3]``."""
        if self._last_obs is None:
            return None
        return self._last_obs["images"][self.cameras[0]]

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
