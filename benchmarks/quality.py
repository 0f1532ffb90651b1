"""Online success of each token compressor, clean and under OOD perturbations, with 95% CIs.

For every task (``--tasks``: conf names), compressor (``--compressors``) and training seed
(``--seeds N``: seeds 0..N-1), trained alike:

1. train with train.py into ``<out-dir>/<task>/<compressor>_seed<s>``: skipped when its
   ``checkpoints/last.ckpt`` already holds ``--epochs`` epochs; a run with fewer resumes from
   it (``resume=auto``: optimiser, EMA, epoch and TensorBoard steps continue);
2. evaluate ``last.ckpt`` with evaluate.py (clean + ``--ood``, ``--episodes`` seeded episodes
   per condition) into ``<run>/eval/last_epoch<E>`` (E: the checkpoint's epochs, so a
   longer-trained checkpoint never reads back episodes of a shorter one); evaluate.py
   resumes from its results.jsonl, and a finished evaluation is not started again.

After every run it rewrites, under ``--results-dir``: quality.json (settings, one row per
run, one entry per task and compressor; paths relative to the repository), quality.md (the
table, with the compressors whose 95% intervals do not overlap the first one's) and the plots
quality_tokens.png (clean success vs visual tokens per image) and quality_ood.png (clean vs
each OOD condition), drawn by benchmarks/plots.py. ``--report-only`` rebuilds these from
the run folders without training or evaluating; runs whose last.ckpt has no evaluation
yet are marked "not run". ``--from-json quality.json`` redraws quality.md and the plots from
a results file alone (the committed one: no run folders needed). A run whose last.ckpt
holds fewer epochs than ``--epochs`` is refused, never reported: training that ends short
stops the script with one line, and the table marks such a run instead of showing its
figures. "errors" counts episodes ended by an env or worker error (they count as failures;
"-": not recorded by the evaluation). Train minutes come from the TensorBoard event wall times
(per events file, so the pause of a resumed run is not counted); eval minutes are the wall
time of the evaluate.py calls this script made (kept in ``<run>/quality_run.json``).

    python benchmarks/quality.py [--tasks robosuite_stack,robosuite_pickplacecan] [--compressors grids_k4,identity]
        [--seeds 1] [--epochs 40] [--demos 100] [--episodes 50] [--ood lighting,distractors] [--report-only]
    # smoke test (3.6 min here: 15 s training, 3.3 min evaluating 4 episodes that run to the 300-step limit)
    python benchmarks/quality.py --tasks robosuite_lift --compressors grids_k4 --epochs 1 --demos 4 \\
        --episodes 2 --ood lighting --out-dir /tmp/qsmoke --results-dir /tmp/qsmoke/results
    python benchmarks/quality.py --from-json benchmarks/results/quality.json   # redraw the committed table and plots

Duration on this 2-core CPU, per run of 40 epochs on 100 demos (measured on Lift; the other
tasks scaled by their demo lengths, expert mean 51 / 117 / 211 steps, and episode limits):
training takes 14 min for Lift GridS K=4 (~21 s per epoch), Stack ~2.3x per epoch (~32 min),
PickPlaceCan ~4x (~58 min); K=16 trains ~1.3x and identity (49 tokens) ~1.8x as long as K=4,
topk/pool/random about as long. Evaluation steps ~22 env steps/s with the 2 workers, and a failed
episode runs to the limit (Stack 600, PickPlaceCan 1000 steps): 3 conditions x 50 episodes take
~25-70 min per Stack run and ~45-115 min per PickPlaceCan run (at 50% success ~47 and ~80 min).
The default (both tasks, 6 compressors, 1 seed) so takes about 8.5 h for Stack (3.8 h training)
and 15 h for PickPlaceCan (6.9 h training), ~24 h in all, plus collecting missing demos (Stack ~20
min, PickPlaceCan ~40 min for 100). Other jobs on the same cores stretch all of this (the smoke
run above was ~3x slower per step than the figures here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab and envs from this checkout, installed or not

from plots import plot_ood, plot_tokens  # benchmarks/plots.py

from envs.hdf5_format import package_versions
from gridslab.config.run_layout import last_checkpoint
from gridslab.eval.summary import wilson_interval

RESULTS = Path(__file__).parent / "results"
COMPRESSORS = {  # name -> train.py overrides
    "identity": ["compressor=identity"],
    "grids_k4": ["compressor=grids", "compressor.k=4"],
    "grids_k16": ["compressor=grids", "compressor.k=16"],
    "topk_k4": ["compressor=topk", "compressor.k=4"],
    "pool_k4": ["compressor=pool", "compressor.k=4"],
    "random_k4": ["compressor=random", "compressor.k=4"],
}
RUN_RECORD = "quality_run.json"  # per run: machine, seconds of each evaluate.py call


def csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def run_dir(out_dir: Path, task: str, compressor: str, seed: int) -> Path:
    return out_dir / task / f"{compressor}_seed{seed}"


def relative(path: Path) -> str:
    """``path`` relative to the repository (``../`` when outside it): result files never hold absolute paths."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def machine() -> str:
    return f"{platform.platform()}, {len(os.sched_getaffinity(0))} CPUs"


