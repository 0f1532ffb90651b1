"""Training speed of the default experiment vs torch threads, alone and beside a busy neighbour.

Each setting trains the default policy (``python train.py``'s config: Lift, GridS K=4) for
``--steps`` optimiser steps in a fresh process (one validation batch per epoch), times the steps after
``--warmup``; the neighbour is one process spinning on one core (what a second simulation or
evaluation does to training here). Resumable: finished settings are kept in the results file.
Writes benchmarks/results/train_threads.{json,md}.

    python benchmarks/train_threads.py [--steps 40] [--warmup 10]
        [--settings 2:0,1:0,2:1,1:1,2:0:1000,2:1:1000,auto:0,auto:1] [--background TEXT]

A setting ``T:N[:S]`` is ``trainer.threads=T`` (a count, or ``auto``: ``gridslab.train.threads``'
tuner) with N busy neighbours and OpenMP threads spinning S iterations before they sleep at a
barrier (``GOMP_SPINCOUNT``; default: libgomp's own, 300000). ``--background`` names what else
ran on the machine meanwhile (rows are kept per background; "" = nothing). Reported: the median
and the mean seconds per step after the warm-up (the mean includes ``auto``'s probes) and the
share of those steps run at each thread count. Needs the default demos
(``data/robosuite_Lift_84px.hdf5``; ``python train.py`` collects them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SPIN = "while True: pass"
RUN = """
import json, sys, time
from collections import Counter
import lightning as L
import torch
from gridslab.config import load_config
from gridslab.train.fit import fit

threads, steps, warmup, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

class StepTimes(L.Callback):
    def __init__(self):
        self.times, self.threads = [], []
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.threads.append(torch.get_num_threads())
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter())

timer = StepTimes()
cfg = load_config([f"output_dir={out}", f"trainer.threads={threads}", f"trainer.max_steps={steps}",
                   "trainer.limit_val_batches=1", "trainer.progress_bar=false", "eval.every_n_epochs=0"])
fit(cfg, extra_callbacks=[timer])
gaps = sorted(b - a for a, b in zip(timer.times[warmup:], timer.times[warmup + 1:]))
shares = Counter(timer.threads[warmup + 1:])
print(json.dumps({"median_step_s": gaps[len(gaps) // 2], "mean_step_s": sum(gaps) / len(gaps), "steps_timed": len(gaps),
                  "batch_size": cfg.data.batch_size,
                  "threads_share": {str(k): v / len(gaps) for k, v in sorted(shares.items())}}))
"""


def run_setting(threads: str, neighbours: int, steps: int, warmup: int, spin: int | None = None, background: str = "") -> dict:
    """One setting in a fresh process; seconds per optimiser step after the warm-up."""
    env = dict(os.environ)
    env.pop("GOMP_SPINCOUNT", None)
    if spin is not None:
        env["GOMP_SPINCOUNT"] = str(spin)
    load_before = os.getloadavg()[0]
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(neighbours)]
    try:
        with tempfile.TemporaryDirectory() as out:
            done = subprocess.run(
                [sys.executable, "-c", RUN, threads, str(steps), str(warmup), out],
                cwd=ROOT,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "background": background,
        "spincount": spin,
        "threads": int(threads) if threads.isdigit() else threads,
        "neighbours": neighbours,
        **result,
        "samples_per_s": result["batch_size"] / result["median_step_s"],
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }


def key(row: dict) -> tuple:
    """What identifies a setting in the results file."""
    return str(row["threads"]), row["neighbours"], row.get("spincount"), row.get("background", "")


def report(rows: list[dict]) -> str:
    lines = [
        "| also running | torch threads | busy neighbours | GOMP_SPINCOUNT | s / step (median) | s / step (mean) "
        "| samples/s (median) | steps at each thread count |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        spin = row.get("spincount") or "300000 (default)"
        mean = f"{row['mean_step_s']:.3f}" if "mean_step_s" in row else "-"
        shares = ", ".join(f"{n}: {share:.0%}" for n, share in row.get("threads_share", {}).items()) or "-"
        lines.append(
            f"| {row.get('background') or 'nothing'} | {row['threads']} | {row['neighbours']} | {spin} "
            f"| {row['median_step_s']:.3f} | {mean} | {row['samples_per_s']:.0f} | {shares} |"
        )
    return "\n".join(lines) + f"\n\n{os.cpu_count()} CPU cores; `python benchmarks/train_threads.py`.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--settings", default="2:0,1:0,2:1,1:1,2:0:1000,2:1:1000,auto:0,auto:1")
    parser.add_argument("--background", default="", help="what else runs on the machine meanwhile")
    args = parser.parse_args()
    path = RESULTS / "train_threads.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    for setting in args.settings.split(","):
        threads, neighbours, *spin = setting.split(":")
        wanted = (threads, int(neighbours), int(spin[0]) if spin else None, args.background)
        if any(key(r) == wanted for r in rows):
            continue
        rows.append(run_setting(threads, wanted[1], args.steps, args.warmup, wanted[2], args.background))
        print(rows[-1], flush=True)
        path.write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "train_threads.md").write_text(report(rows))


if __name__ == "__main__":
    main()
