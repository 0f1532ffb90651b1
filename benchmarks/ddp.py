"""Training throughput of DDP on this machine's CPU: 1 process vs N processes (gloo).

Trains the default config for ``--steps`` optimiser steps per setting and times steps
``--warmup``..end on rank 0 (data loading, process start and the first steps excluded).
Throughput counts samples over all ranks (``data.batch_size`` is per process). Threads
are split evenly over the processes so every setting uses the same cores.
Writes benchmarks/results/ddp.{json,md}.

    python benchmarks/ddp.py [--processes 1,2] [--steps 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import lightning as L

from envs.hdf5_format import package_versions
from gridslab.config import load_config
from gridslab.train.fit import fit

RESULTS = Path(__file__).parent / "results"


class StepTimer(L.Callback):
    """Rank 0 writes the time between the end of step ``warmup`` and the last step."""

    def __init__(self, out: str, warmup: int):
        self.out, self.warmup = out, warmup
        self.started = 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.started = time.perf_counter()
        if trainer.global_rank == 0 and trainer.global_step == trainer.max_steps:
            steps = trainer.global_step - self.warmup
            Path(self.out).write_text(json.dumps({"seconds": time.perf_counter() - self.started, "steps": steps}))


def measure(processes: int, steps: int, warmup: int, cores: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        timing = Path(tmp) / "timing.json"
        overrides = [
            f"output_dir={tmp}/run",
            f"trainer.max_steps={steps}",
            "trainer.max_epochs=-1",
            "trainer.progress_bar=false",
            "trainer.accelerator=cpu",
            f"trainer.threads={max(cores // processes, 1)}",
            "trainer.check_val_every_n_epoch=1000",
            "trainer.log_every_n_steps=1000",
        ]
        if processes > 1:
            overrides += [f"trainer.devices={processes}", "trainer.strategy=ddp_spawn"]
        cfg = load_config(overrides)
        fit(cfg, extra_callbacks=[StepTimer(str(timing), warmup)])
        result = json.loads(timing.read_text())
    batch = int(cfg.data.batch_size)
    return {
        "processes": processes,
        "threads_per_process": max(cores // processes, 1),
        "batch_per_process": batch,
        "steps_timed": result["steps"],
        "seconds": round(result["seconds"], 2),
        "samples_per_s": round(result["steps"] * batch * processes / result["seconds"], 1),
        "steps_per_s": round(result["steps"] / result["seconds"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = [measure(int(n), args.steps, args.warmup, cores) for n in args.processes.split(",")]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ddp.json").write_text(json.dumps({"cores": cores, "versions": package_versions(), "rows": rows}, indent=2) + "\n")
    base = rows[0]["samples_per_s"]
    lines = [
        f"Default config (GridS K=4, batch {rows[0]['batch_per_process']} per process), {cores} CPU cores, gloo; "
        f"steps {args.warmup}..{args.steps} timed on rank 0.",
        "",
        "| processes | threads each | samples/s (all ranks) | optimiser steps/s | vs 1 process |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['processes']} | {r['threads_per_process']} | {r['samples_per_s']} | {r['steps_per_s']} | "
        f"{r['samples_per_s'] / base:.2f}x |"
        for r in rows
    ]
    (RESULTS / "ddp.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