def checkpoint_state(run: Path) -> tuple[int, dict[str, Any]] | None:
    """(epochs finished, resolved config) of ``run``'s last.ckpt; None without one.

    Lightning stores the 0-based index of the epoch the checkpoint ended, hence ``+ 1``."""
    last = last_checkpoint(run)
    if not last.exists():
        return None
    import torch

    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    return int(checkpoint["epoch"]) + 1, checkpoint["hyper_parameters"]["config"]


def check_same_run(run: Path, config: dict[str, Any], task: str, compressor: str, seed: int, demos: int) -> None:
    """Refuse to resume or reuse a run folder trained with other settings."""
    overrides = dict(o.split("=", 1) for o in COMPRESSORS[compressor])
    expected = {
        "conf": (config["experiment"], task),
        "compressor": (config["compressor"]["name"], overrides["compressor"]),
        "seed": (config["seed"], seed),
        "data.episodes": (config["data"]["episodes"], demos),
    }
    if "compressor.k" in overrides:
        expected["compressor.k"] = (config["compressor"]["k"], int(overrides["compressor.k"]))
    different = [f"{key} {found} (asked {asked})" for key, (found, asked) in expected.items() if found != asked]
    if different:
        sys.exit(f"{run} holds a run with other settings: {', '.join(different)}; pass another --out-dir or delete it")


def train(run: Path, task: str, compressor: str, seed: int, epochs: int, demos: int) -> None:
    """Train (or resume, or skip) the run so that last.ckpt holds ``epochs`` epochs."""
    state = checkpoint_state(run)
    if state is not None:
        check_same_run(run, state[1], task, compressor, seed, demos)
        if state[0] >= epochs:
            print(f"trained: last.ckpt holds {state[0]} epochs")
            return
    started = time.time()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"conf={task}",
            *COMPRESSORS[compressor],
            f"seed={seed}",
            f"data.episodes={demos}",
            f"trainer.max_epochs={epochs}",
            f"output_dir={run}",
            "resume=auto",
        ],
        check=True,
        cwd=ROOT,
    )
    record = read_record(run)
    record["train_process_seconds"] = record.get("train_process_seconds", 0.0) + time.time() - started
    write_record(run, record)
    trained = checkpoint_state(run)
    if trained is None or trained[0] < epochs:
        held = 0 if trained is None else trained[0]
        sys.exit(
            f"{relative(run)}: last.ckpt holds {held} of the {epochs} epochs asked after training; "
            "not evaluated or reported (re-run to resume it, or delete the folder)"
        )


def read_record(run: Path) -> dict[str, Any]:
    path = run / RUN_RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def write_record(run: Path, record: dict[str, Any]) -> None:
    record["machine"] = machine()
    tmp = run / (RUN_RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, run / RUN_RECORD)


