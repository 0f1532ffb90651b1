"""Collect scripted-expert demonstrations into one HDF5 file per task (see ``hdf5_format``).

    python -m envs.collect --env robosuite/Stack     # -> data/robosuite_Stack_84px.hdf5
    python -m envs.collect --env tabletop_spatial --episodes 20 --image-size 128   # one file per task

Without ``--out`` each task's demos go to the file training reads for it
(``envs.registry.dataset_paths``: ``data/<env>_<size>px.hdf5``); the defaults (cameras, image
size, render quality, episodes, noise) are training's (``gridslab.config`` ``EnvConfig`` /
``conf/data/default.yaml``), so ``train.py conf=robosuite_stack`` finds this file.

Crash-safe and resumable: each successful episode is written to its own shard
(``<out>.parts/demo_<seed>.hdf5``, written to a temp name then renamed), and the final
file is assembled from the shards at the end (again temp + rename). An interrupted run
picks up the finished shards; a finished file with fewer demos than asked is extended.
A suite's tasks are collected ``--workers`` at a time, one process each (the files are the
ones one process writes). Only successful episodes are kept: a failed expert episode is retried with the next seed
(at most ``MAX_ATTEMPTS_PER_DEMO`` attempts per demo in all) and reported in one line at the
end, with its seeds. Executed actions get Gaussian noise on xyz (``--noise``) while the clean
expert action is stored, so the data covers recoveries.

A suite whose files have a layout of their own (LIBERO: ``envs.registry.dataset_writer``) gets
its missing files written in that layout from the shards (``<root>/libero/<suite>/<task>_demo.hdf5``,
LIBERO's own); an existing file there, LIBERO's human demonstrations or a finished collection,
is used as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from envs.errors import EnvUserError, run_cli
from envs.experts import Transition, rollout_expert
from envs.hdf5_format import demo_keys, write_demo, write_file_attrs
from envs.registry import check_datasets, dataset_paths, dataset_writer, expand, make

# Envs with stored initial states (tabletop, LIBERO) draw a fresh scene for each demonstration
# instead, so no demonstration starts from a state evaluations use; other envs ignore the option.
SAMPLED_SCENES = {"init_state": "sampled"}
MAX_ATTEMPTS_PER_DEMO = 3  # give up after this many expert failures per requested demo
DATA_ROOT = "data"  # where training looks for demonstrations by default (``data.root``)


def default_workers() -> int:
    """Processes a suite's collection uses by default: the CPU cores this process may run on."""
    return len(os.sched_getaffinity(0))


def _shard_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _atomic_h5(path: Path):
    """Open ``path``'s temp sibling for writing; the caller renames it when done."""
    tmp = path.with_name(path.name + ".tmp")
    return tmp, h5py.File(tmp, "w")


def _existing_demos(out: Path, env_name: str) -> list[tuple[Path, str, int]]:
    """(file, group, seed) of demos already in ``out`` and its shard folder."""
    found: list[tuple[Path, str, int]] = []
    if out.exists():
        try:
            with h5py.File(out, "r") as f:
                data = f["data"]
                if data.attrs.get("env_name") != env_name:
                    raise EnvUserError(
                        f"{out} holds demos of {data.attrs.get('env_name')!r}, not {env_name!r}; choose another --out"
                    )
                found += [(out, f"data/{k}", int(data[k].attrs["seed"])) for k in demo_keys(data)]
        except (OSError, KeyError) as err:
            raise EnvUserError(
                f"{out} is not a readable demonstration file ({err}); move it away or choose another --out"
            ) from None
    shards = _shard_dir(out)
    if shards.is_dir():
        for shard in sorted(shards.glob("demo_*.hdf5")):
            found.append((shard, "data/demo_0", int(shard.stem.split("_")[1])))
    return found


def read_shard(path: Path) -> dict[str, Any]:
    """One collected demo back from its shard: images {camera: uint8 [T, H, W, 3]} (right side
    up), proprio float32 [T, 9], actions [T, 7], states [T, S], joint_states [T, J] (arm joint
    positions, rad), seed; what a suite's own ``writer`` receives."""
    with h5py.File(path, "r") as f:
        demo = f["data/demo_0"]
        obs = demo["obs"]
        images = {key[: -len("_rgb")]: obs[key][:] for key in obs if key.endswith("_rgb")}
        return {
            "images": images,
            "proprio": obs["proprio"][:],
            "joint_states": obs["joint_states"][:],
            "actions": demo["actions"][:],
            "states": demo["states"][:],
            "seed": int(demo.attrs["seed"]),
        }


