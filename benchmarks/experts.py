"""Scripted-expert success over N seeded episodes per task (no action noise, and with
the collector's default noise); writes benchmarks/results/<name>.{json,md}.

    python benchmarks/experts.py --episodes 50                       # robosuite tasks -> experts.md
    python benchmarks/experts.py --tasks tabletop_spatial,tabletop_object --episodes 20 --noise 0 --name experts_tabletop

``--tasks`` takes env names or suites. Tabletop tasks start from their stored initial
states (episode seed i -> state i), the states evaluations use.
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


def measure(task: str, episodes: int, noise: float) -> dict:
    env = envs.make(task, cameras=["agentview"], image_size=32)
    start, successes, steps = time.perf_counter(), 0, 0
    for seed in range(episodes):
        success, length = rollout_expert(env, seed, action_noise=noise)
        successes += success
        steps += length
    env.close()
    return {
        "task": task,
        "instruction": env.unwrapped.instruction,
        "noise": noise,
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes,
        "mean_steps": steps / episodes,
        "seconds": round(time.perf_counter() - start, 1),
    }


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
    rows = [measure(task, args.episodes, float(noise)) for task in tasks for noise in args.noise.split(",")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"rows": rows, "versions": package_versions()}, indent=2))
    lines = ["| task | instruction | action noise | success | mean steps |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['task']} | {r['instruction']} | {r['noise']} | {r['successes']}/{r['episodes']} ({r['success_rate']:.0%}) "
        f"| {r['mean_steps']:.0f} |"
        for r in rows
    ]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