def eval_dir(run: Path, epochs_trained: int) -> Path:
    return run / "eval" / f"last_epoch{epochs_trained}"


def evaluated(summary_path: Path, episodes: int, conditions: list[str]) -> bool:
    """Whether summary.json already covers ``conditions`` with ``episodes`` each."""
    if not summary_path.exists():
        return False
    summary = json.loads(summary_path.read_text())
    found = {row["perturbation"] for row in summary["conditions"]}
    return summary["episodes_per_condition"] == episodes and set(conditions) <= found


def evaluate(run: Path, episodes: int, ood: list[str], video_episodes: int, max_steps: int) -> None:
    """Evaluate last.ckpt clean and under ``ood`` (evaluate.py resumes a partial evaluation);
    ``max_steps`` > 0 caps episodes (eval.max_steps), 0 keeps the task's own limit."""
    epochs_trained, _ = checkpoint_state(run)
    out = eval_dir(run, epochs_trained)
    if evaluated(out / "summary.json", episodes, ["clean", *ood]):
        print(f"evaluated: {out / 'summary.json'}")
        return
    started = time.time()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            "--ckpt",
            str(last_checkpoint(run)),
            "--episodes",
            str(episodes),
            *(["--ood", ",".join(ood)] if ood else []),
            "--video-episodes",
            str(video_episodes),
            "--out",
            str(out),
            f"eval.max_steps={max_steps}",
        ],
        check=True,
        cwd=ROOT,
    )
    record = read_record(run)
    seconds = record.setdefault("eval_seconds", {})
    seconds[out.name] = seconds.get(out.name, 0.0) + time.time() - started
    write_record(run, record)


def train_minutes(run: Path) -> float | None:
    """Training wall time from TensorBoard: first to last scalar of each events file, summed
    (one file per training process, so the pause before a resume is left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    total, found = 0.0, False
    for events_file in sorted((run / "tb").glob("events.out.tfevents.*")):
        events = EventAccumulator(str(events_file), size_guidance={"scalars": 0})
        events.Reload()
        times = [event.wall_time for tag in events.Tags()["scalars"] for event in events.Scalars(tag)]
        if times:
            total, found = total + max(times) - min(times), True
    return total / 60 if found else None


def run_row(out_dir: Path, task: str, compressor: str, seed: int, ood: list[str]) -> dict[str, Any]:
    """One run's figures; ``status`` "done" once its last.ckpt has been evaluated."""
    run = run_dir(out_dir, task, compressor, seed)
    row: dict[str, Any] = {
        "task": task,
        "compressor": compressor,
        "seed": seed,
        "overrides": " ".join(COMPRESSORS[compressor]),
        "run_dir": relative(run),
        "status": "not run",
    }
    state = checkpoint_state(run)
    if state is None:
        return row
    epochs_trained, config = state
    summary_path = eval_dir(run, epochs_trained) / "summary.json"
    if not summary_path.exists():
        return row
    summary = json.loads(summary_path.read_text())
    by_condition: dict[str, dict[str, Any]] = {}
    for condition in summary["conditions"]:  # the first row per perturbation: a suite's pooled "all tasks" row
        by_condition.setdefault(condition["perturbation"], condition)
    if "clean" not in by_condition:
        return row
    clean = by_condition["clean"]
    record = read_record(run)
    eval_seconds = record.get("eval_seconds", {}).get(summary_path.parent.name)
    row.update(
        {
            "status": "done",
            "env": summary["env"],
            "epochs": epochs_trained,
            "demos": config["data"]["episodes"],
            "episodes": summary["episodes_per_condition"],
            "eval_dir": relative(summary_path.parent),
            "train_minutes": train_minutes(run),
            "eval_minutes": None if eval_seconds is None else eval_seconds / 60,
            "tokens_per_image": clean["tokens_per_image"],
            "tokens_min": clean.get("tokens_min"),
            "tokens_max": clean.get("tokens_max"),
            "policy_gflops": clean.get("policy_gflops"),
            "versions": summary["versions"],
            "machine": record.get("machine"),
            "success": {
                name: {
                    key: by_condition[name][key]
                    for key in ("severity", "successes", "episodes", "success_rate", "ci95_low", "ci95_high", "errors")
                    if key in by_condition[name]
                }
                for name in ["clean", *ood]
                if name in by_condition
            },
        }
    )
    return row


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def refuse_short(row: dict[str, Any], epochs: int) -> dict[str, Any]:
    """``row``, or, when its last.ckpt holds fewer than ``epochs`` epochs, a "refused" row
    without its figures (said in one line on stderr): a short run is never reported."""
    if row["status"] != "done" or row["epochs"] >= epochs:
        return row
    reason = f"last.ckpt holds {row['epochs']} of {epochs} epochs"
    print(
        f"refused: {row['run_dir']}: {reason}, not reported (train it to the end: run this script without --report-only)",
        file=sys.stderr,
    )
    kept = {key: row[key] for key in ("task", "compressor", "seed", "overrides", "run_dir")}
    return {**kept, "status": "refused", "epochs": row["epochs"], "reason": reason}


