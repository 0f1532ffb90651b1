"""Run seeded episodes of a policy on a vector of envs; one record per finished episode.

The envs of one condition (task x perturbation x severity) run in a
``gymnasium.vector.AsyncVectorEnv`` (forkserver workers: forked workers that render hang)
with auto-reset off, so every episode gets its own seed. Each step makes one batched
policy call over the envs whose action chunk is used up; chunks are executed for
``replan_every`` steps. Env exceptions are caught inside the worker (``SafeEnv``): the
episode is recorded as failed with the reason and the env is rebuilt. A worker process that
dies takes the vector env down; it is rebuilt and the unfinished episodes re-run (an
episode that kills its worker twice is recorded as an error).
"""

from __future__ import annotations

import functools
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode

from gridslab.compress.grids import uniform_grid
from gridslab.policy.flops import flops_by_tokens, gflops_at
from gridslab.viz import draw_points

CRASHES_BEFORE_ERROR = 2
NOISE_SEED_STRIDE = 1_000_003  # policy calls per episode stay far below this
WORKER_CONTEXT = "forkserver"


@dataclass(frozen=True)
class Condition:
    """What one group of episodes runs in. perturbation: "clean" or an ``envs.ood`` spec."""

    env_name: str
    env_kwargs: dict[str, Any]
    perturbation: str = "clean"
    severity: float = 0.0

    @property
    def label(self) -> str:
        return self.perturbation if self.perturbation == "clean" else f"{self.perturbation}@{self.severity:g}"


@dataclass
class EpisodeRecord:
    """One finished episode. wall_s: seconds; policy_ms_per_step: policy time / env steps;
    tokens_per_plan: visual tokens per image the budget gave each policy call, in order
    (tokens_per_image / tokens_min / tokens_max summarise it); policy_gflops: mean GFLOPs of
    one policy call for this sample at those token counts.

    Where the points land (first camera, envs that report ``info["object_xy"]``; None
    otherwise), in image widths, averaged over the episode's steps: ``points_to_object``,
    each valid sampled point's distance to the nearest task object, averaged over points;
    ``object_to_points``, each task object's distance to the nearest sampled point, averaged
    over objects; ``grid_*`` the same for a fixed uniform grid of as many points."""

    task: str
    env: str
    perturbation: str
    severity: float
    seed: int
    success: bool
    steps: int
    wall_s: float
    policy_ms_per_step: float
    tokens_per_image: float
    instruction: str
    error: str = ""
    tokens_min: float = 0.0
    tokens_max: float = 0.0
    tokens_per_plan: list[float] = field(default_factory=list)
    policy_gflops: float = 0.0
    points_to_object: float | None = None
    object_to_points: float | None = None
    grid_points_to_object: float | None = None
    grid_object_to_points: float | None = None


class SafeEnv(gym.Wrapper):
    """Turns an exception or a non-finite observation inside ``reset``/``step`` into a
    terminated episode with ``info["error"]``; the env is rebuilt before the next reset.

    ``render_images`` (set from the rollout by ``set_attr``): whether the next ``step`` renders
    the cameras (envs with ``set_image_rendering``); off, its images are stale. Resets render."""

    def __init__(self, build: Callable[[], gym.Env]):
        self.build = build
        super().__init__(build())
        self.broken = False
        self.render_images = True
        self._rendering = True

    def _apply_rendering(self, enabled: bool) -> None:
        if enabled != self._rendering and hasattr(self.env.unwrapped, "set_image_rendering"):
            self.env.unwrapped.set_image_rendering(enabled)
        self._rendering = enabled

    def _failure(self, err: BaseException | str) -> tuple[dict, dict]:
        self.broken = True
        reason = err if isinstance(err, str) else f"{type(err).__name__}: {err}".splitlines()[0]
        blank = {
            "images": {c: np.zeros(s.shape, s.dtype) for c, s in self.observation_space["images"].items()},
            "proprio": np.zeros(self.observation_space["proprio"].shape, np.float32),
        }
        return blank, {"success": False, "error": reason}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.broken:
            self.env.close()
            self.env = self.build()
            self.broken = False
            self._rendering = True
        try:
            self._apply_rendering(True)
            obs, info = self.env.reset(seed=seed, options=options)
        except Exception as err:  # noqa: BLE001 - any simulator failure becomes a recorded error
            return self._failure(err)
        return obs, {**info, "error": ""}

    def step(self, action: np.ndarray):
        try:
            self._apply_rendering(self.render_images)
            obs, reward, terminated, truncated, info = self.env.step(action)
        except Exception as err:  # noqa: BLE001
            blank, info = self._failure(err)
            return blank, 0.0, True, False, info
        if not np.all(np.isfinite(obs["proprio"])):
            blank, info = self._failure("unstable simulation: non-finite proprio")
            return blank, 0.0, True, False, info
        return obs, reward, terminated, truncated, {**info, "error": ""}


