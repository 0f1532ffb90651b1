"""Online success of each token compressor, clean and under OOD perturbations, with 95% CIs.

For every task (``--tasks``: conf names), compressor (``--compressors``) and training seed
(``--seeds N``: seeds 0..N-1), trained alike:

1. train with train.py into ``<out-dir>/<task>/<compressor>_seed<s>``: skipped when its
   ``checkpoints/last.ckpt`` already holds the task's epochs; a run with fewer resumes from
   it (``resume=auto``: optimiser, EMA, epoch and TensorBoard steps continue). ``--epochs`` and
   ``--demos`` default to the task config's own ``trainer.max_epochs`` and ``data.episodes`` (no
   override passed to train.py; for a suite, ``data.episodes`` counts demos per task): every
   run of a task trains the same. A run folder trained with other settings (conf, compressor
   and its overridden fields, seed, demos, epochs) is refused in one line;
2. evaluate ``last.ckpt`` with evaluate.py (clean + ``--ood``) into ``<run>/eval/last_epoch<E>``
   (E: the checkpoint's epochs, so a longer-trained checkpoint never reads back episodes of a
   shorter one); evaluate.py resumes from its results.jsonl, and a finished evaluation is not
   started again. ``--episodes`` counts episodes per condition over all of a task's envs: a
   suite (tabletop_spatial: 10 tasks) gets ``--episodes`` / its task count per task (the count
   must divide it), and its row is the suite's pooled "all tasks" row of summary.json;
3. write the run's result, ``<results-dir>/quality/<task>/<compressor>_seed<s>.json``: its
   settings, figures and per-epoch validation action L1 (``val/action_l1`` from its TensorBoard
   events), paths relative to the repository, and print the ``git add`` line that commits it
   (the script commits nothing itself). A run folder whose evaluation differs from its JSON
   rewrites the JSON; a JSON without a run folder here is kept as it is, and when it holds a
   finished run with its task's settings the run is not trained or evaluated again (a fresh
   clone carries on with the runs that have not landed).

After every run, and with ``--report-only`` (no training or evaluating), it rebuilds from the
per-run JSONs alone (a clone without runs/ reproduces them): quality.json (each task's
settings, one row per run, one entry per task and compressor), quality.md (per task: its
settings, how much each compressor's validation L1 still fell over the last quarter of the epochs
(by less than 5%: converged) and the best one by clean success, the table,
the compressors whose 95% intervals do not overlap the first one's) and the plots
quality_tokens.png (clean success vs visual tokens per image) and quality_ood.png (clean vs
each OOD condition), drawn by benchmarks/plots.py. Tasks with JSONs but not in ``--tasks``
(earlier, shorter comparisons such as the Lift one) are shown after the planned ones, with
their own settings. A run whose settings differ from its task's (e.g. a last.ckpt with fewer
epochs) is refused, never reported: training that ends short stops the script with one line,
and the table marks such a run instead of showing its figures. "errors" counts episodes ended
by an env or worker error (they count as failures; "-": not recorded by the evaluation). Train
minutes come from the TensorBoard event wall times (per events file, so the pause of a resumed
run is not counted); eval minutes are the wall time of the evaluate.py calls this script made
(kept in ``<run>/quality_run.json``).

    python benchmarks/quality.py [--tasks tabletop_spatial,robosuite_pickplacecan] [--compressors grids_k4,identity]
        [--seeds 2] [--epochs E] [--demos D] [--episodes 50] [--ood lighting,distractors,camera] [--report-only]
    # smoke test (~35 s on this CPU when idle: 10 s training, 22 s evaluating 4 episodes that run to the 300-step limit)
    python benchmarks/quality.py --tasks robosuite_lift --compressors grids_k4 --seeds 1 --epochs 1 --demos 4 \\
        --episodes 2 --ood lighting --out-dir /tmp/qsmoke --results-dir /tmp/qsmoke/results
    python benchmarks/quality.py --report-only   # the committed table and plots, from the per-run JSONs

A long benchmark runs in pieces (any subset of --tasks/--compressors/--seeds, stopped and
started at will); commit each JSON as it lands and, after a piece, run ``--report-only`` with
the default lists so quality.md holds every landed run.

Duration on this 2-core CPU, measured alone (estimates where scaled): training GridS K=4 on
Lift takes ~21 s per epoch of 100 demos (expert mean 51 steps); PickPlaceCan (211 steps) ~4x
per epoch, ~58 min for its 40 epochs; tabletop_spatial (10 tasks x 50 demos, mean ~114 steps,
128 px) ~4.9 min per epoch of ~800 steps, ~98 min for its 20 epochs (measured, GridS K=4).
K=16 trains ~1.3x and identity (49 / 64 tokens) ~1.8x as long as K=4, topk/pool/random about as long (tokenlearner: not measured yet). Evaluation with 2 workers steps ~130-170 env
steps/s (benchmarks/results/eval_speed.md), and a failed episode runs to the limit
(tabletop_spatial 300, PickPlaceCan 1000 steps): 4 conditions x 50 episodes take at most ~8 min
per tabletop_spatial run and ~25 min per PickPlaceCan run. The default (both tasks, 7
compressors, 2 seeds: 28 runs) so takes about 29 h for tabletop_spatial and 21 h for
PickPlaceCan, plus collecting missing demos. Other jobs on the same cores stretch all of this
(~3x per step seen).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab and envs from this checkout, installed or not

from _runs import PAPER_INIT, training_events  # benchmarks/_runs.py
from plots import plot_ood, plot_tokens  # benchmarks/plots.py

from envs.hdf5_format import package_versions
from envs.registry import expand
from gridslab.config import load_config
from gridslab.config.run_layout import last_checkpoint
from gridslab.eval.summary import ALL_TASKS, TRACKING, timing_key, wilson_interval

RESULTS = Path(__file__).parent / "results"
RUN_RESULTS = "quality"  # <results-dir>/quality/<task>/<compressor>_seed<s>.json, one per finished run
PAPER_GRIDS = ["compressor=grids", PAPER_INIT]  # GridS as the paper's (_runs.PAPER_INIT)
COMPRESSORS = {  # name -> train.py overrides; the first is the one the others' intervals are compared with
    "grids_k4": [*PAPER_GRIDS, "compressor.k=4"],
    "grids_k16": [*PAPER_GRIDS, "compressor.k=16"],
    "identity": ["compressor=identity"],
    "topk_k4": ["compressor=topk", "compressor.k=4"],
    "pool_k4": ["compressor=pool", "compressor.k=4"],
    "random_k4": ["compressor=random", "compressor.k=4"],
    "tokenlearner_k4": ["compressor=tokenlearner", "compressor.k=4"],
}
RUN_RECORD = "quality_run.json"  # per run: machine, seconds of each evaluate.py call
SETTINGS = ("env", "env_tasks", "epochs", "demos", "episodes", "episodes_per_task", "ood")  # what every run of a task shares
COMPARED = ("epochs", "demos", "episodes", "ood")  # a run whose own differ from its task's is refused
CONVERGED = 0.05  # val action L1 falling by less than this over the last quarter of the epochs: converged


def csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be a positive integer")
    return value


def run_dir(out_dir: Path, task: str, compressor: str, seed: int) -> Path:
    return out_dir / task / f"{compressor}_seed{seed}"


def run_json(results_dir: Path, task: str, compressor: str, seed: int) -> Path:
    return results_dir / RUN_RESULTS / task / f"{compressor}_seed{seed}.json"


def relative(path: Path) -> str:
    """``path`` relative to the repository (``../`` when outside it), lexically (runs/ may be a
    link elsewhere): result files never hold absolute paths."""
    return os.path.relpath(os.path.abspath(path), ROOT)


def machine() -> str:
    return f"{platform.platform()}, {len(os.sched_getaffinity(0))} CPUs"


@functools.cache
def task_config(task: str) -> Any:
    """The resolved config of ``conf/<task>.yaml`` (no overrides)."""
    return load_config([f"conf={task}"])


def asked_training(task: str, epochs: int | None, demos: int | None) -> tuple[int, int]:
    """(epochs, demos) every run of ``task`` trains with: the ones given, else the task config's."""
    cfg = task_config(task)
    return epochs or int(cfg.trainer.max_epochs), demos or int(cfg.data.episodes)