def total_errors(rows: list[dict[str, Any]]) -> int | None:
    """Episodes ended by an env or worker error over ``rows``' conditions; None when a
    condition does not record it (an evaluation older than the errors count)."""
    counts = [stats.get("errors") for row in rows for stats in row["success"].values()]
    return None if None in counts else sum(counts)


def aggregate(rows: list[dict[str, Any]], conditions: list[str]) -> dict[str, Any]:
    """One (task, compressor) over its finished seeds: mean figures; success pooled over
    seeds (Wilson 95% CI of all episodes; the summary's own CI for one seed) and per seed.
    ``note``: why nothing is reported when no seed finished ("not run" or a refusal)."""
    done = [r for r in rows if r["status"] == "done"]
    refused = [r["reason"] for r in rows if r["status"] == "refused"]
    entry: dict[str, Any] = {
        "task": rows[0]["task"],
        "compressor": rows[0]["compressor"],
        "family": rows[0]["compressor"].split("_")[0],
        "seeds": len(rows),
        "runs": len(done),
        "note": None if done else (f"refused: {refused[0]}" if refused else "not run"),
        **{key: mean([r[key] for r in done]) for key in ("tokens_per_image", "policy_gflops", "train_minutes", "eval_minutes")},
        "errors": total_errors(done),
        "success": {},
    }
    for condition in conditions:
        stats = [r["success"][condition] for r in done if condition in r["success"]]
        if not stats:
            continue
        successes, episodes = sum(s["successes"] for s in stats), sum(s["episodes"] for s in stats)
        low, high = (stats[0]["ci95_low"], stats[0]["ci95_high"]) if len(stats) == 1 else wilson_interval(successes, episodes)
        entry["success"][condition] = {
            "successes": successes,
            "episodes": episodes,
            "rate": successes / episodes,
            "ci95_low": low,
            "ci95_high": high,
            "seed_rates": [s["success_rate"] for s in stats],
        }
    return entry


def success_cell(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "-"
    cell = f"{stats['successes']}/{stats['episodes']} = {stats['rate']:.0%} [{stats['ci95_low']:.0%}, {stats['ci95_high']:.0%}]"
    rates = stats["seed_rates"]
    return cell if len(rates) == 1 else f"{cell}, seeds {min(rates):.0%}-{max(rates):.0%}"


def number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def distinct(values: list[Any]) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values)) or "-"