def build_env(condition: Condition) -> gym.Env:
    """The env of ``condition`` with its perturbation applied (no SafeEnv)."""
    from envs import ood

    return ood.make(condition.env_name, condition.perturbation, condition.severity, **condition.env_kwargs)


def make_safe_env(condition: Condition) -> gym.Env:
    """Worker-side factory (module level so forkserver workers can unpickle it)."""
    return SafeEnv(functools.partial(build_env, condition))


def noise_seed(episode_seed: int, call: int) -> int:
    """Seed of a compressor's random draw at policy call ``call`` of the episode with
    ``episode_seed``: fresh at every call, the same on every re-run."""
    return episode_seed * NOISE_SEED_STRIDE + call


class PolicyRunner:
    """Batches env observations into the policy and returns action chunks in env units.

    ``act`` returns actions ``[N, H, A]``, sampled coordinates per camera ``[N, K, 2]`` with
    masks ``[N, K]``, visual tokens per image ``[N]`` (valid slots, averaged over cameras;
    chosen by the policy's budget unless ``k`` fixes it) and GFLOPs per sample ``[N]`` at
    those token counts (``gridslab.policy.flops.flops_by_tokens``). Observations become the policy
    batch through the policy's own processor, as in training.
    """

    def __init__(self, policy: torch.nn.Module, k: int | None = None):
        self.policy = policy.eval()
        self.k = k
        self.gflops_table = flops_by_tokens(policy)

    @torch.no_grad()
    def act(
        self, images: dict[str, np.ndarray], proprio: np.ndarray, instructions: list[str], noise_seeds: list[int] | None = None
    ) -> dict[str, Any]:
        """images: {camera: uint8 [N, H, W, 3]}; proprio: [N, P] env units; noise_seeds: N
        seeds of the compressor's random draw (``noise_seed``)."""
        k = None if self.k is None else torch.full((len(instructions),), self.k, dtype=torch.long)
        seeds = None if noise_seeds is None else torch.tensor(noise_seeds, dtype=torch.long)
        batch = self.policy.processor.observation_batch(images, proprio, instructions, k=k, noise_seed=seeds)
        outputs = self.policy(batch)
        actions = self.policy.processor.env_actions(outputs["actions"]).float().cpu().numpy()
        coords = {c: t.coords.float().cpu().numpy() for c, t in outputs["tokens"].items()}
        masks = {c: t.mask.cpu().numpy() for c, t in outputs["tokens"].items()}
        tokens = self.policy.tokens_per_sample(outputs).cpu().numpy()
        gflops = np.array([gflops_at(self.gflops_table, float(k)) for k in tokens])
        return {"actions": actions, "coords": coords, "masks": masks, "tokens_per_image": tokens, "gflops": gflops}


