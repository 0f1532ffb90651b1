"""Scripted-expert success over N seeded episodes per task (no action noise, and with
the collector's default noise); writes benchmarks/results/<name>.{json,md}.

    python benchmarks/experts.py --episodes 50                       # robosuite tasks -> experts.md
    python benchmarks/experts.py --tasks tabletop_spatial,tabletop_object --episodes 20 --noise 0 --name experts_tabletop
    python benchmarks/experts.py --tasks libero_spatial,libero_object,libero_goal --episodes 50 --noise 0 --workers 2 --name experts_libero

``--tasks`` takes env names or suites (a suite's tasks without an expert are left out).
Tabletop and LIBERO tasks start from their stored initial states (episode seed i -> state i),
the states evaluations use. Resumable per episode: each finished (task, noise, seed) episode
is appended to ``runs/experts/<name>.jsonl`` at once, a re-run with the same ``--name`` runs
only the episodes missing there, and the committed json/md are rebuilt from that file. The
expert reads simulator state, so no camera renders after an env's first reset: the seconds
and CPU seconds are physics and control (the CPU seconds of the worker process, steadier than
wall time on a shared machine). ``--workers`` processes each keep one env at a time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import envs
from envs.experts import has_expert, rollout_expert
from envs.hdf5_format import package_versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
EPISODES_DIR = ROOT / "runs" / "experts"

_worker_env: dict = {}  # task -> the env this worker process holds (one at a time)


def _env(task: str):
    """This process's env for ``task``, rendering its cameras on its first reset only."""
    if task not in _worker_env:
        for env in _worker_env.values():
            env.close()
        _worker_env.clear()
        env = envs.make(task, cameras=["agentview"], image_size=32)
        env.reset(seed=0)
        env.unwrapped.set_image_rendering(False)  # the images go stale; the expert never reads them
        _worker_env[task] = env
    return _worker_env[task]


def run_one(job: tuple[str, float, int]) -> dict:
    """One expert episode ``(task, noise, seed)`` -> its jsonl record."""
    task, noise, seed = job
    env = _env(task)
    start, cpu_start = time.perf_counter(), time.process_time()
    success, steps = rollout_expert(env, seed, action_noise=noise)
    return {
        "task": task,
        "instruction": env.unwrapped.instruction,
        "noise": noise,
        "seed": seed,
        "init_state": getattr(env.unwrapped, "episode_init_state", None),
        "success": bool(success),
        "steps": steps,
        "seconds": round(time.perf_counter() - start, 2),
        "cpu_seconds": round(time.process_time() - cpu_start, 2),
    }


def read_episodes(path: Path) -> dict[tuple[str, float, int], dict]:
    """The finished episodes in ``path`` by (task, noise, seed); a torn last line is ignored."""
    episodes = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            episodes[(record["task"], record["noise"], record["seed"])] = record
    return episodes


def summarise(task: str, noise: float, records: list[dict]) -> dict:
    """One table row from the episode records of ``task`` at ``noise``."""
    successes = sum(r["success"] for r in records)
    steps = sum(r["steps"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    cpu_seconds = sum(r["cpu_seconds"] for r in records)
    return {
        "task": task,
        "instruction": records[0]["instruction"],
        "noise": noise,
        "episodes": len(records),
        "successes": successes,
        "success_rate": successes / len(records),
        "mean_steps": steps / len(records),
        "failed_seeds": sorted(r["seed"] for r in records if not r["success"]),
        "seconds_per_episode": round(seconds / len(records), 2),
        "cpu_seconds_per_episode": round(cpu_seconds / len(records), 2),
        "env_steps_per_s": round(steps / max(seconds, 1e-9), 1),
    }


def write(name: str, rows: list[dict]) -> None:
    """``<name>.json`` (rows and versions) and ``<name>.md`` (the README table)."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"rows": rows, "versions": package_versions()}, indent=2))
    lines = ["| task | instruction | action noise | success | mean steps |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['task']} | {r['instruction']} | {r['noise']} | {r['successes']}/{r['episodes']} ({r['success_rate']:.0%}) "
        f"| {r['mean_steps']:.0f} |"
        for r in rows
    ]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50, help="episodes per task: seeds (initial states) 0..N-1")
    parser.add_argument(
        "--tasks", default="robosuite/Lift,robosuite/Stack,robosuite/PickPlaceCan", help="comma list of env names or suites"
    )
    parser.add_argument("--noise", default="0.0,0.1", help="comma list of action-noise stds")
    parser.add_argument("--name", default="experts", help="results file stem")
    parser.add_argument("--workers", type=int, default=1, help="episode worker processes")
    args = parser.parse_args(argv)
    tasks = [  # a suite's tasks that have an expert; envs named one by one as they are
        name for entry in args.tasks.split(",") for name in envs.registry.expand(entry) if name == entry or has_expert(name)
    ]
    noises = [float(noise) for noise in args.noise.split(",")]
    log = EPISODES_DIR / f"{args.name}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    episodes = read_episodes(log)
    jobs = [(t, n, s) for t in tasks for n in noises for s in range(args.episodes) if (t, n, s) not in episodes]
    print(f"{len(jobs)} episodes to run ({len(episodes)} already in {log.relative_to(ROOT)})", flush=True)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) if args.workers > 1 else _InProcess() as pool:
        with log.open("a") as out:
            for done, record in enumerate(pool.imap(run_one, jobs), 1):
                out.write(json.dumps(record) + "\n")
                out.flush()
                episodes[(record["task"], record["noise"], record["seed"])] = record
                elapsed = time.perf_counter() - start
                print(
                    f"{record['task']} seed {record['seed']}: {'ok' if record['success'] else 'FAILED'} in "
                    f"{record['steps']} steps, {record['seconds']} s [{done}/{len(jobs)}, "
                    f"{elapsed / done * (len(jobs) - done) / 60:.0f} min left]",
                    flush=True,
                )
    rows = []
    for task in tasks:
        for noise in noises:
            records = [episodes[(task, noise, s)] for s in range(args.episodes)]
            rows.append(summarise(task, noise, records))
    write(args.name, rows)
    print((RESULTS / f"{args.name}.md").read_text())


class _InProcess:
    """``Pool``'s ``imap`` in this process (one worker)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for env in _worker_env.values():
            env.close()
        _worker_env.clear()

    def imap(self, function, jobs):
        return map(function, jobs)


if __name__ == "__main__":
    main()
