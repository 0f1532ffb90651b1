"""Flow-matching vs L1 action head on the default task (robosuite Lift, GridS K=4), trained alike.

For each (head, seed): train ``python train.py compressor=grids compressor.init=random compressor.k=4
policy.head.name=HEAD seed=S`` into runs/heads/<head>_seed<s>/ (same data, epochs, optimiser
and compressor for both heads; an unfinished run resumes from its last.ckpt), read from its
TensorBoard events the validation action L1 of every epoch (``val/action_l1``: mean absolute
error of the predicted chunk in env units on the validation split, EMA weights; for the flow
head the chunk is a full Euler sample, as ``VLAModule.validation_step`` logs it), then evaluate
last.ckpt online (``evaluate.py``, clean episodes). Each finished run writes
benchmarks/results/heads/<head>_seed<s>.json (paths relative to the repository); a re-run
skips runs whose JSON exists. Runs and results of each training length live apart
(runs/heads/e<epochs>/, benchmarks/results/heads/e<epochs>/): a 40-epoch run is trained from
scratch with its own schedule, never resumed from a shorter one.

``--latency`` times one policy call (batch 1, real frames from the demonstrations, the
rollouts' seeded noise) of every finished seed-``--seeds[0]`` checkpoint in one process,
the heads interleaved call by call so both see the same machine load; the flow head at
1, 5 and its trained number of Euler steps. One torch thread by default: on a 2-core CPU
shared with other jobs, 2-thread calls stall on descheduled threads (medians of 0.5-1.5 s
per call seen, ~25 ms with one thread). Median and 90th percentile ms per call go to
benchmarks/results/heads/latency.json. ``--report`` writes benchmarks/results/heads.md from
the JSONs and copies it into README.md's ``results:heads`` block.

40 epochs by default, as the default config trains (the first comparison used 4, kept in
e4/). An epoch is 72 steps: ~21 s alone on this 2-core CPU (L1 head; flow ~1.5x), so a
40-epoch run is ~15-25 min alone; on a CPU shared with other jobs a step took 3-5 s with 2
torch threads (set GOMP_SPINCOUNT=1000 or trainer.threads=1 there, see train_threads.py).

    python benchmarks/heads.py [--heads flow,l1] [--seeds 0] [--epochs 40] [--episodes 50]
    python benchmarks/heads.py --latency [--epochs 40] [--calls 200]
    python benchmarks/heads.py --report [--epochs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab from this checkout, installed or not

from _runs import PAPER_INIT, RESULTS, code_version, params_m, publish, relative, success_cell, write_result
from _runs import train as train_run

RUN_RESULTS = RESULTS / "heads"
COMMON = ["compressor=grids", PAPER_INIT, "compressor.k=4"]
FLOW_STEPS = (1, 5)  # extra Euler step counts timed besides the trained one


def run_name(head: str, seed: int) -> str:
    return f"{head}_seed{seed}"


def results_dir(epochs: int) -> Path:
    """Result JSONs of the runs trained for ``epochs`` epochs (one folder per training length)."""
    return RUN_RESULTS / f"e{epochs}"


def train(head: str, seed: int, epochs: int) -> Path:
    """Train (or finish) the run; returns its directory. A run already past ``epochs`` is kept."""
    out = Path("runs") / "heads" / f"e{epochs}" / run_name(head, seed)
    return train_run(out, [*COMMON, f"policy.head.name={head}", f"seed={seed}"], epochs)


def parameters(run: Path) -> dict:
    """Parameter count (millions) and denoising steps of the run's policy."""
    from gridslab.eval.checkpoint import load_policy

    policy, cfg, _ = load_policy(run / "checkpoints" / "last.ckpt")
    steps = cfg.policy.head.steps if cfg.policy.head.name == "flow" else 0
    return {"params_m": params_m(policy), "denoising_steps": steps}


def measure(head: str, seed: int, epochs: int, episodes: int) -> Path:
    path = results_dir(epochs) / f"{run_name(head, seed)}.json"
    if path.exists():
        print(f"{relative(path)} exists: skipped")
        return path
    run = train(head, seed, epochs)
    labels = {"head": head, "seed": seed, "epochs": epochs}
    overrides = [*COMMON, f"policy.head.name={head}", f"seed={seed}"]
    return write_result(path, labels, overrides, run, parameters(run), episodes)


