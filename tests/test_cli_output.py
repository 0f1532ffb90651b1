"""What train.py and evaluate.py print: the config in a few lines, a results table readable at 80
columns and in a log file, and at the end the paths written and the commands to look at them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from gridslab.config import load_config
from gridslab.config.load import config_summary
from gridslab.eval.summary import render_table, summarize, timing
from tests.helpers import ROOT, TINY, run_python

WIDE_HEADERS = ("perturbation", "success (95% CI)", "drop vs clean", "tokens/image (min-max)", "GFLOPs/call", "errors")
NARROW_HEADERS = ("perturbation", "success", "95% CI", "drop", "errors", "steps", "ms/step", "tokens", "GFLOPs")


def _suite_records() -> list[dict]:
    """Two suite tasks, clean and a combined perturbation, 3 episodes each."""
    records = []
    for task in ("tabletop_spatial/3", "tabletop_spatial/10"):
        for perturbation, severity in (("clean", 0.0), ("lighting+distractors", 0.5)):
            for seed in range(3):
                records.append(
                    {
                        "task": task,
                        "perturbation": perturbation,
                        "severity": severity,
                        "seed": seed,
                        "success": seed > 0,
                        "steps": 40 + seed,
                        "wall_s": 1.0,
                        "policy_ms_per_step": 2.5,
                        "tokens_per_image": 4.0,
                        "error": "",
                    }
                )
    return records


def _printed(width: int, terminal: bool) -> str:
    records = _suite_records()
    console = Console(width=width, record=True, force_terminal=terminal, color_system=None)
    console.print(render_table(summarize(records), timing(records), "tabletop_spatial: last.ckpt"))
    return console.export_text()


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "log-file"])
def test_table_fits_80_columns_without_shortened_headers(terminal):
    text = _printed(80, terminal)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for header in NARROW_HEADERS:
        assert re.search(rf"[│┃|] +{re.escape(header)} +[│┃|]", text), header
    assert ("| task " in text) is not terminal and ("┃ task " in text) is terminal  # markdown pipes in a log file
    task_column = [line.split("|" if not terminal else "│")[1].strip() for line in text.splitlines() if "clean" in line]
    assert task_column == ["all tasks", "3", "10"] * 2  # two tables; the shared "tabletop_spatial/" is in the title
    assert "tasks: tabletop_spatial/" in text.splitlines()[0]
    assert "lighting +" in text and "distractors" in text  # a combined perturbation wraps at its "+"


def test_wide_console_gets_one_table():
    text = _printed(200, terminal=True)
    (header,) = [line for line in text.splitlines() if "perturbation" in line]
    assert all(name in header for name in WIDE_HEADERS) and "…" not in text


def test_config_prints_in_a_few_lines(tmp_path):
    cfg = load_config(["compressor.k=8", "budget=adaptive", f"output_dir={tmp_path}"])
    lines = config_summary(cfg, tmp_path, "train")
    assert len(lines) == 6 and all(len(line) <= 100 for line in lines[:-1])  # the last one holds a path
    assert lines[0] == "config   robosuite_lift"
    assert lines[1].startswith("env      robosuite/Lift: agentview, robot0_eye_in_hand at 84 px")
    assert "compressor grids K=8" in lines[3] and "budget adaptive" in lines[3]
    assert lines[-1] == f"output   {tmp_path} (full config: {tmp_path / 'config.yaml'})"
    evaluation = config_summary(cfg, tmp_path / "eval" / "last", "eval")
    assert evaluation[4].startswith("eval     50 episodes per condition (clean; severity 0.5)")


def _paths_in(text: str) -> list[Path]:
    """Every absolute path printed in ``text`` (paths end at a space, comma, colon or bracket)."""
    return [Path(match.rstrip("/")) for match in re.findall(r"(/[^\s,:()]+)", text)]


def test_train_and_evaluate_end_with_what_they_wrote(tmp_path, lift_demos):
    run = tmp_path / "run"
    train = [*TINY, f"output_dir={run}", f"data.paths=[{lift_demos}]", "data.episodes=3", "trainer.max_epochs=1"]
    trained = run_python(["train.py", *train], cwd=ROOT)
    assert trained.returncode == 0, trained.stderr[-2000:]
    out = trained.stdout.splitlines()
    assert out[0] == "config   robosuite_lift" and out[5].startswith(f"output   {run} ")
    end = out[out.index(f"wrote {run}/") :]
    assert end[-2:] == [f"  tensorboard --logdir {run}", f"  python evaluate.py --ckpt {run / 'checkpoints' / 'last.ckpt'}"]
    assert "last.ckpt" in next(line for line in end if "checkpoints" in line)
    assert all(path.exists() for path in _paths_in("\n".join(end))), end

    evaluate = [
        "evaluate.py",
        f"output_dir={run}",
        "--episodes",
        "1",
        "eval.max_steps=5",
        "eval.workers=1",
        "--video-episodes",
        "1",
    ]
    evaluated = run_python(evaluate, cwd=ROOT, env={"COLUMNS": "80"})
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    out = evaluated.stdout.splitlines()
    (eval_dir,) = (run / "eval").glob("last*")  # named after the checkpoint and eval.max_steps=5
    assert out[0] == "config   robosuite_lift" and out[4].startswith("eval     1 episode per condition (clean")
    table = [line for line in out if line.startswith("|")]
    assert len(table) == 6 and "…" not in evaluated.stdout and max(len(line) for line in table) <= 80  # markdown: a pipe
    end = out[next(i for i, line in enumerate(out) if line.startswith(f"wrote {eval_dir}/: ")) :]
    listed = end[0].split(": ", 1)[1]
    for name in ("config.yaml", "results.jsonl", "summary.csv", "summary.json", "summary.md", "tb/", "videos/ (1 MP4)"):
        assert name in listed, listed
    assert end[-1] == f"  tensorboard --logdir {eval_dir}"
    assert all(path.exists() for path in _paths_in("\n".join(end))), end
    assert load_config(base=yaml.safe_load((eval_dir / "config.yaml").read_text())).eval.episodes == 1
