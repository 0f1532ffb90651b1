"""Scripted-expert success over N seeded episodes per task (no action noise, and with
the collector's default noise); writes benchmarks/results/experts.{json,md}.

    python benchmarks/experts.py --episodes 50
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
    env = envs.make(f"robosuite/{task}", cameras=["agentview"], image_size=32)
    start, successes, steps = time.perf_counter(), 0, 0
    for seed in range(episodes):
        success, length = rollout_expert(env, seed, action_noise=noise)
        successes += success
        steps += length
    env.close()
    return {"task": task, "noise": noise, "episodes": episodes, "successes": successes,
            "success_rate": successes / episodes, "mean_steps": steps / episodes,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--tasks", default="Lift,Stack,PickPlaceCan")
    args = parser.parse_args()
    rows = [measure(task, args.episodes, noise) for task in args.tasks.split(",") for noise in (0.0, 0.1)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "experts.json").write_text(json.dumps({"rows": rows, "versions": package_versions()}, indent=2))
    lines = ["| task | action noise | success | mean steps |", "|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['noise']} | {r['successes']}/{r['episodes']} ({r['success_rate']:.0%}) | {r['mean_steps']:.0f} |" for r in rows]
    (RESULTS / "experts.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
