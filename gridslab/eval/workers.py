"""Env worker processes that live for a whole evaluation, one env each, one chunk per call.

A worker (a forkserver process: forked workers that render hang) holds one env, built by
``env_factory(condition)`` and rebuilt only when it is asked to reset under another
condition (task x perturbation x severity). It answers three commands over its pipe:

    probe(condition, seed)             -> ``ProbeResult``: builds and resets that env (kept for
                                          the next episode), its episode limit or why it fails
    reset(condition, seed)             -> ``ResetResult``: the episode's first observation
    run(actions [n, A], frames, every) -> ``ChunkResult``: the n actions executed, one env step
                                          each (fewer when the episode ends), in one call

During ``run`` the cameras render only on the last step, the observation the next policy call
reads; with ``frames`` (a video episode) or ``every`` (per-step rendering) on every step. The
steps in between still simulate, check success and project the task objects into the first
camera (``object_xy``, for the tracking diagnostics). Env exceptions are caught inside the
worker by ``SafeEnv``; a worker process that dies shows as ``WorkerDied`` on its pipe, and
``EnvPool.restart`` replaces it without touching the other workers.

Workers fork from a forkserver that has imported ``gridslab.eval.preload`` (robosuite, numba's
compiled transforms, the GL backend probe): a worker starts in milliseconds and only builds
its env, and the pool starts while the main process still prepares the policy.
"""

from __future__ import annotations

import functools
import multiprocessing
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable

import gymnasium as gym
import numpy as np

WORKER_CONTEXT = "forkserver"
FORKSERVER_PRELOAD = ["gridslab.eval.preload"]
CLOSE_TIMEOUT_S = 5.0


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


class SafeEnv(gym.Wrapper):
    """Turns an exception or a non-finite observation inside ``reset``/``step`` into a
    terminated episode with ``info["error"]``; the env is rebuilt before the next reset.

    ``render_images``: whether the next ``step`` renders the cameras (envs with
    ``set_image_rendering``); off, its images are stale. Resets render."""

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


@dataclass
class ResetResult:
    """A new episode: obs {images {camera: uint8 [H, W, 3]}, proprio float32 [P]}; objects:
    the task objects in the first camera ``[N, 2]`` (image units) when the env reports them."""

    obs: dict[str, Any]
    instruction: str
    error: str
    objects: np.ndarray | None


@dataclass
class ChunkResult:
    """What one ``run`` call executed. obs: the observation after its last step (images
    rendered there); success: per executed step; done: the episode ended (terminated,
    truncated or an env error); objects: after each executed step (first camera, as in
    ``ResetResult``); frames: the first camera's image after each step (video episodes)."""

    obs: dict[str, Any]
    success: list[bool]
    done: bool
    error: str
    objects: list[np.ndarray | None]
    frames: list[np.ndarray] | None

    @property
    def steps(self) -> int:
        return len(self.success)


def _objects(info: dict[str, Any], camera: str) -> np.ndarray | None:
    per_camera = info.get("object_xy")
    if not isinstance(per_camera, dict) or camera not in per_camera:
        return None
    return np.asarray(per_camera[camera], dtype=np.float32)


def _first_camera(env: gym.Env) -> str:
    return next(iter(env.observation_space["images"].spaces))


@dataclass
class ProbeResult:
    """A condition's env built and reset: its max_steps (env steps), or the exception that
    stopped it (an ``envs.EnvUserError`` is a bad env setting; the caller reports it)."""

    max_steps: int = 0
    error: BaseException | None = None


def probe_env(env_factory: Callable[[Condition], gym.Env], condition: Condition, seed: int) -> tuple[gym.Env | None, ProbeResult]:
    """Build ``condition``'s env and reset it with ``seed``: (the env, or None when it failed; the result)."""
    env = None
    try:
        env = env_factory(condition)
        (env.env if isinstance(env, SafeEnv) else env).reset(seed=seed)  # its exceptions, not SafeEnv's record
    except Exception as err:  # noqa: BLE001 - the caller reports it in one line
        if env is not None:
            env.close()
        return None, ProbeResult(error=err)
    return env, ProbeResult(max_steps=int(env.unwrapped.max_steps))


def reset_episode(env: gym.Env, seed: int) -> ResetResult:
    obs, info = env.reset(seed=seed)
    return ResetResult(obs, str(info.get("instruction", "")), str(info.get("error", "")), _objects(info, _first_camera(env)))


def run_chunk(env: gym.Env, actions: np.ndarray, frames: bool, every_step: bool) -> ChunkResult:
    """Execute ``actions [n, A]`` on ``env`` (a ``SafeEnv``) until they run out or the episode ends."""
    camera = _first_camera(env)
    result = ChunkResult({}, [], False, "", [], [] if frames else None)
    for index, action in enumerate(actions):
        env.render_images = every_step or frames or index == len(actions) - 1
        obs, _, terminated, truncated, info = env.step(action)
        result.obs = obs
        result.success.append(bool(info.get("success", False)))
        result.objects.append(_objects(info, camera))
        result.error = str(info.get("error", ""))
        if result.frames is not None:
            result.frames.append(obs["images"][camera])
        if terminated or truncated or result.error:
            result.done = True
            break
    return result