@dataclass
class _Episode:
    """Book-keeping of one running episode in one env slot."""

    seed: int
    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    success: bool = False
    error: str = ""
    instruction: str = ""
    policy_seconds: float = 0.0
    tokens: list[float] = field(default_factory=list)
    gflops: list[float] = field(default_factory=list)
    tracking: list[tuple[float, float, float, float]] = field(default_factory=list)
    queue: deque = field(default_factory=deque)
    coords: tuple[np.ndarray, np.ndarray] | None = None
    frames: list[np.ndarray] | None = None


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_condition(
    runner: PolicyRunner,
    condition: Condition,
    seeds: list[int],
    max_steps: int,
    replan_every: int,
    workers: int,
    on_record: Callable[[EpisodeRecord], None],
    video_seeds: set[int] = frozenset(),
    on_video: Callable[[int, list[np.ndarray]], None] | None = None,
    env_factory: Callable[[Condition], gym.Env] = make_safe_env,
    render_every_step: bool = False,
) -> None:
    """Run one episode per seed in ``condition``; ``on_record`` gets each finished episode.

    max_steps: per-episode limit (env steps); replan_every: chunk steps executed before
    the next policy call; video_seeds: episodes whose first-camera frames (with the
    sampled coordinates drawn) go to ``on_video(seed, frames)``; env_factory: builds one
    worker's env from the condition (module-level, so forkserver workers can import it);
    render_every_step: render the cameras at every step, not only at the steps whose
    observation the policy reads (before a policy call) and in video episodes; the records
    are the same either way, only slower.
    """
    pending = deque(seeds)
    crashes: dict[int, int] = {}
    while pending:
        n_envs = max(1, min(workers, len(pending)))
        vector = AsyncVectorEnv(
            [functools.partial(env_factory, condition)] * n_envs,
            context=WORKER_CONTEXT,
            autoreset_mode=AutoresetMode.DISABLED,
            shared_memory=False,
            daemon=True,
        )
        slots: list[_Episode | None] = [None] * n_envs
        try:
            _run_on_vector(
                vector,
                runner,
                condition,
                pending,
                slots,
                max_steps,
                replan_every,
                on_record,
                video_seeds,
                on_video,
                render_every_step,
            )
            vector.close()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as err:
            vector.close(terminate=True)
            for episode in reversed([s for s in slots if s is not None]):
                crashes[episode.seed] = crashes.get(episode.seed, 0) + 1
                if crashes[episode.seed] >= CRASHES_BEFORE_ERROR:
                    episode.error = f"worker crashed {crashes[episode.seed]} times ({type(err).__name__})"
                    on_record(_record(episode, condition))
                else:
                    pending.appendleft(episode.seed)
        except BaseException:  # an error of the caller's (e.g. writing a record): stop the workers, pass it on
            vector.close(terminate=True)
            raise


def point_object_distances(points: np.ndarray, objects: np.ndarray) -> tuple[float, float]:
    """(mean over points of the distance to the nearest object, mean over objects of the
    distance to the nearest point) for ``points [K, 2]`` and ``objects [N, 2]`` in image units."""
    distances = np.linalg.norm(points[:, None, :] - objects[None, :, :], axis=-1)  # [K, N]
    return float(distances.min(axis=1).mean()), float(distances.min(axis=0).mean())


def tracking_sample(coords: np.ndarray, mask: np.ndarray, objects: np.ndarray) -> tuple[float, float, float, float]:
    """Distances for the valid sampled points and for a uniform grid of as many points."""
    points = coords[mask]
    grid = uniform_grid(len(points)).numpy().astype(np.float32)
    return (*point_object_distances(points, objects), *point_object_distances(grid, objects))


def _record(episode: _Episode, condition: Condition) -> EpisodeRecord:
    # 3 decimals (a tenth of a percent of the image): identical runs differ around 1e-4 here
    tracking = np.mean(episode.tracking, axis=0).round(3).tolist() if episode.tracking else [None] * 4
    return EpisodeRecord(
        task=condition.env_name,
        env=condition.env_name,
        perturbation=condition.perturbation,
        severity=float(condition.severity),
        seed=episode.seed,
        success=bool(episode.success and not episode.error),
        steps=episode.steps,
        wall_s=round(time.perf_counter() - episode.started, 3),
        policy_ms_per_step=1000 * episode.policy_seconds / max(episode.steps, 1),
        tokens_per_image=float(np.mean(episode.tokens)) if episode.tokens else 0.0,
        instruction=episode.instruction,
        error=episode.error,
        tokens_min=min(episode.tokens, default=0.0),
        tokens_max=max(episode.tokens, default=0.0),
        tokens_per_plan=[round(k, 3) for k in episode.tokens],
        policy_gflops=round(float(np.mean(episode.gflops)), 6) if episode.gflops else 0.0,
        points_to_object=tracking[0],
        object_to_points=tracking[1],
        grid_points_to_object=tracking[2],
        grid_object_to_points=tracking[3],
    )


def _info_at(info: dict[str, Any], key: str, index: int, default: Any) -> Any:
    if key in info and info.get(f"_{key}", np.ones(index + 1, bool))[index]:
        return info[key][index]
    return default


