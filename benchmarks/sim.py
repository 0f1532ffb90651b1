"""Simulator throughput: env steps/s with rendering (fast vs full quality, 84/128/224 px),
physics only, random-action vector envs with 1 vs N forkserver workers, and rollouts with
the policy in the loop (``gridslab.eval.rollout``: batched policy calls, action chunks) when
``--ckpt`` names a checkpoint. Writes benchmarks/results/sim.{json,md}.

    python benchmarks/sim.py [--env robosuite/Lift] [--steps 200] [--workers 1,2] [--ckpt runs/robosuite_lift/checkpoints/last.ckpt]
    python benchmarks/sim.py --env tabletop_spatial/0 --name sim_tabletop   # -> results/sim_tabletop.{json,md}
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

import envs
from envs.hdf5_format import package_versions

RESULTS = Path(__file__).parent / "results"
CAMERAS = ["agentview", "robot0_eye_in_hand"]


def single_env_rate(env_name: str, steps: int, **kwargs) -> float:
    env = envs.make(env_name, **kwargs)
    env.reset(seed=0)
    action = np.zeros(7, np.float32)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def physics_only_rate(env_name: str, steps: int) -> float:
    """The env's robosuite simulation with no camera observations at all (the simulator's own floor)."""
    env = envs.make(env_name, cameras=["agentview"], image_size=16)
    sim_env = env.unwrapped.sim_env
    sim_env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        sim_env.robots[0].control(np.zeros(7), policy_step=True)
        for _ in range(int(sim_env.control_timestep / sim_env.model_timestep)):
            sim_env.sim.step()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def make_env(env_name: str, image_size: int):
    return envs.make(env_name, cameras=CAMERAS, image_size=image_size)


def vector_rate(env_name: str, workers: int, steps: int, image_size: int) -> float:
    from gymnasium.vector import AsyncVectorEnv

    vector = AsyncVectorEnv(
        [functools.partial(make_env, env_name, image_size)] * workers, context="forkserver", shared_memory=False
    )
    vector.reset(seed=0)
    actions = np.zeros((workers, 7), np.float32)
    start = time.perf_counter()
    for _ in range(steps):
        vector.step(actions)
    rate = workers * steps / (time.perf_counter() - start)
    vector.close()
    return rate


def rollout_rate(checkpoint: str, workers: int, episodes: int, max_steps: int) -> float:
    """Env steps/s of seeded rollouts of the policy at ``checkpoint`` (clean condition)."""
    from gridslab.config import env_kwargs
    from gridslab.eval.checkpoint import load_policy
    from gridslab.eval.rollout import Condition, PolicyRunner, run_condition

    policy, cfg, _ = load_policy(checkpoint)
    records = []
    start = time.perf_counter()
    run_condition(
        PolicyRunner(policy),
        Condition(cfg.env.name, env_kwargs(cfg.env)),
        list(range(episodes)),
        max_steps,
        cfg.policy.replan_every or cfg.policy.chunk,
        workers,
        records.append,
    )
    return sum(r.steps for r in records) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", default="robosuite/Lift", help="registered env name")
    parser.add_argument("--name", default="sim", help="results file stem")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--ckpt", default="", help="also time rollouts of this checkpoint's policy")
    parser.add_argument("--episodes", type=int, default=8, help="rollout episodes per worker setting")
    args = parser.parse_args()
    rows = [{"setting": "physics only (no rendering)", "steps_per_s": physics_only_rate(args.env, args.steps * 2)}]
    for size in (84, 128, 224):
        for quality in ("fast", "full"):
            rate = single_env_rate(args.env, args.steps, cameras=CAMERAS, image_size=size, render_quality=quality)
            rows.append({"setting": f"2 cameras {size} px, render {quality}", "steps_per_s": rate})
            print(json.dumps(rows[-1]))
    for workers in (int(w) for w in args.workers.split(",")):
        rows.append(
            {
                "setting": f"AsyncVectorEnv {workers} worker(s), 2 cameras 84 px fast",
                "steps_per_s": vector_rate(args.env, workers, args.steps, 84),
            }
        )
        print(json.dumps(rows[-1]))
    for workers in (int(w) for w in args.workers.split(",")) if args.ckpt else ():
        rate = rollout_rate(args.ckpt, workers, args.episodes, max_steps=100)
        rows.append(
            {"setting": f"policy rollouts ({Path(args.ckpt).name}), {workers} worker(s), startup included", "steps_per_s": rate}
        )
        print(json.dumps(rows[-1]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(
        json.dumps({"env": args.env, "rows": rows, "versions": package_versions()}, indent=2)
    )
    lines = [f"| setting ({args.env}, Panda, OSC_POSE, 20 Hz control) | env steps/s |", "|---|---|"]
    lines += [f"| {r['setting']} | {r['steps_per_s']:.1f} |" for r in rows]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