def _serve(pipe: Connection, env_factory: Callable[[Condition], gym.Env]) -> None:
    """A worker's loop: build/reset/run on request until ``close`` (or the pipe closes)."""
    env, condition = None, None
    try:
        while True:
            command, payload = pipe.recv()
            if command == "close":
                return
            try:
                if command == "probe":
                    wanted, seed = payload
                    if env is not None:
                        env.close()
                    env, condition = None, None
                    env, answer = probe_env(env_factory, wanted, seed)
                    condition = wanted if env is not None else None
                    pipe.send(("ok", answer))
                elif command == "reset":
                    wanted, seed = payload
                    if env is None or wanted != condition:
                        if env is not None:
                            env.close()
                        env, condition = None, None
                        env, condition = env_factory(wanted), wanted
                    pipe.send(("ok", reset_episode(env, seed)))
                else:
                    pipe.send(("ok", run_chunk(env, *payload)))
            except Exception:  # noqa: BLE001 - not an env failure (SafeEnv takes those): the caller raises it
                pipe.send(("raised", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        return
    finally:
        if env is not None:
            env.close()


class WorkerDied(Exception):
    """A worker process ended while it had a command to answer (segfault, OOM kill, ...)."""


class EnvPool:
    """``size`` env worker processes for a whole evaluation (``env_factory(condition)`` builds
    a worker's env, module level so forkserver workers can unpickle it).

    ``send(i, ...)`` then ``recv(i)`` talks to worker i; ``recv`` raises ``WorkerDied`` when
    it died and ``RuntimeError`` with the worker's traceback for any other failure."""

    def __init__(self, size: int, env_factory: Callable[[Condition], gym.Env] = make_safe_env):
        self.env_factory = env_factory
        self.context = multiprocessing.get_context(WORKER_CONTEXT)
        self.context.set_forkserver_preload(FORKSERVER_PRELOAD)  # read when the forkserver first starts
        # The first start waits for the forkserver's preload (seconds): a thread starts the
        # workers while the caller goes on; commands sent meanwhile wait in their pipes.
        pipes = [self.context.Pipe() for _ in range(size)]
        self.workers: list[tuple[Any, Connection]] = [(None, parent) for parent, _ in pipes]
        self._start_error: BaseException | None = None
        self._starting: threading.Thread | None = threading.Thread(target=self._start_all, args=(pipes,), daemon=True)
        self._starting.start()

    def __len__(self) -> int:
        return len(self.workers)

    def _start_all(self, pipes: list[tuple[Connection, Connection]]) -> None:
        try:
            for index, pipe in enumerate(pipes):
                self.workers[index] = self._start(pipe)
        except BaseException as err:  # noqa: BLE001 - raised in the caller's thread by ``_started``
            self._start_error = err

    def _started(self, reraise: bool = True) -> None:
        """Wait until every worker process has started (re-raising a failure to start one)."""
        if self._starting is not None:
            self._starting.join()
            self._starting = None
        if self._start_error is not None and reraise:
            raise self._start_error

    def _start(self, pipe: tuple[Connection, Connection] | None = None) -> tuple[Any, Connection]:
        parent, child = pipe or self.context.Pipe()
        process = self.context.Process(target=_serve, args=(child, self.env_factory), daemon=True)
        process.start()
        child.close()
        return process, parent

    def send(self, index: int, command: str, payload: Any) -> None:
        try:
            self.workers[index][1].send((command, payload))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as err:
            raise WorkerDied(type(err).__name__) from None

    def recv(self, index: int) -> Any:
        self._started()
        try:
            status, value = self.workers[index][1].recv()
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as err:
            raise WorkerDied(type(err).__name__) from None
        if status == "raised":
            raise RuntimeError(f"env worker {index} failed:\n{value}")
        return value

    def restart(self, index: int) -> None:
        """Replace worker ``index`` (dead or not) by a fresh one with no env yet."""
        self._started()
        process, pipe = self.workers[index]
        pipe.close()
        process.kill()
        process.join()
        self.workers[index] = self._start()

    def close(self, terminate: bool = False) -> None:
        """Stop every worker: ask them to close (or kill them, ``terminate``), then reap them."""
        self._started(reraise=False)
        for process, pipe in self.workers:
            if process is not None and not terminate:
                try:
                    pipe.send(("close", None))
                except OSError:
                    pass
        for process, pipe in self.workers:
            if process is None:  # never started
                pipe.close()
                continue
            if not terminate:
                process.join(CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
            pipe.close()
        self.workers = []

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        self.close(terminate=kind is not None)