def _run_on_vector(
    vector, runner, condition, pending, slots, max_steps, replan_every, on_record, video_seeds, on_video, render_every_step
) -> None:
    n_envs = len(slots)
    rendering = np.ones(n_envs, dtype=bool)  # what each worker's SafeEnv.render_images is set to
    action_dim = vector.single_action_space.shape[0]
    obs: dict[str, Any] = {}

    objects: list[np.ndarray | None] = [None] * n_envs  # task objects in the first camera, per env

    def note_objects(info: dict[str, Any], rows: np.ndarray) -> None:
        for i in rows:
            objects[i] = _objects_at(info, first_camera, i)

    def start_episodes(reset_mask: np.ndarray) -> None:
        nonlocal obs
        seeds = [slots[i].seed if reset_mask[i] else None for i in range(n_envs)]
        obs, info = vector.reset(seed=seeds, options={"reset_mask": reset_mask})
        note_objects(info, np.flatnonzero(reset_mask))
        for i in np.flatnonzero(reset_mask):
            episode = slots[i]
            episode.instruction = str(_info_at(info, "instruction", i, ""))
            episode.error = str(_info_at(info, "error", i, ""))
            if episode.seed in video_seeds:
                episode.frames = []

    def finish(i: int) -> None:
        episode = slots[i]
        on_record(_record(episode, condition))
        if episode.frames is not None and on_video is not None:
            on_video(episode.seed, episode.frames)
        slots[i] = None

    first = np.zeros(n_envs, dtype=bool)
    for i in range(n_envs):
        if pending:
            slots[i] = _Episode(seed=pending.popleft())
            first[i] = True
    first_camera = next(iter(vector.single_observation_space["images"].spaces))
    start_episodes(first)
    while any(s is not None for s in slots):
        for i in range(n_envs):
            if slots[i] is not None and slots[i].error:  # the reset itself failed
                finish(i)
        need_plan = [i for i in range(n_envs) if slots[i] is not None and not slots[i].queue]
        if need_plan:
            started = time.perf_counter()
            plan = runner.act(
                {c: frames[need_plan] for c, frames in obs["images"].items()},
                obs["proprio"][need_plan],
                [slots[i].instruction for i in need_plan],
                [noise_seed(slots[i].seed, len(slots[i].tokens)) for i in need_plan],
            )
            share = (time.perf_counter() - started) / len(need_plan)
            for row, i in enumerate(need_plan):
                episode = slots[i]
                episode.policy_seconds += share
                episode.tokens.append(float(plan["tokens_per_image"][row]))
                episode.gflops.append(float(plan["gflops"][row]))
                episode.queue.extend(plan["actions"][row][:replan_every])
                episode.coords = (plan["coords"][first_camera][row], plan["masks"][first_camera][row])
        actions = np.zeros((n_envs, action_dim), dtype=np.float32)
        render = np.ones(n_envs, dtype=bool)
        for i, episode in enumerate(slots):
            if episode is None:
                continue
            if episode.frames is not None:
                episode.frames.append(draw_points(obs["images"][first_camera][i], *episode.coords))
            if objects[i] is not None and episode.coords[1].any():
                episode.tracking.append(tracking_sample(*episode.coords, objects[i]))
            actions[i] = episode.queue.popleft()
            # the next observation is read only by the next policy call or a video frame
            render[i] = render_every_step or episode.frames is not None or not episode.queue
        if not np.array_equal(render, rendering):
            vector.set_attr("render_images", render.tolist())
            rendering = render
        obs, _, terminated, truncated, info = vector.step(actions)
        note_objects(info, np.arange(n_envs))
        restart = np.zeros(n_envs, dtype=bool)
        for i, episode in enumerate(slots):
            if episode is None:
                continue
            episode.steps += 1
            episode.success = episode.success or bool(_info_at(info, "success", i, False))
            episode.error = str(_info_at(info, "error", i, "")) or episode.error
            if terminated[i] or truncated[i] or episode.steps >= max_steps or episode.error:
                finish(i)
                if pending:
                    slots[i] = _Episode(seed=pending.popleft())
                    restart[i] = True
        if restart.any():
            start_episodes(restart)


def _objects_at(info: dict[str, Any], camera: str, index: int) -> np.ndarray | None:
    """Env ``index``'s task objects ``[N, 2]`` in ``camera`` from a vector info, if reported."""
    per_camera = info.get("object_xy")
    if not isinstance(per_camera, dict) or camera not in per_camera:
        return None
    if not per_camera.get(f"_{camera}", np.ones(index + 1, bool))[index]:
        return None
    return np.asarray(per_camera[camera][index], dtype=np.float32)


def record_to_json(record: EpisodeRecord) -> dict[str, Any]:
    return asdict(record)
