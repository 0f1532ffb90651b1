"""Run seeded episodes of a policy on a pool of env workers; one record per finished episode.

An episode is a ``Job`` (condition x seed; task x perturbation x severity make the condition).
``run_episodes`` keeps every worker of an ``EnvPool`` busy with one episode at a time, in job
order, over all conditions (a worker rebuilds its env only when the condition changes). Each
round makes a policy call for each running episode whose actions are used up (or one batched
call, ``batched_policy``), and each worker then executes what ``Execution`` takes of its chunk in ONE call (``run_chunk``),
sent as soon as its episode is planned (the first worker steps while the next episode is planned),
rendering only the observation the next policy call reads (``render_every_step`` instead
executes one step per call, rendering each: the slow reference). Env exceptions are caught
inside the worker (``SafeEnv``): the episode is recorded as failed with the reason and the
env is rebuilt. A worker process that dies is replaced and only its own episode re-runs (an
episode that kills its worker twice is recorded as an error).
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import gymnasium as gym
import numpy as np
import torch

from gridslab.compress.grids import uniform_grid
from gridslab.eval.execution import ChunkExecutor, Execution
from gridslab.eval.workers import ChunkResult, Condition, EnvPool, ResetResult, SafeEnv, WorkerDied, make_safe_env
from gridslab.policy.flops import flops_by_tokens, gflops_at
from gridslab.viz import draw_points

__all__ = ["Condition", "EpisodeRecord", "Job", "PolicyRunner", "SafeEnv", "run_condition", "run_episodes"]

CRASHES_BEFORE_ERROR = 2
NOISE_SEED_STRIDE = 1_000_003  # policy calls per episode stay far below this


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


@dataclass(frozen=True)
class Job:
    """One episode to run: ``seed`` under ``condition``; ``video``: keep its first-camera frames."""

    condition: Condition
    seed: int
    video: bool = False

    @property
    def key(self) -> tuple[str, str, float, int]:
        """(env, perturbation, severity, seed): the episode's identity (a condition holds a dict: no hash)."""
        return self.condition.env_name, self.condition.perturbation, float(self.condition.severity), self.seed


@dataclass
class _Episode:
    """Book-keeping of one running episode on one worker. obs: the latest observation;
    objects: the task objects (first camera) in it; queue: actions still to execute [n, A]."""

    job: Job
    executor: ChunkExecutor
    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    success: bool = False
    error: str = ""
    done: bool = False
    instruction: str = ""
    policy_seconds: float = 0.0
    tokens: list[float] = field(default_factory=list)
    gflops: list[float] = field(default_factory=list)
    tracking: list[tuple[float, float, float, float]] = field(default_factory=list)
    obs: dict[str, Any] = field(default_factory=dict)
    objects: np.ndarray | None = None
    queue: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    coords: tuple[np.ndarray, np.ndarray] | None = None
    frames: list[np.ndarray] | None = None

    def started_with(self, reset: ResetResult) -> None:
        self.obs, self.objects, self.instruction, self.error = reset.obs, reset.objects, reset.instruction, reset.error
        self.done = bool(reset.error)  # the reset itself failed
        if self.job.video:
            self.frames = []

    def executed(self, result: ChunkResult, first_camera: str, max_steps: int) -> None:
        """Account for the steps of ``result``: tracking and video frames are those of the
        observation before each step, with the points of the plan that chose its action."""
        before_objects = [self.objects, *result.objects[:-1]]
        before_frames = [self.obs["images"][first_camera], *(result.frames or [])[:-1]]
        for step in range(result.steps):
            if before_objects[step] is not None and self.coords[1].any():
                self.tracking.append(tracking_sample(*self.coords, before_objects[step]))
            if self.frames is not None:
                self.frames.append(draw_points(before_frames[step], *self.coords))
        self.queue = self.queue[result.steps :]
        self.steps += result.steps
        self.success = self.success or any(result.success)
        self.error = result.error or self.error
        self.obs, self.objects = result.obs, result.objects[-1]
        self.done = result.done or self.steps >= max_steps or bool(self.error)