def latency(seed: int, epochs: int, calls: int, threads: int) -> Path:
    """Time batch-1 policy calls of every finished seed-``seed`` run, interleaved, in this
    process, with ``threads`` torch threads."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)

    from gridslab.data.datamodule import default_dataset_paths, load_demos
    from gridslab.eval.checkpoint import load_policy
    from gridslab.eval.rollout import noise_seed

    variants = []  # (head, steps, policy)
    for result_path in sorted(results_dir(epochs).glob(f"*_seed{seed}.json")):
        result = json.loads(result_path.read_text())
        ckpt = ROOT / result["run_dir"] / "checkpoints" / "last.ckpt"
        policy, cfg, _ = load_policy(ckpt)
        variants.append((result["head"], result["denoising_steps"], policy))
        if result["head"] == "flow":
            for steps in FLOW_STEPS:
                variants.append(("flow", steps, load_policy(ckpt, [f"policy.head.steps={steps}"])[0]))
    if not variants:
        raise SystemExit(f"no finished runs of seed {seed} in {relative(RUN_RESULTS)}; run the training first")
    paths = [ROOT / path for path in default_dataset_paths(cfg.data.root, cfg.env)]  # data.root is repository-relative
    demo = load_demos(paths, list(cfg.env.cameras), 1)[0]
    frames = len(demo.actions)
    samples: dict[tuple[str, int], list[float]] = {(head, steps): [] for head, steps, _ in variants}
    with torch.no_grad():
        for call in range(-5, calls):  # 5 warm-up calls each, not timed
            t = call % frames
            observation = {"images": {c: v[t : t + 1] for c, v in demo.images.items()}, "proprio": demo.proprio[t : t + 1]}
            seeds = torch.tensor([noise_seed(0, max(call, 0))], dtype=torch.long)
            for head, steps, policy in variants:
                started = time.perf_counter()
                policy.predict(observation, [demo.instruction], noise_seed=seeds)
                if call >= 0:
                    samples[(head, steps)].append((time.perf_counter() - started) * 1e3)
    rows = [
        {
            "head": head,
            "denoising_steps": steps,
            "median_ms": round(statistics.median(ms), 3),
            "p90_ms": round(float(np.percentile(ms, 90)), 3),
        }
        for (head, steps), ms in samples.items()
    ]
    result = {
        "seed": seed,
        "calls": calls,
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "code": code_version(),
        "rows": rows,
    }
    path = results_dir(epochs) / "latency.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def report(epochs: int) -> str:
    """benchmarks/results/heads.md from the committed JSONs of the ``epochs``-epoch runs;
    README's results:heads block."""
    folder = results_dir(epochs)
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*_seed*.json"))]
    if not runs:
        raise SystemExit(f"no results in {relative(folder)}; run python benchmarks/heads.py --epochs {epochs} first")
    timing_path = folder / "latency.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else None
    latency_of = {(r["head"], r["denoising_steps"]): r for r in (timing["rows"] if timing else [])}
    first = runs[0]
    lines = [
        f"robosuite/Lift, GridS K=4 (`{' '.join(COMMON)}`), the default small VLA, {first['epochs']} epochs on "
        "100 demos, last.ckpt (EMA weights), code "
        + ", ".join(sorted({r["code"] for r in runs}))
        + ". Val action L1: mean |predicted - demo| of the chunk in env units on the validation split, flow head from "
        "a full Euler sample. Success: clean episodes from seed 100000 [Wilson 95% CI]. Latency: batch-1 policy call "
        "(median over calls, both heads timed in one process, interleaved). Train / eval minutes: wall time on a 2-core "
        "CPU shared with other jobs whose load varied between runs (not comparable across rows).",
        "",
        "| head | seed | denoising steps | params (M) | GFLOPs/call | val action L1, last epoch | val action L1 by epoch "
        "| success clean | ms/call median (p90) | train min | eval min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["head"] != "l1", r["seed"])):
        curve = r["val_action_l1"]
        timed = latency_of.get((r["head"], r["denoising_steps"])) if timing and r["seed"] == timing["seed"] else None
        ms = f"{timed['median_ms']:.1f} ({timed['p90_ms']:.1f})" if timed else "-"
        by_epoch = ", ".join(f"{value:.4f}" for value in curve)
        lines.append(
            f"| {r['head']} | {r['seed']} | {r['denoising_steps'] or '-'} | {r['params_m']:.2f} | {r['policy_gflops']:.3f} | "
            f"{curve[-1]:.4f} | {by_epoch} | {success_cell(r['successes'], r['episodes'])} | {ms} | "
            f"{r['train_minutes']:.1f} | {r['eval_minutes']:.1f} |"
        )
    if timing:
        lines += [
            "",
            f"Latency per policy call, seed {timing['seed']} checkpoints, {timing['calls']} calls each after 5 warm-up calls, "
            f"torch threads: {timing['torch_threads']}, {timing['cpus']} CPUs shared with other jobs (1-min load average "
            f"{timing['load_average_1min_after']} right after timing):",
            "",
            "| head | denoising steps | ms/call median | p90 |",
            "|---|---|---|---|",
        ]
        for row in sorted(timing["rows"], key=lambda r: (r["head"] != "l1", r["denoising_steps"])):
            lines.append(f"| {row['head']} | {row['denoising_steps'] or '-'} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} |")
    table = "\n".join(lines) + "\n"
    publish(table, RESULTS / "heads.md", "heads")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", default="flow,l1", help="comma list of registered heads")
    parser.add_argument("--seeds", default="0", help="comma list of training seeds")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (40: the default config's)")
    parser.add_argument("--episodes", type=int, default=50, help="online clean episodes per run")
    parser.add_argument("--latency", action="store_true", help="time the finished runs of the first seed in one process")
    parser.add_argument("--calls", type=int, default=200, help="timed policy calls per variant (--latency)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads while timing (--latency)")
    parser.add_argument("--report", action="store_true", help="write heads.md and the README block from the JSONs")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.report:
        report(args.epochs)
    elif args.latency:
        latency(seeds[0], args.epochs, args.calls, args.threads)
    else:
        for seed in seeds:
            for head in args.heads.split(","):
                measure(head, seed, args.epochs, args.episodes)


if __name__ == "__main__":
    main()
