"""Token budgets, trained alike: fixed K=4, fixed K=16 and adaptive K, on one suite.

For each budget: train (skipped when the run already has last.ckpt, so a re-run resumes),
then read from its TensorBoard events the last validation epoch's visual tokens per image
(mean / min / max over the validation set), GFLOPs per sample at those token counts, and
validation action L1 (env units), plus the training wall time. On a multi-task suite the
checkpoint is also run over the validation demos to give K per task (mean / min / max and
how many frames got each K). With ``--episodes N`` each checkpoint is evaluated online
(clean, N episodes per task), which reports success and the K used per policy call, per task.

Every finished run writes ``benchmarks/results/budgets/<suite>/<run>.json`` (paths in it
relative to the repository); a run whose JSON exists is not redone, so the benchmark can be
completed in pieces. The table ``benchmarks/results/budgets[_<suite>].md`` is regenerated
from all the JSONs of the suite.

    python benchmarks/budgets.py [--suite lift|tabletop_spatial] [--epochs 15] [--demos 0] [--episodes 0]

``--demos N`` trains on N demos per task (collected into runs/budgets/<suite>/data when
missing; 0 = the suite's default data), ``--max-steps`` caps an online episode.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab from this checkout, installed or not

from _runs import PAPER_INIT  # benchmarks/_runs.py

from gridslab.config.run_layout import last_checkpoint
from gridslab.eval.summary import ALL_TASKS

RESULTS = Path(__file__).parent / "results"
SUITES = {
    "lift": {
        "conf": [],
        "title": "Default task (robosuite/Lift, GridS, two 84 px cameras)",
        "budgets": {
            "fixed K=4": ["compressor.k=4"],
            "fixed K=16": ["compressor.k=16"],
            "adaptive K in [2, 32], relax": ["budget=adaptive", "budget.signal=relax", "budget.k_min=2", "budget.k_max=32"],
            "adaptive K in [2, 32], relax, penalty 0.005": [
                "budget=adaptive",
                "budget.signal=relax",
                "budget.k_min=2",
                "budget.k_max=32",
                "budget.penalty=0.005",
            ],
            "adaptive K in [2, 32], sensitivity": ["budget=adaptive", "budget.k_min=2", "budget.k_max=32"],
        },
    },
    "tabletop_spatial": {
        "conf": ["conf=tabletop_spatial"],
        "title": "tabletop_spatial (10 tasks, one multi-task policy, GridS, two 128 px cameras)",
        "budgets": {
            "fixed K=4": ["compressor.k=4"],
            "fixed K=16": ["compressor.k=16"],
            "adaptive K in [4, 16], sensitivity": ["budget=adaptive", "budget.k_min=4", "budget.k_max=16"],
        },
    },
}


def slug(name: str) -> str:
    """``adaptive K in [2, 32], relax, penalty 0.005`` -> ``adaptive_K2-32_relax_penalty0.005``."""
    for old, new in (("K in [", "K"), ("], ", "_"), (", ", "-"), ("K=", "K"), (", ", "_"), (" ", "_")):
        name = name.replace(old, new)
    return name.replace("penalty_", "penalty")


def run_name(name: str, epochs: int, demos: int) -> str:
    return f"{slug(name)}_e{epochs}" + (f"_d{demos}" if demos else "")


def last_scalar(events: EventAccumulator, tag: str) -> float:
    return float(events.Scalars(tag)[-1].value)


def k_summary(ks: list[float]) -> dict:
    """mean / min / max of per-sample K and how many samples got each K."""
    return {
        "mean": round(sum(ks) / len(ks), 3),
        "min": min(ks),
        "max": max(ks),
        "counts": {f"{k:g}": n for k, n in sorted(Counter(ks).items())},
    }


def validation_k_by_task(checkpoint: Path) -> dict:
    """Per task, over the validation frames of the checkpoint's policy (eval mode, as in
    rollouts): the K each frame got and, for a budget that probes (``signal=sensitivity``),
    the mean action L1 (normalised) at each probe K and how many frames' probe target
    (``AdaptiveBudget.sensitivity_target``) is each K."""
    import torch
    from torch.utils.data import DataLoader

    from gridslab.eval.checkpoint import load_policy
    from gridslab.train.fit import build_datamodule

    policy, cfg, _ = load_policy(checkpoint)
    data = build_datamodule(cfg)
    data.setup()
    budget = policy.budget
    probes = getattr(budget, "signal", None) == "sensitivity" and budget.head is not None
    ks: dict[str, list[float]] = defaultdict(list)
    losses: dict[str, list[list[float]]] = defaultdict(list)
    targets: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        for raw in DataLoader(data.val_set, batch_size=cfg.data.batch_size):
            batch = policy.processor.training_batch(raw)
            chosen = policy.tokens_per_sample(policy(batch)).tolist()
            probed = budget.probe_losses(policy, batch) if probes else None
            for row, task in enumerate(raw["instruction"]):
                ks[task].append(round(chosen[row], 3))
                if probed is not None:
                    losses[task].append(probed[row].tolist())
                    targets[task].append(float(budget.sensitivity_target(probed[row : row + 1])[0]))
    result = {}
    for task in sorted(ks):
        result[task] = k_summary(ks[task])
        if probes:
            columns = list(zip(*losses[task]))
            result[task]["probe_l1"] = {f"{k}": round(sum(c) / len(c), 4) for k, c in zip(budget.probe_ks, columns)}
            result[task]["probe_target"] = k_summary(targets[task])["counts"]
    return result


def measure(suite: str, name: str, args: argparse.Namespace) -> dict:
    spec = SUITES[suite]
    run = run_name(name, args.epochs, args.demos)
    out = ROOT / "runs" / "budgets" / suite / run
    data = [f"data.root=runs/budgets/{suite}/data", f"data.episodes={args.demos}"] if args.demos else []
    overrides = [*spec["conf"], PAPER_INIT, *spec["budgets"][name], *data]
    if not last_checkpoint(out).exists():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "train.py"),
                *overrides,
                f"output_dir={out.relative_to(ROOT)}",
                f"trainer.max_epochs={args.epochs}",
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
        "run": str(out.relative_to(ROOT)),
        "overrides": " ".join(overrides),
        "epochs": args.epochs,
        "demos_per_task": args.demos or "default",
        "tokens_mean": last_scalar(events, "val/tokens_per_image/mean"),
        "tokens_min": last_scalar(events, "val/tokens_per_image/min"),
        "tokens_max": last_scalar(events, "val/tokens_per_image/max"),
        "gflops_per_sample": last_scalar(events, "val/gflops_per_sample"),
        "val_action_l1": last_scalar(events, "val/action_l1"),
        "train_minutes": (losses[-1].wall_time - losses[0].wall_time) / 60,
    }
    if spec["conf"]:  # a multi-task suite: K per task over the validation frames
        row["val_k_by_task"] = validation_k_by_task(last_checkpoint(out))
    if args.episodes:
        evaluation = out / "eval" / (f"clean_{args.episodes}ep" + (f"_{args.max_steps}steps" if args.max_steps else ""))
        command = [
            sys.executable,
            str(ROOT / "evaluate.py"),
            f"output_dir={out.relative_to(ROOT)}",
            "--episodes",
            str(args.episodes),
        ]
        command += ["--out", str(evaluation.relative_to(ROOT)), *([f"eval.max_steps={args.max_steps}"] if args.max_steps else [])]
        subprocess.run(command, check=True, cwd=ROOT)
        row["evaluation"] = str(evaluation.relative_to(ROOT))
        summary = json.loads((evaluation / "summary.json").read_text())["conditions"]
        row["online"] = [
            {
                "task": c["task"],
                "successes": c["successes"],
                "episodes": c["episodes"],
                "tokens_mean": c["tokens_per_image"],
                "tokens_min": c["tokens_min"],
                "tokens_max": c["tokens_max"],
                "gflops": c["policy_gflops"],
            }
            for c in summary
            if c["perturbation"] == "clean"
        ]
    return row


def task_instructions(suite: str) -> dict[str, str]:
    """Env task name -> its instruction for a tabletop suite (empty for other suites)."""
    from envs.registry import expand
    from envs.tabletop import TASKS

    return {name: TASKS[name].instruction for name in expand(suite) if name in TASKS}


def table(suite: str, rows: list[dict]) -> list[str]:
    """The suite's markdown: one line per run, then K per task (validation and online)."""
    instructions = task_instructions(suite) if SUITES[suite]["conf"] else {}
    lines = [
        f"{SUITES[suite]['title']}, on this machine's CPU; validation figures from the last epoch "
        "(GFLOPs for one sample at the K it got); online: clean episodes (all tasks pooled where the suite has several).",
        "",
        "| budget | epochs | demos/task | tokens/image mean (min-max) | GFLOPs/sample | val action L1 | train min "
        "| online success | online K mean (range) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pooled = next((c for c in r.get("online", []) if c["task"] == ALL_TASKS), (r.get("online") or [None])[0])
        online = (
            f" {pooled['successes']}/{pooled['episodes']} | {pooled['tokens_mean']:.2f} "
            f"({pooled['tokens_min']:g}-{pooled['tokens_max']:g}) |"
            if pooled
            else " - | - |"
        )
        lines.append(
            f"| {r['budget']} | {r['epochs']} | {r['demos_per_task']} | {r['tokens_mean']:.2f} "
            f"({r['tokens_min']:g}-{r['tokens_max']:g}) | {r['gflops_per_sample']:.4f} | {r['val_action_l1']:.4f} | "
            f"{r['train_minutes']:.1f} |" + online
        )
    for r in rows:
        if "val_k_by_task" not in r:
            continue
        online = {instructions.get(c["task"], c["task"]): c for c in r.get("online", [])}
        lines += [
            "",
            f"K per task, {r['budget']} ({r['epochs']} epochs, {r['demos_per_task']} demos/task): validation frames "
            "(mean, min-max, frames per K) and online policy calls (tasks without validation demos: online only).",
            "",
            "| task | val K mean (min-max) | val frames per K | val L1 at probe K | frames per probe target K "
            "| online success | online K mean (min-max) |",
            "|---|---|---|---|---|---|---|",
        ]
        for task in sorted(set(r["val_k_by_task"]) | set(online) - {ALL_TASKS}):
            k, c = r["val_k_by_task"].get(task), online.get(task)
            counts = ", ".join(f"{key}: {n}" for key, n in k["counts"].items()) if k else "-"
            probe = ", ".join(f"{key}: {v:.3f}" for key, v in k.get("probe_l1", {}).items()) if k else ""
            target = ", ".join(f"{key}: {n}" for key, n in k.get("probe_target", {}).items()) if k else ""
            lines.append(
                f"| {task} | "
                + (f"{k['mean']:.2f} ({k['min']:g}-{k['max']:g})" if k else "-")
                + f" | {counts} | {probe or '-'} | {target or '-'} |"
                + (
                    f" {c['successes']}/{c['episodes']} | {c['tokens_mean']:.2f} ({c['tokens_min']:g}-{c['tokens_max']:g}) |"
                    if c
                    else " - | - |"
                )
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=sorted(SUITES), default="lift")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--demos", type=int, default=0, help="demos per task (0 = the suite's default data)")
    parser.add_argument("--episodes", type=int, default=0, help="online clean episodes per task and budget (0 = skip)")
    parser.add_argument("--max-steps", type=int, default=0, help="cap on an online episode's env steps (0 = the env's)")
    parser.add_argument("--budgets", default="", help="';'-separated budget names to run (default: all of the suite's)")
    args = parser.parse_args()
    folder = RESULTS / "budgets" / args.suite
    folder.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.budgets.split(";") if n.strip()] if args.budgets else list(SUITES[args.suite]["budgets"])
    for name in names:
        if name not in SUITES[args.suite]["budgets"]:
            raise SystemExit(f"--budgets names {name!r}; valid: {'; '.join(SUITES[args.suite]['budgets'])}")
        path = folder / f"{run_name(name, args.epochs, args.demos)}.json"
        if not path.exists():
            path.write_text(json.dumps(measure(args.suite, name, args), indent=2) + "\n")
    order = list(SUITES[args.suite]["budgets"])
    rows = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    rows.sort(
        key=lambda r: (r["epochs"], str(r["demos_per_task"]), order.index(r["budget"]) if r["budget"] in order else len(order))
    )
    lines = table(args.suite, rows)
    (RESULTS / ("budgets.md" if args.suite == "lift" else f"budgets_{args.suite}.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
