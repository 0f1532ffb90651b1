"""Where a training step's time goes, for the default experiment and ``tabletop_spatial``.

Each (conf, label) trains ``--steps`` optimiser steps in a fresh process under cProfile (one
validation batch per epoch, no online evaluation, ``trainer.threads`` fixed by ``--threads`` so
that neighbours on a shared machine cannot make the thread count change between runs) and
reports what share of the training loop's wall time (from the end of its second step to the end
of its last; validation and epoch-end checkpoints left out) each part takes: data (the
DataLoader's fetch and collate of in-memory uint8 frames), augmentation (random shift),
processor (uint8 -> normalised batch, tokens), the policy's forward parts (language, vision
patch features, compressor, backbone, head loss), backward, optimiser, EMA, our logging of
tokens/GFLOPs and of coordinate images, and the rest (Lightning's loop, hooks and closure,
zero_grad, the loss's own ``self.log``: per-step overhead). cProfile inflates Python-heavy parts, and on a loaded machine absolute
times are not comparable between runs: compare shares, and samples/s only between rows
measured together. Resumable: finished (conf, label) rows are kept.
Writes benchmarks/results/train_profile.{json,md}.

    python benchmarks/train_profile.py --label before [--confs robosuite_lift,tabletop_spatial]
        [--steps 30] [--threads 1] [--episodes 1]

``tabletop_spatial``'s demos (``--episodes`` per task, 128 px) are collected once into
runs/train_profile/data when missing; Lift uses the default demos (``data/``).
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
DATA = ROOT / "runs" / "train_profile" / "data"
# part -> (file suffix, function name) whose cumulative time it is; the first match of each counts
PARTS = {
    "data (fetch + collate)": [("torch/utils/data/_utils/fetch.py", "fetch")],
    "augmentation (random shift)": [("gridslab/data/datamodule.py", "random_shift")],
    "processor": [("gridslab/policy/processor.py", "training_batch")],
    "language encoder": [("gridslab/policy/language.py", "forward")],
    "vision patch features": [("gridslab/policy/vision.py", "patch_features")],
    "compressor (tokens from features)": [("gridslab/policy/vision.py", "tokens_from_features")],
    "backbone": [("gridslab/policy/backbone.py", "forward")],
    "head loss": [("gridslab/policy/heads.py", "loss")],
    "backward": [("~", "<method 'run_backward' of 'torch._C._EngineBase' objects>")],
    "optimiser (AdamW)": [("torch/optim/adam.py", "adam")],
    "EMA update": [("gridslab/train/ema.py", "update")],
    "tokens/GFLOPs logging": [("gridslab/train/module.py", "_log_tokens")],
    "coordinate images": [("gridslab/train/module.py", "_log_coordinate_images")],
}
RUN = """
import cProfile, json, pstats, sys, time
import lightning as L
from gridslab.config import load_config
from gridslab.train.fit import fit

args, out, parts = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])

class Window(L.Callback):
    # cProfile and the wall clock run from the end of the second step to the end of the last,
    # paused from each validation's start to the next training step (validation, checkpoints)
    def __init__(self):
        self.profile, self.on, self.wall, self.started, self.ends = cProfile.Profile(), False, 0.0, 0.0, []
    def start(self):
        if not self.on:
            self.on, self.started = True, time.perf_counter()
            self.profile.enable()
    def stop(self):
        if self.on:
            self.profile.disable()
            self.on, self.wall = False, self.wall + time.perf_counter() - self.started
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if len(self.ends) >= 2:
            self.start()
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())
        if len(self.ends) == 2:
            self.start()
    def on_validation_start(self, trainer, module):
        self.stop()
    def on_train_end(self, trainer, module):
        self.stop()

window = Window()
cfg = load_config([*args, f"output_dir={out}"])
fit(cfg, extra_callbacks=[window])
stats = pstats.Stats(window.profile).stats
def cumulative(suffix, name):
    return sum(v[3] for (f, _, n), v in stats.items() if n == name and f.replace(chr(92), "/").endswith(suffix))
shares = {part: sum(cumulative(*where) for where in places) / window.wall for part, places in parts.items()}
gaps = sorted(b - a for a, b in zip(window.ends[1:], window.ends[2:]))
print(json.dumps({"window_s": window.wall, "steps": len(window.ends), "shares": shares, "median_step_s": gaps[len(gaps) // 2],
                  "batch_size": cfg.data.batch_size, "image_size": cfg.env.image_size, "cameras": len(cfg.env.cameras),
                  "patches": cfg.policy.vision.image_size // cfg.policy.vision.patch_size}))
"""


def overrides(conf: str, steps: int, threads: int, episodes: int) -> list[str]:
    """The training config of one profiled run."""
    common = [
        f"conf={conf}",
        f"trainer.max_steps={steps}",
        f"trainer.threads={threads}",
        "trainer.limit_val_batches=1",
        "trainer.progress_bar=false",
        "eval.every_n_epochs=0",
    ]
    if conf == "tabletop_spatial":
        common += [f"data.root={DATA}", f"data.episodes={episodes}"]
    return common


def profile(conf: str, steps: int, threads: int, episodes: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN,
                json.dumps(overrides(conf, steps, threads, episodes)),
                out,
                json.dumps(PARTS),
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
        )
    if done.returncode:
        sys.exit(f"profiling {conf} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["shares"]["rest (Lightning/Python per step)"] = 1 - sum(result["shares"].values())
    return {
        "conf": conf,
        "threads": threads,
        **result,
        "samples_per_s": result["batch_size"] / result["median_step_s"],
        "load_1min_after": os.getloadavg()[0],
    }


def report(rows: list[dict]) -> str:
    parts = list(rows[0]["shares"])
    head = "| part | " + " | ".join(f"{r['conf']} ({r['label']})" for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    for part in parts:
        lines.append(f"| {part} | " + " | ".join(f"{r['shares'].get(part, 0):.1%}" for r in rows) + " |")
    for name, cell in (
        ("image px x cameras, patches per side", lambda r: f"{r['image_size']} x {r['cameras']}, {r['patches']}"),
        ("s / step (median, under cProfile)", lambda r: f"{r['median_step_s']:.3f}"),
        ("samples / s (under cProfile)", lambda r: f"{r['samples_per_s']:.0f}"),
        ("torch threads", lambda r: str(r["threads"])),
        ("load average (1 min) after", lambda r: f"{r['load_1min_after']:.1f}"),
    ):
        lines.append(f"| {name} | " + " | ".join(cell(r) for r in rows) + " |")
    return "\n".join(lines) + (
        "\n\nShares of the training loop's wall time from the end of its second step to the end of its last, "
        "validation and epoch-end checkpoints left out (cProfile cumulative times; no part listed contains another). "
        "`python benchmarks/train_profile.py`.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="names this code state, e.g. before / after")
    parser.add_argument("--confs", default="robosuite_lift,tabletop_spatial")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=1, help="tabletop_spatial demos per task")
    args = parser.parse_args()
    path = RESULTS / "train_profile.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    for conf in args.confs.split(","):
        if any((r["conf"], r["label"]) == (conf, args.label) for r in rows):
            continue
        rows.append({"label": args.label, **profile(conf, args.steps, args.threads, args.episodes)})
        print(json.dumps(rows[-1]), flush=True)
        path.write_text(json.dumps(rows, indent=1) + "\n")
    (RESULTS / "train_profile.md").write_text(report(rows))


if __name__ == "__main__":
    main()