def task_settings(task: str, epochs: int | None, demos: int | None, episodes: int, ood: list[str]) -> dict[str, Any]:
    """What every run of ``task`` is trained and evaluated with (``SETTINGS``): ``episodes``
    per condition over all the tasks of its env (a suite's count, from the env registry, must
    divide it: ``episodes_per_task`` each)."""
    env = str(task_config(task).env.name)
    env_tasks = len(expand(env))
    if episodes % env_tasks:
        sys.exit(
            f"--episodes {episodes}: {task} ({env}) is a suite of {env_tasks} tasks and --episodes counts episodes "
            f"per condition over all of them; valid: a multiple of {env_tasks}"
        )
    epochs, demos = asked_training(task, epochs, demos)
    return {
        "env": env,
        "env_tasks": env_tasks,
        "epochs": epochs,
        "demos": demos,
        "episodes": episodes,
        "episodes_per_task": episodes // env_tasks,
        "ood": list(ood),
    }


def checkpoint_state(run: Path) -> tuple[int, dict[str, Any]] | None:
    """(epochs finished, resolved config) of ``run``'s last.ckpt; None without one.

    Lightning stores the 0-based index of the epoch the checkpoint ended, hence ``+ 1``."""
    last = last_checkpoint(run)
    if not last.exists():
        return None
    import torch

    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    return int(checkpoint["epoch"]) + 1, checkpoint["hyper_parameters"]["config"]


