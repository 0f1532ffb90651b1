"""Scripted-expert success over N seeded episodes per task (no action noise, and with
the collector's default noise); writes benchmarks/results/<name>.{json,md}.

    python benchmarks/experts.py --episodes 50                       # robosuite tasks -> experts.md
    python benchmarks/experts.py --tasks tabletop_spatial,tabletop_object --episodes 20 --noise 0 --name experts_tabletop
    python benchmarks/experts.py --tasks libero_spatial,libero_object --episodes 10 --noise 0 --name experts_libero

``--tasks`` takes env names or suites. Tabletop and LIBERO tasks start from their stored
initial states (episode seed i -> state i), the states evaluations use. Resumable: every
finished (task, noise) row is written at once, and a re-run with the same ``--name`` and
``--episodes`` keeps those rows and runs only the rest. Episodes render no camera after their
reset (the expert reads simulator state), so the seconds column is physics and control.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import envs
from envs.experts import rollout_expert
from envs.hdf5_format import package_versions

RESULTS = Path(__file__).parent / "results"


class _NoRendering:
    """Wraps an env so that every ``reset`` (which renders) is followed by steps that do not."""

    def __init__(self, env):
        self.env, self.unwrapped = env, env.unwrapped

    def reset(self, **kwargs):
        self.unwrapped.set_image_rendering(True)
        result = self.env.reset(**kwargs)
        self.unwrapped.set_image_rendering(False)
        return result

    def step(self, action):
        return self.env.step(action)


def measure(task: str, episodes: int, noise: float) -> dict:
    env = envs.make(task, cameras=["agentview"], image_size=32)
    start, successes, steps, failed = time.perf_counter(), 0, 0, []
    for seed in range(episodes):
        success, length = rollout_expert(_NoRendering(env), seed, action_noise=noise)
        successes += success
        steps += length
        if not success:
            failed.append(seed)
    env.close()
    seconds = time.perf_counter() - start
    return {
        "task": task,
        "instruction": env.unwrapped.instruction,
        "noise": noise,
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes,
        "mean_steps": steps / episodes,
        "failed_seeds": failed,
        "seconds": round(seconds, 1),
        "env_steps_per_s": round(steps / seconds, 1),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument(
        "--tasks", default="robosuite/Lift,robosuite/Stack,robosuite/PickPlaceCan", help="comma list of env names or suites"
    )
    parser.add_argument("--noise", default="0.0,0.1", help="comma list of action-noise stds")
    parser.add_argument("--name", default="experts", help="results file stem")
    args = parser.parse_args()
    tasks = [name for entry in args.tasks.split(",") for name in envs.registry.expand(entry)]
    stored = RESULTS / f"{args.name}.json"
    done = {}
    if stored.exists():
        done = {(r["task"], r["noise"]): r for r in json.loads(stored.read_text())["rows"] if r["episodes"] == args.episodes}
    rows = []
    for task in tasks:
        for noise in map(float, args.noise.split(",")):
            row = done.get((task, noise)) or measure(task, args.episodes, noise)
            rows.append(row)
            write(args.name, rows)
            print(f"{task} noise {noise}: {row['successes']}/{row['episodes']} in {row['seconds']} s", flush=True)
    print((RESULTS / f"{args.name}.md").read_text())


if __name__ == "__main__":
    main()