def collect_one(env: Any, seed: int, action_noise: float) -> dict[str, list[Any]] | None:
    """One expert episode's per-step records, or None if the expert failed."""
    steps: dict[str, list[Any]] = {"obs": [], "actions": [], "rewards": [], "dones": [], "states": []}

    def record(transition: Transition) -> None:
        steps["obs"].append(transition.obs)
        steps["states"].append(transition.sim_state)
        steps["actions"].append(transition.action)
        steps["rewards"].append(transition.reward)
        steps["dones"].append(transition.done)

    success, _ = rollout_expert(env, seed, action_noise=action_noise, on_step=record, reset_options=SAMPLED_SCENES)
    return steps if success else None


def collect(
    env_name: str,
    episodes: int,
    out: Path,
    env_kwargs: dict[str, Any] | None = None,
    action_noise: float = 0.1,
    seed: int = 0,
    progress: bool = True,
    label: str | None = None,
) -> Path:
    """Collect ``episodes`` successful demos of ``env_name`` into ``out``; returns ``out``.
    ``label`` names the progress bar (default: ``env_name``)."""
    if episodes < 1:
        raise EnvUserError(f"episodes={episodes} must be >= 1")
    if action_noise < 0:
        raise EnvUserError(f"noise={action_noise} must be >= 0")
    env_kwargs = dict(env_kwargs or {})
    out = Path(out)
    if _finished(env_name, out, episodes):
        return out
    writer = dataset_writer(env_name)
    if writer is not None:
        env_kwargs.update(writer.env_kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _existing_demos(out, env_name)
    env = make(env_name, **env_kwargs)
    cameras = tuple(env.unwrapped.cameras)
    shards = _shard_dir(out)
    shards.mkdir(exist_ok=True)
    used_seeds = {s for _, _, s in done}
    next_seed = max(used_seeds | {seed - 1}) + 1
    attempts, started = 0, time.perf_counter()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]collect[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("expert success {task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(label or env_name, total=episodes, completed=min(len(done), episodes), rate="-")
        failures: list[int] = []
        try:
            while len(done) < episodes:
                if attempts >= MAX_ATTEMPTS_PER_DEMO * episodes:
                    raise EnvUserError(
                        f"the expert for {env_name} failed {len(failures)} of {attempts} episodes "
                        f"(seeds {_seed_list(failures)}); not enough demos"
                    )
                steps = collect_one(env, next_seed, action_noise)
                attempts += 1
                if steps is None:
                    failures.append(next_seed)
                else:
                    shard = shards / f"demo_{next_seed}.hdf5"
                    tmp, handle = _atomic_h5(shard)
                    with handle:
                        group = handle.create_group("data/demo_0")
                        write_demo(group, steps, cameras, next_seed)
                        if writer is not None:
                            group["obs"].create_dataset("joint_states", data=_joint_states(env, steps["states"]))
                    os.replace(tmp, shard)
                    done.append((shard, "data/demo_0", next_seed))
                next_seed += 1
                bar.update(task, completed=len(done), rate=f"{(attempts - len(failures)) / attempts:.0%}")
        finally:
            env.close()
    if failures:
        print(
            f"{label or env_name}: the expert failed {len(failures)} of {attempts} episodes "
            f"(seeds {_seed_list(failures)}); each was retried with the next seed, none was kept"
        )
    collector = {
        "episodes": episodes,
        "action_noise": action_noise,
        "seed": seed,
        "attempts_this_run": attempts,
        "expert_failures_this_run": len(failures),
        "failed_seeds_this_run": failures,
        "seconds_this_run": round(time.perf_counter() - started, 1),
    }
    if writer is None:
        _assemble(out, done, env_name, env_kwargs, env.unwrapped.instruction, collector)
    else:
        tmp = out.with_name(out.name + ".tmp")
        writer.write(tmp, (read_shard(path) for path, _, _ in sorted(done, key=lambda d: d[2])), env_name, collector)
        os.replace(tmp, out)
    shutil.rmtree(shards)
    return out


def collect_all(
    jobs: list[tuple[str, Path]],
    episodes: int,
    env_kwargs: dict[str, Any] | None = None,
    action_noise: float = 0.1,
    seed: int = 0,
    workers: int = 1,
) -> list[Path]:
    """``collect`` each (env name, file) of ``jobs``; returns the files, in order. With
    ``workers`` > 1, up to that many tasks at once, one spawned process each: a task's demos
    depend only on its own seeds, so the files are the ones one process writes. A task
    collected in parallel says one line when it is done instead of drawing a progress bar."""
    labels = [f"{name} ({index + 1}/{len(jobs)})" if len(jobs) > 1 else name for index, (name, _) in enumerate(jobs)]
    pending = [index for index, (name, out) in enumerate(jobs) if not _finished(name, out, episodes)]
    if workers <= 1 or len(pending) <= 1:
        return [
            collect(name, episodes, out, env_kwargs, action_noise, seed, label=label) for (name, out), label in zip(jobs, labels)
        ]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = min(workers, len(pending))
    print(f"collect {len(pending)} tasks, {workers} at a time (one process each)", flush=True)
    context = multiprocessing.get_context("spawn")  # no forked MuJoCo or GL state
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(collect, jobs[i][0], episodes, jobs[i][1], env_kwargs, action_noise, seed, False): i for i in pending
        }
        for future in as_completed(futures):
            print(f"collected {labels[futures[future]]}: {future.result()}", flush=True)
    return [out for _, out in jobs]


def _finished(env_name: str, out: Path, episodes: int) -> bool:
    """Whether ``out`` holds ``episodes`` demos of ``env_name`` and no unassembled shards;
    for a suite with a layout of its own, whether the file is there at all (e.g. LIBERO's
    human demonstrations: used as it is)."""
    if dataset_writer(env_name) is not None:
        return out.exists()
    return out.exists() and not _shard_dir(out).exists() and len(_existing_demos(out, env_name)) >= episodes


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds[:10])) + (f" and {len(seeds) - 10} more" if len(seeds) > 10 else "")