def separations(entries: list[dict[str, Any]], conditions: list[str]) -> list[str]:
    """Per task, one sentence naming the compressors whose 95% interval lies wholly below or
    above that of the task's first reported compressor, per condition."""
    sentences = []
    for task in dict.fromkeys(e["task"] for e in entries):
        reported = [e for e in entries if e["task"] == task and e["runs"]]
        if len(reported) < 2:
            continue
        reference, others = reported[0], reported[1:]
        parts = []
        for condition in conditions:
            ref = reference["success"].get(condition)
            if ref is None:
                continue
            apart = [
                f"{e['compressor']} {'below' if s['ci95_high'] < ref['ci95_low'] else 'above'}"
                for e in others
                if (s := e["success"].get(condition)) and (s["ci95_high"] < ref["ci95_low"] or s["ci95_low"] > ref["ci95_high"])
            ]
            parts.append(f"{condition}: {', '.join(apart) or 'none'}")
        sentences.append(f"{task}: 95% intervals apart from {reference['compressor']}'s ({'; '.join(parts)}).")
    return sentences


def markdown(rows: list[dict[str, Any]], entries: list[dict[str, Any]], ood: list[str], max_steps: int) -> str:
    """quality.md: one paragraph of provenance, the table, and which intervals do not overlap."""
    done = [r for r in rows if r["status"] == "done"]
    versions = [r["versions"] for r in done] or [package_versions()]
    severities = [r["success"][c]["severity"] for r in done for c in ood if c in r["success"]]
    header = (
        f"{distinct([r['machine'] or machine() for r in done] or [machine()])}; "
        + "; ".join(f"{p} {distinct([v.get(p) for v in versions])}" for p in ("torch", "mujoco", "robosuite"))
        + f". {distinct([r['epochs'] for r in done])} epochs on {distinct([r['demos'] for r in done])} demos per run, "
        f"{distinct([r['episodes'] for r in done])} online episodes per condition"
        + (f" (OOD severity {distinct(severities)})" if severities else "")
        + (f", episodes capped at {max_steps} steps" if max_steps else "")
        + ", "
        f"last.ckpt (EMA weights). Per run: train {number(mean([r['train_minutes'] for r in done]), '.1f')} min, "
        f"eval {number(mean([r['eval_minutes'] for r in done]), '.1f')} min on average (columns: mean over seeds). "
        "Success: successes/episodes = rate [Wilson 95% CI]; over several seeds, episodes pooled and the per-seed range. "
        'Errors: episodes ended by an env or worker error, counted as failures ("-": not recorded).'
    )
    columns = [
        "task",
        "compressor",
        "seeds",
        "visual tokens/image",
        "GFLOPs/call",
        "train min",
        "eval min",
        *(f"success {c}" for c in ["clean", *ood]),
        "errors",
    ]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for e in entries:
        if not e["runs"]:
            lines.append(
                f"| {e['task']} | {e['compressor']} | 0/{e['seeds']} | {e['note']} | "
                + " | ".join(["-"] * (len(columns) - 4))
                + " |"
            )
            continue
        cells = [
            e["task"],
            e["compressor"],
            f"{e['runs']}/{e['seeds']}",
            number(e["tokens_per_image"], "g"),
            number(e["policy_gflops"], ".3f"),
            number(e["train_minutes"], ".1f"),
            number(e["eval_minutes"], ".1f"),
            *(success_cell(e["success"].get(c)) for c in ["clean", *ood]),
            number(e["errors"], "d"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    separated = separations(entries, ["clean", *ood])
    return "\n".join(lines + ([""] + separated if separated else [])) + "\n"


def render(rows: list[dict[str, Any]], settings: dict[str, Any], results_dir: Path) -> tuple[str, dict[str, Any]]:
    """Refuse short runs, aggregate, write quality.md and the two plots; returns the md and
    ``{"runs": rows after refusal, "table": entries}``."""
    rows = [refuse_short(row, settings["epochs"]) for row in rows]
    conditions = ["clean", *settings["ood"]]
    entries = [
        aggregate([r for r in rows if (r["task"], r["compressor"]) == (task, compressor)], conditions)
        for task in settings["tasks"]
        for compressor in settings["compressors"]
    ]
    results_dir.mkdir(parents=True, exist_ok=True)
    table = markdown(rows, entries, settings["ood"], settings["max_steps"])
    (results_dir / "quality.md").write_text(table)
    plot_tokens(entries, settings["tasks"], results_dir / "quality_tokens.png")
    plot_ood(entries, settings["tasks"], conditions, results_dir / "quality_ood.png")
    return table, {"runs": rows, "table": entries}


def write_outputs(args: argparse.Namespace, plan: list[tuple[str, str, int]]) -> str:
    """Read every planned run back and write quality.{json,md} and the two plots; returns the md."""
    settings = {
        key: (relative(value) if isinstance(value, Path) else value) for key, value in vars(args).items() if key != "from_json"
    }
    table, results = render([run_row(args.out_dir, *item, args.ood) for item in plan], settings, args.results_dir)
    (args.results_dir / "quality.json").write_text(json.dumps({"settings": settings, **results}, indent=2) + "\n")
    return table


def from_json(path: Path, results_dir: Path) -> str:
    """Redraw quality.md and the plots from ``path`` (a quality.json) into ``results_dir``; the json is left as it is."""
    if not path.is_file():
        sys.exit(f"--from-json {path}: no such file; valid: a quality.json written by this script")
    results = json.loads(path.read_text())
    return render(results["runs"], results["settings"], results_dir)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tasks",
        type=csv_list,
        default=csv_list("robosuite_stack,robosuite_pickplacecan"),
        help="comma list of experiment confs (conf/<name>.yaml)",
    )
    parser.add_argument(
        "--compressors", type=csv_list, default=list(COMPRESSORS), help=f"comma subset of {', '.join(COMPRESSORS)}"
    )
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per compressor (seed=0..N-1)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--demos", type=int, default=100, help="demonstrations to train on (data.episodes)")
    parser.add_argument("--episodes", type=int, default=50, help="online episodes per condition")
    parser.add_argument(
        "--ood", type=csv_list, default=csv_list("lighting,distractors"), help="comma list of perturbations ('' = clean only)"
    )
    parser.add_argument("--max-steps", type=int, default=0, help="episode step limit in evaluation (0 = the task's own)")
    parser.add_argument("--video-episodes", type=int, default=0, help="MP4s per condition")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the run folders")
    parser.add_argument("--from-json", type=Path, help="redraw quality.md and the plots from this quality.json only")
    args = parser.parse_args()
    if args.from_json:
        print(from_json(args.from_json, args.results_dir))
        return
    unknown = [c for c in args.compressors if c not in COMPRESSORS]
    if unknown:
        parser.error(f"unknown compressor {', '.join(unknown)}; valid: {', '.join(COMPRESSORS)}")
    missing = [t for t in args.tasks if not (ROOT / "conf" / f"{t}.yaml").exists()]
    if missing:
        parser.error(
            f"no conf/{missing[0]}.yaml; valid tasks: {', '.join(sorted(p.stem for p in (ROOT / 'conf').glob('*.yaml')))}"
        )
    args.out_dir, args.results_dir = args.out_dir.resolve(), args.results_dir.resolve()
    plan = [(task, compressor, seed) for task in args.tasks for compressor in args.compressors for seed in range(args.seeds)]
    if not args.report_only:
        from rich.console import Console

        console = Console(stderr=True)
        for index, (task, compressor, seed) in enumerate(plan, 1):
            run = run_dir(args.out_dir, task, compressor, seed)
            label = f"[{index}/{len(plan)}] {task} {compressor} seed{seed}"
            console.rule(f"{label}: training")
            train(run, task, compressor, seed, args.epochs, args.demos)
            console.rule(f"{label}: evaluating")
            evaluate(run, args.episodes, args.ood, args.video_episodes, args.max_steps)
            write_outputs(args, plan)
            console.rule(f"{label}: done")
    print(write_outputs(args, plan))


if __name__ == "__main__":
    main()
