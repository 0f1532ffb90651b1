"""Online evaluation speed: wall time and env steps/s of a clean Lift evaluation, policy in the loop.

Each setting runs ``evaluate.py`` as a fresh process (start-up included: imports, checkpoint,
workers) into its own folder, per-step rendering (every env step renders every camera) or
chunk rendering (only the observation before each policy call), with 1 or 2 env workers.
The summaries of all settings must be byte-identical (same seeds, same episodes).
Writes benchmarks/results/eval_speed.{json,md}.

    python benchmarks/eval_speed.py [--ckpt runs/robosuite_lift/checkpoints/last.ckpt] [--episodes 50]
        [--settings chunk:2,per_step:2,chunk:1,per_step:1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
RUN = (
    "import sys; from pathlib import Path; from gridslab.eval.checkpoint import load_policy; "
    "from gridslab.eval.runner import evaluate_policy; "
    "ckpt, out, every, workers, episodes = sys.argv[1:]; "
    "policy, cfg, _ = load_policy(ckpt, [f'eval.workers={workers}', f'eval.episodes={episodes}', 'eval.video_episodes=0']); "
    "evaluate_policy(policy, cfg, Path(out), checkpoint=ckpt, progress=False, render_every_step=every == '1')"
)


def run_setting(ckpt: str, out: Path, render: str, workers: int, episodes: int) -> dict:
    """One evaluation in a fresh process; wall_s: seconds, start-up included; env_steps_per_s: all episodes' steps / wall."""
    started = time.perf_counter()
    args = [sys.executable, "-c", RUN, ckpt, str(out), "1" if render == "per_step" else "0", str(workers), str(episodes)]
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    steps = sum(r["steps"] for r in records)
    return {
        "render": render,
        "workers": workers,
        "episodes": len(records),
        "wall_s": round(wall, 1),
        "env_steps": steps,
        "env_steps_per_s": round(steps / wall, 1),
        "success_rate": sum(r["success"] for r in records) / len(records),
        "mean_steps": round(steps / len(records), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="runs/robosuite_lift/checkpoints/last.ckpt")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--settings", default="chunk:2,per_step:2,chunk:1,per_step:1", help="render:workers, comma list")
    args = parser.parse_args()
    rows, summaries = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            render, workers = setting.split(":")
            out = Path(tmp) / setting.replace(":", "_")
            rows.append(run_setting(args.ckpt, out, render, int(workers), args.episodes))
            summaries.add((out / "summary.json").read_bytes())
            print(rows[-1], flush=True)
    result = {"checkpoint": args.ckpt, "same_summary": len(summaries) == 1, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Clean Lift evaluation, {args.episodes} episodes, `{args.ckpt}`; wall time includes process start-up.",
        f"Summaries byte-identical across settings: {result['same_summary']}.",
        "",
        "| render | workers | wall s | env steps/s | success | mean steps |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['render']} | {r['workers']} | {r['wall_s']} | {r['env_steps_per_s']} | {r['success_rate']:.2f} | {r['mean_steps']} |"
            for r in rows
        ),
    ]
    (RESULTS / "eval_speed.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