def _joint_states(env: Any, states: list[np.ndarray]) -> np.ndarray:
    """Arm joint positions ``[T, J]`` (rad) from flattened MuJoCo states ``[T, S]`` (time, qpos, ...)."""
    joints = np.asarray(env.unwrapped.sim_env.robots[0]._ref_joint_pos_indexes)
    return np.stack(states)[:, 1 + joints]


def _assemble(
    out: Path, demos: list[tuple[Path, str, int]], env_name: str, env_kwargs: dict, instruction: str, collector: dict
) -> None:
    """Copy every demo (sorted by seed) into a fresh ``out`` (temp file, then rename)."""
    tmp, handle = _atomic_h5(out)
    with handle:
        data = handle.create_group("data")
        write_file_attrs(data, env_name, env_kwargs, instruction, collector)
        total = 0
        for index, (path, group, _) in enumerate(sorted(demos, key=lambda d: d[2])):
            with h5py.File(path, "r") as source:
                source.copy(source[group], data, name=f"demo_{index}")
            total += int(data[f"demo_{index}"].attrs["num_samples"])
        data.attrs["total"] = total
    os.replace(tmp, out)


def targets(env: str, out: Path | None, image_size: int, root: str = DATA_ROOT) -> list[tuple[str, Path]]:
    """(env name, output file) for each task ``env`` (an env or a suite) stands for: ``out`` for
    one env, else the file training reads for that task at ``image_size`` px."""
    names = expand(env)
    if out is not None:
        if len(names) > 1:
            raise EnvUserError(f"--out names one file but {env!r} is a suite of {len(names)} tasks; leave --out out")
        return [(names[0], out)]
    if not check_datasets(env, root):
        raise EnvUserError(f"{env!r} ships its own demonstration files; the scripted experts do not collect them")
    return list(zip(names, dataset_paths(env, root, image_size)))


def build_parser() -> argparse.ArgumentParser:
    """The CLI's arguments; every default is the one training uses."""
    parser = argparse.ArgumentParser(description="Collect scripted-expert demonstrations into LIBERO-format HDF5.")
    parser.add_argument("--env", default="robosuite/Lift", help="registered env or suite name (see envs.names())")
    parser.add_argument("--episodes", type=int, default=100, help="successful demonstrations to keep per task")
    parser.add_argument(
        "--out", type=Path, default=None, help="output file (default: the one training reads, data/<env>_<size>px.hdf5)"
    )
    parser.add_argument("--cameras", default="agentview,robot0_eye_in_hand", help="comma-separated camera names")
    parser.add_argument("--image-size", type=int, default=84, help="image side in pixels")
    parser.add_argument("--render-quality", default="fast", help="fast or full")
    parser.add_argument("--noise", type=float, default=0.1, help="std of noise on executed xyz actions")
    parser.add_argument("--seed", type=int, default=0, help="first episode seed")
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help="tasks of a suite collected at once (default: the usable CPU cores)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks (read by envs.errors.run_cli)")
    return parser


def _summary(path: Path) -> str:
    """One JSON line describing the demonstration file ``path``."""
    with h5py.File(path, "r") as f:
        data = f["data"]
        return json.dumps(
            {
                "file": str(path),
                "demos": len(demo_keys(data)),
                "samples": int(data.attrs["total"]),
                "megabytes": round(path.stat().st_size / 2**20, 1),
            }
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m envs.collect ...``: collect, then print one summary line per file written."""
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        raise EnvUserError(f"--workers {args.workers} must be >= 1 (tasks collected at once)")
    env_kwargs = {"cameras": args.cameras.split(","), "image_size": args.image_size, "render_quality": args.render_quality}
    paths = collect_all(
        targets(args.env, args.out, args.image_size), args.episodes, env_kwargs, args.noise, args.seed, args.workers
    )
    for path in paths:
        print(_summary(path))
    return 0


if __name__ == "__main__":
    run_cli(main)
