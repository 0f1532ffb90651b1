"""Online evaluation speed: wall time and env steps/s of a clean evaluation, policy in the loop.

Each setting ``render:workers:ranks`` is one fresh evaluation (start-up included: imports,
checkpoint, workers) into its own temporary folder: ``chunk`` (a whole chunk per worker call,
rendering only the observation the policy reads) or ``per_step`` (one env step per call, every
frame rendered), ``workers`` env processes per rank, ``ranks`` processes under torchrun.
Settings of one (checkpoint, env, episodes) group must write byte-identical summaries (same
seeds, same episodes). ``--env`` evaluates the checkpoint's policy on another env (for the
speed, not the success), e.g. a Lift policy on ``tabletop_spatial/0``; a LIBERO checkpoint on one
of its suite's tasks, ``libero/libero_spatial/0``. Resumable: rows already in
benchmarks/results/eval_speed.json are kept, not re-run (``--rerun`` measures them again).
Writes benchmarks/results/eval_speed.{json,md}; paths are relative to the repository.

    python benchmarks/eval_speed.py [--ckpt runs/quality/robosuite_lift/random_k4_seed0/checkpoints/last.ckpt]
        [--episodes 50] [--env tabletop_spatial/0] [--settings chunk:2:1,per_step:2:1,chunk:1:1,per_step:1:1,chunk:1:2]
        [--rerun]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DEFAULT_CKPT = "runs/quality/robosuite_lift/random_k4_seed0/checkpoints/last.ckpt"
CHECKPOINT_ENV = "checkpoint's env"
LAYOUT_CHANGE_COMMIT = "e9aae73"  # what measured the rows of the older one-checkpoint layout
SETTINGS = "chunk:2:1,per_step:2:1,chunk:1:1,per_step:1:1,chunk:1:2"


def child(ckpt: str, out: str, render: str, workers: int, episodes: int, env: str) -> None:
    """One rank of one evaluation (run by ``run_setting`` as ``--child``)."""
    sys.path.insert(0, str(ROOT))
    from gridslab.eval.checkpoint import load_policy
    from gridslab.eval.runner import evaluate_policy

    overrides = [f"eval.workers={workers}", f"eval.episodes={episodes}", "eval.video_episodes=0"]
    policy, cfg, _ = load_policy(ckpt, overrides + ([f"env.name={env}"] if env else []))
    evaluate_policy(policy, cfg, Path(out), checkpoint=ckpt, progress=False, render_every_step=render == "per_step")


def run_setting(ckpt: str, env: str, render: str, workers: int, ranks: int, episodes: int) -> tuple[dict, bytes]:
    """One evaluation in fresh processes: (row, its summary.json). wall_s: seconds, start-up
    included; env_steps_per_s: all episodes' steps / wall; load_avg: the machine's 1-minute
    load average before and after (2 cores here: above 2, other work shares them)."""
    with tempfile.TemporaryDirectory() as tmp:
        launcher = (
            [sys.executable]
            if ranks == 1
            else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        )
        args = [*launcher, __file__, "--child", ckpt, tmp, render, str(workers), str(episodes), env]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
        wall = time.perf_counter() - started
        records = [json.loads(line) for line in (Path(tmp) / "results.jsonl").read_text().splitlines()]
        summary = (Path(tmp) / "summary.json").read_bytes()
    steps = sum(r["steps"] for r in records)
    row = {
        "commit": code_version(),
        "checkpoint": ckpt,
        "env": env or CHECKPOINT_ENV,
        "render": render,
        "workers": workers,
        "ranks": ranks,
        "episodes": len(records),
        "wall_s": round(wall, 1),
        "env_steps": steps,
        "env_steps_per_s": round(steps / wall, 1),
        "success_rate": sum(r["success"] for r in records) / len(records),
        "mean_steps": round(steps / len(records), 1),
        "load_avg": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    return row, summary


def code_version() -> str:
    """The commit measured (short hash, ``+changes`` when the working tree differs from it)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return commit + ("+changes" if changed.stdout.strip() else "")


def write_tables(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "Clean evaluations; wall time includes process start-up (imports, checkpoint, workers).",
        "Summaries byte-identical across the settings of each checkpoint, env and episode count: "
        + "; ".join(f"{group.replace('|', ', ')}: {same}" for group, same in result["same_summary"].items())
        + ".",
        "load avg: the 2-core machine's 1-minute load average before / after the run (above 2: shared with other work).",
        "",
        "| commit | checkpoint | env | episodes | render | workers | ranks | wall s | env steps/s | success | mean steps | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['commit']} | {r['checkpoint']} | {r['env']} | {r['episodes']} | {r['render']} | {r['workers']} | {r['ranks']} | "
            f"{r['wall_s']} | {r['env_steps_per_s']} | {r['success_rate']:.2f} | {r['mean_steps']} | "
            f"{r['load_avg'][0]} / {r['load_avg'][1]} |"
            for r in result["rows"]
        ),
    ]
    (RESULTS / "eval_speed.md").write_text("\n".join(lines) + "\n")


def read_results(path: Path) -> dict:
    """The results so far; a file of the older one-checkpoint layout gets its rows keyed by checkpoint."""
    if not path.exists():
        return {"rows": [], "summaries": {}, "same_summary": {}}
    result = json.loads(path.read_text())
    if "checkpoint" in result:  # one checkpoint and episode count for the whole file
        ckpt, episodes = result.pop("checkpoint"), result.pop("episodes")
        for row in result["rows"]:
            row.setdefault("checkpoint", ckpt)
            row.setdefault("commit", LAYOUT_CHANGE_COMMIT)
        result["summaries"] = {
            f"{ckpt}|{key.split('|')[0]}|{episodes}|{key.split('|')[1]}": s for key, s in result["summaries"].items()
        }
        result["same_summary"] = {f"{ckpt}|{env}|{episodes}": same for env, same in result["same_summary"].items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=DEFAULT_CKPT, help="checkpoint, relative to the repository")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--env", default="", help="env to evaluate on (default: the checkpoint's)")
    parser.add_argument("--settings", default=SETTINGS, help="render:workers:ranks, comma list")
    parser.add_argument("--rerun", action="store_true", help="measure settings already in the results again")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ckpt, out, render, workers, episodes, env = args.child
        child(ckpt, out, render, int(workers), int(episodes), env)
        return
    result = read_results(RESULTS / "eval_speed.json")
    group = f"{args.ckpt}|{args.env or CHECKPOINT_ENV}|{args.episodes}"
    for setting in args.settings.split(","):
        render, workers, ranks = setting.split(":")
        key = f"{group}|{setting}"
        if key in result["summaries"] and not args.rerun:
            continue  # measured by an earlier run
        row, summary = run_setting(args.ckpt, args.env, render, int(workers), int(ranks), args.episodes)
        print(row, flush=True)
        same_row = (row["checkpoint"], row["env"], row["episodes"], render, int(workers), int(ranks))
        result["rows"] = [
            r
            for r in result["rows"]
            if (r["checkpoint"], r["env"], r["episodes"], r["render"], r["workers"], r["ranks"]) != same_row
        ] + [row]
        result["summaries"][key] = summary.decode()
        same = {s for k, s in result["summaries"].items() if k.startswith(f"{group}|")}
        result["same_summary"][group] = len(same) == 1
        write_tables(result)


if __name__ == "__main__":
    main()