def default_workers(local_ranks: int = 1) -> int:
    """Env workers per rank: the CPU cores this process may use, shared by the ``local_ranks`` on its node."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, local_ranks))


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


def _record(episode: _Episode) -> EpisodeRecord:
    # 3 decimals (a tenth of a percent of the image): identical runs differ around 1e-4 here
    tracking = np.mean(episode.tracking, axis=0).round(3).tolist() if episode.tracking else [None] * 4
    condition = episode.job.condition
    return EpisodeRecord(
        task=condition.env_name,
        env=condition.env_name,
        perturbation=condition.perturbation,
        severity=float(condition.severity),
        seed=episode.job.seed,
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


def run_episodes(
    runner: PolicyRunner,
    pool: EnvPool,
    jobs: list[Job],
    max_steps: int,
    execution: Execution,
    on_record: Callable[[EpisodeRecord], None],
    on_video: Callable[[Condition, int, list[np.ndarray]], None] | None = None,
    render_every_step: bool = False,
    batched_policy: bool = False,
) -> None:
    """Run ``jobs`` on ``pool``'s workers; ``on_record`` gets each finished episode, in the
    order they finish, and ``on_video(condition, seed, frames)`` the first-camera frames (with
    the sampled points drawn) of ``Job.video`` episodes.

    max_steps: per-episode limit (env steps); execution: what is executed of each chunk;
    render_every_step: one env step per worker call, every camera rendered at every step (the
    reference the chunked calls must match: same records, only slower); batched_policy: one
    policy call per round for every episode that needs actions (faster on a GPU) instead of one
    per episode; batched, an episode's actions depend in their last bits on the episodes that
    share its batch (5e-7 measured on CPU), so results can change with the workers and ranks.
    """
    pending = deque(jobs)
    crashes: dict[tuple[str, str, float, int], int] = {}
    slots: list[_Episode | None] = [None] * len(pool)

    def lost(index: int, err: WorkerDied) -> None:
        """Worker ``index`` died: replace it; its episode runs again (or, the second time, is an error)."""
        pool.restart(index)
        episode, slots[index] = slots[index], None
        crashes[episode.job.key] = crashes.get(episode.job.key, 0) + 1
        if crashes[episode.job.key] >= CRASHES_BEFORE_ERROR:
            episode.error = f"worker crashed {crashes[episode.job.key]} times ({err})"
            on_record(_record(episode))
        else:
            pending.appendleft(episode.job)

    def finish(index: int) -> None:
        episode, slots[index] = slots[index], None
        on_record(_record(episode))
        if episode.frames is not None and on_video is not None:
            on_video(episode.job.condition, episode.job.seed, episode.frames)

    def exchange(orders: Iterable[tuple[int, tuple[str, Any]]]) -> dict[int, Any]:
        """Send each worker its command as soon as ``orders`` yields it, then collect the answers
        (the workers run in parallel, and meanwhile with the making of the later orders)."""
        answers, sent = {}, []
        for index, (command, payload) in orders:
            try:
                pool.send(index, command, payload)
                sent.append(index)
            except WorkerDied as err:
                lost(index, err)
        for index in sent:
            try:
                answers[index] = pool.recv(index)
            except WorkerDied as err:
                lost(index, err)
        return answers

    def run_orders(running: list[int], first_camera: str) -> Iterator[tuple[int, tuple[str, Any]]]:
        """Each running episode's next ``run``, planned (unbatched) just before it is sent: the
        workers already sent their chunks step while the later episodes are planned."""
        need_plan = [i for i in running if not len(slots[i].queue)]
        if batched_policy and need_plan:
            _plan(runner, [slots[i] for i in need_plan], first_camera)
        for index in running:
            episode = slots[index]
            if not len(episode.queue):
                _plan(runner, [episode], first_camera)
            actions = episode.queue[: max_steps - episode.steps]
            if render_every_step:
                actions = actions[:1]
            yield index, ("run", (actions, episode.frames is not None, render_every_step))

    while pending or any(slots):
        starting = {}
        for index in range(len(pool)):
            if slots[index] is None and pending:
                job = pending.popleft()
                slots[index] = _Episode(job, execution.start())
                starting[index] = ("reset", (job.condition, job.seed))
        for index, reset in exchange(starting.items()).items():
            slots[index].started_with(reset)
            if slots[index].done:
                finish(index)
        running = [i for i, episode in enumerate(slots) if episode is not None]
        if not running:
            continue
        first_camera = next(iter(slots[running[0]].obs["images"]))
        for index, result in exchange(run_orders(running, first_camera)).items():
            slots[index].executed(result, first_camera, max_steps)
            if slots[index].done:
                finish(index)


def _plan(runner: PolicyRunner, episodes: list[_Episode], first_camera: str) -> None:
    """One batched policy call for ``episodes``; each gets its next actions and sampled points."""
    started = time.perf_counter()
    cameras = episodes[0].obs["images"]
    plan = runner.act(
        {c: np.stack([e.obs["images"][c] for e in episodes]) for c in cameras},
        np.stack([e.obs["proprio"] for e in episodes]),
        [e.instruction for e in episodes],
        [noise_seed(e.job.seed, len(e.tokens)) for e in episodes],
    )
    share = (time.perf_counter() - started) / len(episodes)
    for row, episode in enumerate(episodes):
        episode.policy_seconds += share
        episode.tokens.append(float(plan["tokens_per_image"][row]))
        episode.gflops.append(float(plan["gflops"][row]))
        episode.queue = episode.executor.actions(plan["actions"][row])
        episode.coords = (plan["coords"][first_camera][row], plan["masks"][first_camera][row])


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
    """``run_episodes`` for one condition on a pool of its own (``workers`` processes, fewer
    when there are fewer seeds), executing ``replan_every`` actions of each chunk;
    ``on_video(seed, frames)`` for the ``video_seeds``; env_factory: builds a worker's env."""
    jobs = [Job(condition, seed, seed in video_seeds) for seed in seeds]
    with EnvPool(max(1, min(workers, len(jobs))), env_factory) as pool:
        run_episodes(
            runner,
            pool,
            jobs,
            max_steps,
            Execution("chunk", replan_every),
            on_record,
            None if on_video is None else lambda _condition, seed, frames: on_video(seed, frames),
            render_every_step,
        )


def record_to_json(record: EpisodeRecord) -> dict[str, Any]:
    return asdict(record)
