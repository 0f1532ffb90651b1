"""Token budgets on the default task: fixed K=4, fixed K=16 and adaptive K, trained alike.

For each budget: train (skipped when the run already has last.ckpt, so a re-run resumes),
then read from its TensorBoard events the last validation epoch's visual tokens per image
(mean / min / max over the validation set), GFLOPs per sample at those token counts, and
validation action L1 (env units), plus the training wall time. With ``--episodes N`` each
checkpoint is also evaluated online (clean, N episodes), which reports the K used per call.
Writes benchmarks/results/budgets.{json,md}.

    python benchmarks/budgets.py [--epochs 15] [--episodes 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab from this checkout, installed or not

from gridslab.config.run_layout import last_checkpoint

RESULTS = Path(__file__).parent / "results"
BUDGETS = {
    "fixed K=4": ["compressor.k=4"],
    "fixed K=16": ["compressor.k=16"],
    "adaptive K in [2, 32]": ["budget=adaptive", "budget.k_min=2", "budget.k_max=32"],
    "adaptive K in [2, 32], penalty 0.005": ["budget=adaptive", "budget.k_min=2", "budget.k_max=32", "budget.penalty=0.005"],
}


def run_dir(name: str) -> Path:
    penalty = "_penalty" + name.rsplit(" ", 1)[1] if "penalty" in name else ""
    return ROOT / "runs" / "budgets" / (name.split(" in ")[0].replace(" ", "_").replace("=", "") + penalty)


def last_scalar(events: EventAccumulator, tag: str) -> float:
    return float(events.Scalars(tag)[-1].value)


def measure(name: str, epochs: int, episodes: int) -> dict:
    out = run_dir(name)
    if not last_checkpoint(out).exists():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "train.py"),
                *BUDGETS[name],
                f"output_dir={out}",
                f"trainer.max_epochs={epochs}",
                "trainer.progress_bar=false",
            ],
            check=True,
            cwd=ROOT,
        )
    events = EventAccumulator(str(out / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    losses = events.Scalars("train/loss")
    row = {
        "budget": name,
        "overrides": " ".join(BUDGETS[name]),
        "epochs": epochs,
        "tokens_mean": last_scalar(events, "val/tokens_per_image/mean"),
        "tokens_min": last_scalar(events, "val/tokens_per_image/min"),
        "tokens_max": last_scalar(events, "val/tokens_per_image/max"),
        "gflops_per_sample": last_scalar(events, "val/gflops_per_sample"),
        "val_action_l1": last_scalar(events, "val/action_l1"),
        "train_minutes": (losses[-1].wall_time - losses[0].wall_time) / 60,
    }
    if episodes:
        subprocess.run(
            [sys.executable, str(ROOT / "evaluate.py"), f"output_dir={out}", "--episodes", str(episodes)], check=True, cwd=ROOT
        )
        summary = json.loads((out / "eval" / "last" / "summary.json").read_text())["conditions"][0]
        row.update(
            {
                "success": f"{summary['successes']}/{summary['episodes']}",
                "eval_tokens": summary["tokens_per_image"],
                "eval_tokens_range": f"{summary['tokens_min']:g}-{summary['tokens_max']:g}",
                "eval_gflops": summary["policy_gflops"],
            }
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=0, help="online clean episodes per budget (0 = skip)")
    args = parser.parse_args()
    rows = [measure(name, args.epochs, args.episodes) for name in BUDGETS]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budgets.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        f"Default task (robosuite/Lift, GridS, two 84 px cameras), {args.epochs} epochs each on this machine's CPU; "
        "validation figures from the last epoch (GFLOPs for one sample at the K it got).",
        "",
        "| budget | tokens/image mean (min-max) | GFLOPs/sample | val action L1 | train min |"
        + (" online success | online K mean (range) |" if args.episodes else ""),
        "|---|---|---|---|---|" + ("---|---|" if args.episodes else ""),
    ]
    for r in rows:
        line = (
            f"| {r['budget']} | {r['tokens_mean']:.2f} ({r['tokens_min']:g}-{r['tokens_max']:g}) | "
            f"{r['gflops_per_sample']:.4f} | {r['val_action_l1']:.4f} | {r['train_minutes']:.1f} |"
        )
        if args.episodes:
            line += f" {r['success']} | {r['eval_tokens']:.2f} ({r['eval_tokens_range']}) |"
        lines.append(line)
    (RESULTS / "budgets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
