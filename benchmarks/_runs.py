"""What the train-then-evaluate benchmarks share (benchmarks/heads.py, benchmarks/tower_depth.py):
one run trained with ``train.py`` (or finished from its last.ckpt), its learning curve read from
TensorBoard, its last.ckpt evaluated online with ``evaluate.py``, and the markdown of the results.
Imported as a sibling module (``from _runs import ...``): benchmarks/ is scripts, not a package.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# GridS's init in the benchmarks that compare other things with GridS (quality.py's GridS rows,
# heads.py, tower_depth.py, budgets.py): the paper's, the authors' random init, as every run they
# landed was trained (the default then). The framework's default is now the uniform grid
# (conf/compressor/grids.yaml); benchmarks/one_task.py measures both.
PAPER_INIT = "compressor.init=random"


def relative(path: Path) -> str:
    """``path`` relative to the repository (lexically: runs/ may be a link elsewhere)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def code_version() -> str:
    """``git describe``-like commit of this checkout, ``+dirty`` when tracked files differ."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def checkpoint_epochs(path: Path) -> int:
    """Epochs completed in a Lightning checkpoint (0 when missing)."""
    if not path.exists():
        return 0
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1


def train(out: Path, overrides: list[str], epochs: int) -> Path:
    """Train ``python train.py *overrides`` into ``out`` (repository-relative or absolute) for
    ``epochs`` epochs, or finish it from its last.ckpt; returns the run directory. A run already
    at ``epochs`` is kept; one past it is refused (a longer schedule is not a shorter run)."""
    last = ROOT / out / "checkpoints" / "last.ckpt"
    done = checkpoint_epochs(last)
    if done < epochs:
        resume = ["resume=auto"] if done else []
        overrides = [*overrides, f"output_dir={out}"]
        overrides += [f"trainer.max_epochs={epochs}", "trainer.progress_bar=false", *resume]
        subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], check=True, cwd=ROOT)
    elif done > epochs:
        raise SystemExit(f"{out} holds {done} epochs, more than --epochs {epochs}; remove it or pass --epochs {done}")
    return ROOT / out


def training_events(run: Path, tags: tuple[str, ...] = ("val/action_l1",)) -> tuple[float | None, dict[str, list[float]]]:
    """(training minutes, per tag its values in step order) from the run's TensorBoard events.

    Minutes: first to last scalar of each events file, summed (one file per training process,
    so the pause before a resume is left out). Per tag: its last value logged at each step over
    all files (a resumed run re-logs no step twice), rounded to 6 digits; [] when never logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    total, found = 0.0, False
    curves: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for events_file in sorted((run / "tb").glob("events.out.tfevents.*")):
        events = EventAccumulator(str(events_file), size_guidance={"scalars": 0})
        events.Reload()
        logged = events.Tags()["scalars"]
        times = [event.wall_time for tag in logged for event in events.Scalars(tag)]
        if times:
            total, found = total + max(times) - min(times), True
        for tag in (t for t in tags if t in logged):
            curves[tag].update({event.step: round(float(event.value), 6) for event in events.Scalars(tag)})
    values = {tag: [curve[step] for step in sorted(curve)] for tag, curve in curves.items()}
    return (round(total / 60, 3) if found else None), values


def learning_curve(run: Path) -> dict:
    """Per validation epoch: ``val/action_l1`` (env units) and ``val/loss``; training minutes."""
    minutes, curves = training_events(run, ("val/action_l1", "val/loss"))
    return {"val_action_l1": curves["val/action_l1"], "val_loss": curves["val/loss"], "train_minutes": minutes}


def evaluate(run: Path, episodes: int) -> dict:
    """Online clean evaluation of last.ckpt (resumes); success, errors, latency, GFLOPs."""
    started = time.perf_counter()
    command = [sys.executable, str(ROOT / "evaluate.py"), f"output_dir={relative(run)}", "--episodes", str(episodes)]
    subprocess.run([*command, "--video-episodes", "0"], check=True, cwd=ROOT)
    eval_dir = run / "eval" / "last"
    row = json.loads((eval_dir / "summary.json").read_text())["conditions"][0]
    timing = next(iter(json.loads((eval_dir / "timing.json").read_text()).values()))
    return {
        "eval_dir": relative(eval_dir),
        "episodes": row["episodes"],
        "successes": row["successes"],
        "errors": row.get("errors"),
        "policy_gflops": row.get("policy_gflops"),
        "policy_ms_per_step": round(timing["policy_ms_per_step"], 3),
        "eval_minutes": round((time.perf_counter() - started) / 60, 2),
    }


def write_result(path: Path, labels: dict, overrides: list[str], run: Path, model: dict, episodes: int) -> Path:
    """The JSON of a finished run at ``path``: ``labels`` (what the study varies), the run's
    overrides, directory and code version, ``model`` (its size and cost), its learning curve and
    its online clean evaluation over ``episodes`` episodes (``evaluate``)."""
    result = {
        **labels,
        "overrides": " ".join(overrides),
        "run_dir": relative(run),
        "code": code_version(),
        **model,
        **learning_curve(run),
        **evaluate(run, episodes),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {relative(path)}")
    return path


def params_m(policy) -> float:
    """Parameters of a policy (``torch.nn.Module``), millions, 3 decimals."""
    return round(sum(p.numel() for p in policy.parameters()) / 1e6, 3)


def success_cell(successes: int, episodes: int) -> str:
    """``"18/50 = 36% [24%, 50%]"``: successes, rate and Wilson 95% interval."""
    from gridslab.eval.summary import wilson_interval

    low, high = wilson_interval(successes, episodes)
    return f"{successes}/{episodes} = {successes / episodes:.0%} [{low:.0%}, {high:.0%}]"


def publish(table: str, path: Path, block: str | None) -> None:
    """Write the markdown ``table`` to ``path`` and, with ``block``, into README.md between
    ``<!-- results:BLOCK -->`` and ``<!-- /results:BLOCK -->`` when README has those markers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table)
    if block is not None:
        readme = ROOT / "README.md"
        pattern = re.compile(rf"(<!-- results:{block} -->\n).*?(<!-- /results:{block} -->)", re.DOTALL)
        text = readme.read_text()
        if pattern.search(text):
            readme.write_text(pattern.sub(lambda m: m.group(1) + table + m.group(2), text))
            print(f"README: {block} <- {relative(path)}")
    print(table)