def check_same_run(run: Path, config: dict[str, Any], task: str, compressor: str, seed: int, epochs: int, demos: int) -> None:
    """Refuse to resume or reuse a run folder trained with other settings than the ones asked
    (``epochs``, ``demos``: resolved, see ``asked_training``)."""
    overrides = dict(o.split("=", 1) for o in COMPRESSORS[compressor])
    expected = {
        "conf": (config["experiment"], task),
        "compressor": (config["compressor"]["name"], overrides["compressor"]),
        "seed": (config["seed"], seed),
        "data.episodes": (config["data"]["episodes"], demos),
        "trainer.max_epochs": (config["trainer"]["max_epochs"], epochs),
    }
    for key, value in overrides.items():  # compressor.k, compressor.init: as the run resolved them
        if key.startswith("compressor."):
            expected[key] = (config["compressor"].get(key.split(".", 1)[1]), yaml.safe_load(value))
    different = [f"{key} {found} (asked {asked})" for key, (found, asked) in expected.items() if found != asked]
    if different:
        sys.exit(f"{relative(run)} holds a run with other settings: {', '.join(different)}; pass another --out-dir or delete it")


def train(run: Path, task: str, compressor: str, seed: int, epochs: int | None, demos: int | None) -> None:
    """Train (or resume, or skip) the run so that last.ckpt holds the task's epochs;
    ``epochs``/``demos``: None = the task config's own (no override passed to train.py)."""
    asked_epochs, asked_demos = asked_training(task, epochs, demos)
    state = checkpoint_state(run)
    if state is not None:
        check_same_run(run, state[1], task, compressor, seed, asked_epochs, asked_demos)
        if state[0] >= asked_epochs:
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
            *([f"data.episodes={demos}"] if demos else []),
            *([f"trainer.max_epochs={epochs}"] if epochs else []),
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
    if trained is None or trained[0] < asked_epochs:
        held = 0 if trained is None else trained[0]
        sys.exit(
            f"{relative(run)}: last.ckpt holds {held} of the {asked_epochs} epochs asked after training; "
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


def evaluated(summary_path: Path, episodes_per_task: int, conditions: list[str]) -> bool:
    """Whether summary.json already covers ``conditions`` with ``episodes_per_task`` each."""
    if not summary_path.exists():
        return False
    summary = json.loads(summary_path.read_text())
    found = {row["perturbation"] for row in summary["conditions"]}
    return summary["episodes_per_condition"] == episodes_per_task and set(conditions) <= found


def evaluate(run: Path, episodes_per_task: int, ood: list[str], video_episodes: int, max_steps: int) -> None:
    """Evaluate last.ckpt clean and under ``ood``, ``episodes_per_task`` episodes per condition
    and task (evaluate.py's eval.episodes; it resumes a partial evaluation); ``max_steps`` > 0
    caps episodes (eval.max_steps), 0 keeps the task's own limit."""
    epochs_trained, _ = checkpoint_state(run)
    out = eval_dir(run, epochs_trained)
    if evaluated(out / "summary.json", episodes_per_task, ["clean", *ood]):
        print(f"evaluated: {relative(out / 'summary.json')}")
        return
    started = time.time()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            "--ckpt",
            str(last_checkpoint(run)),
            "--episodes",
            str(episodes_per_task),
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


def run_row(out_dir: Path, task: str, compressor: str, seed: int, asked: dict[str, Any]) -> dict[str, Any]:
    """One run's figures from its folder; ``status`` "done" once its last.ckpt has been
    evaluated (clean at least). ``asked``: its task's settings (``task_settings``)."""
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
    check_same_run(run, config, task, compressor, seed, asked["epochs"], asked["demos"])
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
    eval_settings = json.loads((summary_path.parent / "settings.json").read_text())
    minutes, curves = training_events(run)
    curve = curves["val/action_l1"]
    timings = json.loads((summary_path.parent / "timing.json").read_text())
    row.update(
        {
            "status": "done",
            "env": summary["env"],
            "env_tasks": len({c["task"] for c in summary["conditions"]} - {ALL_TASKS}),
            "epochs": epochs_trained,
            "demos": config["data"]["episodes"],
            "episodes": clean["episodes"],
            "episodes_per_task": summary["episodes_per_condition"],
            "ood": [name for name in by_condition if name != "clean"],
            "episode_limit": eval_settings["max_steps"],
            "weights_sha256": summary["weights_sha256"],
            "eval_dir": relative(summary_path.parent),
            "train_minutes": minutes,
            "eval_minutes": None if eval_seconds is None else round(eval_seconds / 60, 3),
            "val_action_l1": curve,
            "tokens_per_image": clean["tokens_per_image"],
            "tokens_min": clean.get("tokens_min"),
            "tokens_max": clean.get("tokens_max"),
            "policy_gflops": clean.get("policy_gflops"),
            "versions": summary["versions"],
            "machine": record.get("machine"),
            "success": {
                name: {
                    key: stats[key]
                    for key in ("severity", "successes", "episodes", "success_rate", "ci95_low", "ci95_high", "errors")
                    if key in stats
                }
                for name, stats in by_condition.items()
            },
            "points": points(by_condition, timings),
        }
    )
    return row


def points(by_condition: dict[str, dict[str, Any]], timings: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per condition: where the sampled points landed (timing.json's ``TRACKING`` distances
    of the condition's row, image widths, first camera), for a uniform grid of as many points
    too; conditions whose env reports no object poses or whose compressor has no points are left out."""
    found = {}
    for name, row in by_condition.items():
        stats = timings.get(timing_key(row["task"], row["perturbation"], row["severity"]), {})
        distances = {key: stats[key] for key in TRACKING if stats.get(key) is not None}
        if distances:
            found[name] = distances
    return found


def refusal(row: dict[str, Any], asked: dict[str, Any]) -> str | None:
    """Why a finished run is not reported with its task (None: it is): a last.ckpt short of
    the task's epochs, or other epochs, demos, episodes or OOD conditions than the task's."""
    if row["epochs"] < asked["epochs"]:
        return f"last.ckpt holds {row['epochs']} of {asked['epochs']} epochs"
    different = [
        f"{key} {row[key]} (asked {asked[key]})"
        for key in COMPARED
        if (set(row[key]) != set(asked[key]) if key == "ood" else row[key] != asked[key])
    ]
    return f"other settings: {', '.join(different)}" if different else None


def refuse(row: dict[str, Any], asked: dict[str, Any]) -> dict[str, Any]:
    """``row``, or, when its settings are not its task's, a "refused" row without its figures
    (said in one line on stderr): such a run is never reported."""
    reason = refusal(row, asked) if row["status"] == "done" else None
    if reason is None:
        return row
    print(f"refused: {row['run_dir']}: {reason}, not reported (run it with its task's settings)", file=sys.stderr)
    kept = {key: row[key] for key in ("task", "compressor", "seed", "overrides", "run_dir")}
    return {**kept, "status": "refused", "epochs": row["epochs"], "reason": reason}


def save_run(path: Path, row: dict[str, Any]) -> None:
    """Write ``row`` as the run's JSON when it differs from the one there; print its ``git add`` line."""
    if path.exists() and json.loads(path.read_text()) == row:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(row, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {relative(path)}; commit it: git add {relative(path)}")


def sync_run(args: argparse.Namespace, task: str, compressor: str, seed: int, asked: dict[str, Any]) -> dict[str, Any]:
    """The run's row: from its folder when that holds an evaluation with its task's settings
    (saved as the run's JSON), else its committed JSON, else what the folder holds ("not run",
    or a run ``refuse`` will refuse)."""
    row = run_row(args.out_dir, task, compressor, seed, asked)
    path = run_json(args.results_dir, task, compressor, seed)
    if row["status"] == "done" and refusal(row, asked) is None:
        save_run(path, row)
    elif path.exists():
        return json.loads(path.read_text())
    return row


def landed_run(path: Path, asked: dict[str, Any]) -> bool:
    """Whether ``path`` holds a finished run with its task's settings (``asked``): on a clone
    without the run folder it is not trained or evaluated again."""
    if not path.exists():
        return False
    row = json.loads(path.read_text())
    return row["status"] == "done" and refusal(row, asked) is None


def landed(results_dir: Path, skip: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per task with JSONs under ``<results-dir>/quality/`` and not in ``skip``: its runs' rows,
    in ``COMPRESSORS`` order, then by seed."""
    found: dict[str, list[dict[str, Any]]] = {}
    for folder in sorted(p for p in (results_dir / RUN_RESULTS).glob("*") if p.is_dir() and p.name not in skip):
        rows = [json.loads(path.read_text()) for path in folder.glob("*_seed*.json")]
        unknown = sorted({r["compressor"] for r in rows} - set(COMPRESSORS))
        if unknown:
            sys.exit(f"{relative(folder)}: unknown compressor {unknown[0]}; valid: {', '.join(COMPRESSORS)}")
        found[folder.name] = sorted(rows, key=lambda r: (list(COMPRESSORS).index(r["compressor"]), r["seed"]))
    return found


def mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


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


def separation(task: str, entries: list[dict[str, Any]], conditions: list[str]) -> str | None:
    """One sentence naming the compressors whose 95% interval lies wholly below or above that
    of the task's first reported compressor, per condition (None with fewer than two reported)."""
    reported = [e for e in entries if e["runs"]]
    if len(reported) < 2:
        return None
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
    return f"{task}: 95% intervals apart from {reference['compressor']}'s ({'; '.join(parts)})."


def convergence(task: str, asked: dict[str, Any], rows: list[dict[str, Any]], entries: list[dict[str, Any]]) -> str:
    """One sentence: the epochs every run of ``task`` trained, the change of each compressor's
    validation action L1 over the last quarter of them (mean over seeds; falling by less than
    ``CONVERGED``: converged) and the best compressor by clean success."""
    epochs = asked["epochs"]
    window = max(1, epochs // 4)
    done = [r for r in rows if r["status"] == "done"]
    if not done:
        return f"{task}: every run trains {epochs} epochs; no run has finished yet."
    changes, converged, missing = [], [], []
    for compressor in dict.fromkeys(r["compressor"] for r in done):
        curves = [r["val_action_l1"] for r in done if r["compressor"] == compressor and r.get("val_action_l1")]
        if not curves or min(len(c) for c in curves) <= window:
            missing.append(compressor)
            continue
        change = mean([curve[-1] / curve[-1 - window] - 1 for curve in curves])
        changes.append(f"{compressor} {change:+.1%}")
        converged += [compressor] if change > -CONVERGED else []
    best = max((e for e in entries if "clean" in e["success"]), key=lambda e: e["success"]["clean"]["rate"])
    return (
        f"{task}: every run trained {epochs} epochs; validation action L1 change from epoch {epochs - window} to "
        f"{epochs} (the last quarter, mean over seeds): {', '.join(changes) or '-'}"
        + (f" (no curve of {window + 1}+ epochs recorded: {', '.join(missing)})" if missing else "")
        + f"; converged (falling by less than {CONVERGED:.0%} there): {', '.join(converged) or 'none'}; "
        f"best by clean success: {best['compressor']} ({success_cell(best['success']['clean'])})."
    )


COLUMNS = ["task", "compressor", "seeds", "visual tokens/image", "GFLOPs/call", "train min", "eval min"]


def task_section(task: str, asked: dict[str, Any], rows: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[str]:
    """quality.md's lines for one task: its settings, the learning-curve sentence, the table
    and the separation sentence."""
    done = [r for r in rows if r["status"] == "done"]
    suite = asked["env_tasks"] > 1
    severities = [r["success"][c]["severity"] for r in done for c in asked["ood"] if c in r["success"]]
    limits = [r["episode_limit"] for r in done if r.get("episode_limit")]
    settings = (
        f"**{task}** ({asked['env']}" + (f", a suite of {asked['env_tasks']} tasks" if suite else "") + "): "
        f"every run {asked['epochs']} epochs on {asked['demos']} demos{' per task' if suite else ''}, "
        f"{asked['episodes']} online episodes per condition"
        + (f" ({asked['episodes_per_task']} per task, pooled over the {asked['env_tasks']} tasks)" if suite else "")
        + (f", OOD severity {distinct(severities)}" if severities else "")
        + (f", episodes limited to {distinct(limits)} steps" if limits else "")
        + f"; per run: train {number(mean([r['train_minutes'] for r in done]), '.1f')} min, "
        f"eval {number(mean([r['eval_minutes'] for r in done]), '.1f')} min on average."
    )
    conditions = ["clean", *asked["ood"]]
    columns = [*COLUMNS, *(f"success {c}" for c in conditions), "errors"]
    lines = [
        settings,
        convergence(task, asked, rows, entries),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for e in entries:
        if not e["runs"]:
            blanks = " | ".join(["-"] * (len(columns) - 4))
            lines.append(f"| {e['task']} | {e['compressor']} | 0/{e['seeds']} | {e['note']} | {blanks} |")
            continue
        cells = [
            e["task"],
            e["compressor"],
            f"{e['runs']}/{e['seeds']}",
            number(e["tokens_per_image"], "g"),
            number(e["policy_gflops"], ".3f"),
            number(e["train_minutes"], ".1f"),
            number(e["eval_minutes"], ".1f"),
            *(success_cell(e["success"].get(c)) for c in conditions),
            number(e["errors"], "d"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    separated = separation(task, entries, conditions)
    return lines + ([""] + [separated] if separated else [])


def markdown(tasks: dict[str, dict[str, Any]], rows: list[dict[str, Any]], entries: list[dict[str, Any]]) -> str:
    """quality.md: one paragraph of provenance, then each task's section."""
    done = [r for r in rows if r["status"] == "done"]
    versions = [r["versions"] for r in done] or [package_versions()]
    lines = [
        f"{distinct([r['machine'] or machine() for r in done] or [machine()])}; "
        + "; ".join(f"{p} {distinct([v.get(p) for v in versions])}" for p in ("torch", "mujoco", "robosuite"))
        + ". Each task's runs train alike (its settings in its first line), last.ckpt (EMA weights); columns: mean over "
        "seeds. Success: successes/episodes = rate [Wilson 95% CI]; over several seeds, episodes pooled and the per-seed "
        'range. Errors: episodes ended by an env or worker error, counted as failures ("-": not recorded). Validation '
        "action L1: mean |predicted - demo| of the action chunk on the validation split after each epoch."
    ]
    for task, asked in tasks.items():
        mine = [r for r in rows if r["task"] == task]
        lines += ["", *task_section(task, asked, mine, [e for e in entries if e["task"] == task])]
    return "\n".join(lines) + "\n"


def report(tasks: dict[str, dict[str, Any]], rows: list[dict[str, Any]], results_dir: Path) -> str:
    """Refuse runs with other settings than their task's, aggregate, write quality.{json,md} and
    the two plots; returns the md. ``tasks``: task -> settings, in report order; ``rows``: every
    run's row (``sync_run``), grouped by task and compressor in table order."""
    rows = [refuse(row, tasks[row["task"]]) for row in rows]
    entries = []
    for task, asked in tasks.items():
        for compressor in dict.fromkeys(r["compressor"] for r in rows if r["task"] == task):
            mine = [r for r in rows if (r["task"], r["compressor"]) == (task, compressor)]
            entries.append(aggregate(mine, ["clean", *asked["ood"]]))
    results_dir.mkdir(parents=True, exist_ok=True)
    table = markdown(tasks, rows, entries)
    (results_dir / "quality.md").write_text(table)
    names = list(tasks)
    conditions = list(dict.fromkeys(c for asked in tasks.values() for c in ["clean", *asked["ood"]]))
    plot_tokens(entries, names, results_dir / "quality_tokens.png")
    plot_ood(entries, names, conditions, results_dir / "quality_ood.png")
    results = {"tasks": tasks, "runs": rows, "table": entries}
    (results_dir / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    return table


def write_outputs(args: argparse.Namespace, planned: dict[str, dict[str, Any]]) -> str:
    """Every planned run's row (its JSON saved when its folder holds a finished evaluation),
    then the rows of the other tasks with JSONs; the report from them. Returns the md."""
    rows = [
        sync_run(args, task, compressor, seed, asked)
        for task, asked in planned.items()
        for compressor in args.compressors
        for seed in range(args.seeds)
    ]
    tasks = dict(planned)
    for task, others in landed(args.results_dir, list(planned)).items():
        tasks[task] = {key: others[0][key] for key in SETTINGS}
        rows += others
    return report(tasks, rows, args.results_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tasks",
        type=csv_list,
        default=csv_list("tabletop_spatial,robosuite_pickplacecan"),
        help="comma list of experiment confs (conf/<name>.yaml)",
    )
    parser.add_argument(
        "--compressors", type=csv_list, default=list(COMPRESSORS), help=f"comma subset of {', '.join(COMPRESSORS)}"
    )
    parser.add_argument("--seeds", type=positive, default=2, help="training seeds per compressor (seed=0..N-1)")
    parser.add_argument("--epochs", type=positive, help="training epochs (default: each task config's trainer.max_epochs)")
    parser.add_argument(
        "--demos", type=positive, help="demonstrations (per task of a suite) to train on (default: the config's data.episodes)"
    )
    parser.add_argument(
        "--episodes", type=positive, default=50, help="online episodes per condition, over all the tasks of a suite"
    )
    parser.add_argument(
        "--ood",
        type=csv_list,
        default=csv_list("lighting,distractors,camera"),
        help="comma list of perturbations ('' = clean only)",
    )
    parser.add_argument("--max-steps", type=int, default=0, help="episode step limit in evaluation (0 = the task's own)")
    parser.add_argument("--video-episodes", type=int, default=0, help="MP4s per condition")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the per-run JSONs")
    args = parser.parse_args()
    unknown = [c for c in args.compressors if c not in COMPRESSORS]
    if unknown:
        parser.error(f"unknown compressor {', '.join(unknown)}; valid: {', '.join(COMPRESSORS)}")
    missing = [t for t in args.tasks if not (ROOT / "conf" / f"{t}.yaml").exists()]
    if missing:
        parser.error(
            f"no conf/{missing[0]}.yaml; valid tasks: {', '.join(sorted(p.stem for p in (ROOT / 'conf').glob('*.yaml')))}"
        )
    args.out_dir, args.results_dir = Path(os.path.abspath(args.out_dir)), Path(os.path.abspath(args.results_dir))
    planned = {task: task_settings(task, args.epochs, args.demos, args.episodes, args.ood) for task in args.tasks}
    if not args.report_only:
        from rich.console import Console

        console = Console(stderr=True)
        # seed-major: every compressor's first seed lands before any second seed, so a benchmark
        # stopped part way has the whole comparison once rather than a few compressors twice
        plan = [(task, compressor, seed) for task in args.tasks for seed in range(args.seeds) for compressor in args.compressors]
        for index, (task, compressor, seed) in enumerate(plan, 1):
            run = run_dir(args.out_dir, task, compressor, seed)
            label = f"[{index}/{len(plan)}] {task} {compressor} seed{seed}"
            landed_json = run_json(args.results_dir, task, compressor, seed)
            if not run.exists() and landed_run(landed_json, planned[task]):
                console.print(f"{label}: skipped, landed as {relative(landed_json)} (no run folder here)", soft_wrap=True)
                continue
            console.rule(f"{label}: training")
            train(run, task, compressor, seed, args.epochs, args.demos)
            console.rule(f"{label}: evaluating")
            evaluate(run, planned[task]["episodes_per_task"], args.ood, args.video_episodes, args.max_steps)
            write_outputs(args, planned)
            console.rule(f"{label}: done")
    print(write_outputs(args, planned))


if __name__ == "__main__":
    main()
