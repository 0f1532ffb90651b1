"""benchmarks/quality.py: settings per task (a suite's episodes split over its tasks), per-run
result JSONs written from run folders laid out as train.py and evaluate.py write them, the
report rebuilt from those JSONs alone, refusals, and repository-relative paths."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
import torch

from gridslab.config import load_config, to_plain
from gridslab.eval.runner import check_settings
from gridslab.eval.summary import summarize, timing, write_summary
from tests.helpers import ROOT, load_benchmark

quality = load_benchmark("quality")


def _records(tasks: list[str], conditions: list[str], episodes: int, successes: int) -> list[dict]:
    """Episode records as the rollout writes them: per task and condition, ``successes`` of ``episodes`` succeed."""
    return [
        {
            "task": task,
            "env": task,
            "perturbation": condition,
            "severity": 0.0 if condition == "clean" else 0.5,
            "seed": 100000 + seed,
            "success": seed < successes,
            "steps": 40,
            "wall_s": 1.0,
            "policy_ms_per_step": 2.0,
            "tokens_per_image": 4.0,
            "policy_gflops": 0.09,
            "instruction": "do it",
            "error": "",
            "points_to_object": 0.05 + 0.1 * (condition != "clean"),
            "object_to_points": 0.04,
            "grid_points_to_object": 0.3,
            "grid_object_to_points": 0.25,
        }
        for task in tasks
        for condition in conditions
        for seed in range(episodes)
    ]


def _build_run(run, *, epochs=4, max_epochs=4, curve=(0.4, 0.3, 0.2, 0.198), successes=3, episodes=4, task="robosuite_lift"):
    """A grids_k4 seed-0 run folder as train.py + evaluate.py + quality.py leave it: last.ckpt
    (epoch index and resolved config), TensorBoard events (train/loss, val/loss, val/action_l1
    per epoch), and a clean + lighting evaluation of ``episodes`` per task (``successes`` of them
    succeed) in eval/last_epoch<epochs>."""
    config = load_config([f"conf={task}", *quality.COMPRESSORS["grids_k4"], "seed=0", f"trainer.max_epochs={max_epochs}"])
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epochs - 1, "hyper_parameters": {"config": to_plain(config)}}, run / "checkpoints" / "last.ckpt")
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run / "tb"))
    for epoch, value in enumerate(curve):
        step = 10 * (epoch + 1)
        writer.add_scalar("train/loss", 1.0 / (epoch + 1), step)
        writer.add_scalar("val/loss", 2 * value, step)
        writer.add_scalar("val/action_l1", value, step)
    writer.close()
    out = quality.eval_dir(run, epochs)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, {"env": str(config.env.name), "max_steps": 300, "weights": "ab" * 32})
    records = _records(quality.expand(str(config.env.name)), ["clean", "lighting"], episodes, successes)
    meta = {
        "checkpoint_name": "last.ckpt",
        "weights_sha256": "ab" * 32,
        "env": str(config.env.name),
        "episodes_per_condition": episodes,
        "first_seed": 100000,
        "versions": {"torch": torch.__version__},
    }
    write_summary(out, summarize(records), meta, timing(records))
    quality.write_record(run, {"eval_seconds": {out.name: 90.0}})


def _report(monkeypatch, capsys, tmp_path, *args: str) -> tuple[str, str]:
    """Run ``quality.py --report-only`` on ``tmp_path/runs`` into ``tmp_path/results``; (stdout, stderr)."""
    argv = ["quality.py", "--report-only", "--out-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    monkeypatch.setattr(sys, "argv", [*argv, *args])
    quality.main()
    captured = capsys.readouterr()
    return captured.out, captured.err


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


LIFT = ("--tasks", "robosuite_lift", "--compressors", "grids_k4", "--seeds", "1", "--epochs", "4", "--ood", "lighting")


def test_every_compressor_trains_its_registered_compressor():
    assert "tokenlearner_k4" in quality.COMPRESSORS
    for overrides in quality.COMPRESSORS.values():
        asked = dict(o.split("=", 1) for o in overrides)
        cfg = load_config(["conf=robosuite_lift", *overrides])
        assert cfg.compressor.name == asked["compressor"]
        assert "compressor.k" not in asked or cfg.compressor.k == int(asked["compressor.k"])


def test_suite_episodes_are_split_over_its_tasks_and_its_pooled_row_reported(tmp_path, capsys):
    asked = quality.task_settings("tabletop_spatial", None, None, 50, ["lighting"])
    assert asked == {
        "env": "tabletop_spatial",
        "env_tasks": 10,
        "epochs": 20,  # the task config's trainer.max_epochs
        "demos": 50,  # and data.episodes (per task)
        "episodes": 50,
        "episodes_per_task": 5,
        "ood": ["lighting"],
    }
    with pytest.raises(
        SystemExit, match=r"--episodes 45: tabletop_spatial \(tabletop_spatial\) is a suite of 10 tasks .*valid: a multiple of 10"
    ):
        quality.task_settings("tabletop_spatial", None, None, 45, [])
    assert quality.task_settings("robosuite_lift", None, None, 45, [])["episodes_per_task"] == 45

    run = quality.run_dir(tmp_path, "tabletop_spatial", "grids_k4", 0)
    _build_run(run, epochs=20, max_epochs=20, curve=[0.5] * 20, successes=2, episodes=5, task="tabletop_spatial")
    quality.evaluate(run, asked["episodes_per_task"], ["lighting"], 0, 0)  # 5 per task: already evaluated, nothing run
    assert capsys.readouterr().out.startswith("evaluated: ")
    assert not quality.evaluated(quality.eval_dir(run, 20) / "summary.json", 50, ["clean", "lighting"])
    row = quality.run_row(tmp_path, "tabletop_spatial", "grids_k4", 0, asked)
    assert (row["env_tasks"], row["episodes_per_task"], row["episodes"]) == (10, 5, 50)
    assert row["success"]["clean"]["successes"] == 20 and row["success"]["lighting"]["episodes"] == 50  # all tasks pooled
    assert row["points"]["clean"] == {
        "points_to_object": 0.05,
        "object_to_points": 0.04,
        "grid_points_to_object": 0.3,
        "grid_object_to_points": 0.25,
    }
    assert row["points"]["lighting"]["points_to_object"] == pytest.approx(0.15)  # the pooled row's distances
    assert quality.refusal(row, asked) is None


def test_run_json_round_trip_rebuilds_the_report_without_run_folders(tmp_path, monkeypatch, capsys):
    run = quality.run_dir(tmp_path / "runs", "robosuite_lift", "grids_k4", 0)
    _build_run(run)
    out, _ = _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    path = quality.run_json(tmp_path / "results", "robosuite_lift", "grids_k4", 0)
    assert f"git add {os.path.relpath(path, ROOT)}" in out
    row = json.loads(path.read_text())
    assert row["val_action_l1"] == pytest.approx([0.4, 0.3, 0.2, 0.198]) and row["epochs"] == 4 and row["demos"] == 100
    assert row["run_dir"] == os.path.relpath(run, ROOT) and (ROOT / row["eval_dir"]).resolve() == quality.eval_dir(run, 4)
    table = (tmp_path / "results" / "quality.md").read_text()
    line = next(line for line in table.splitlines() if line.startswith("| robosuite_lift | grids_k4 |"))
    assert line.startswith("| robosuite_lift | grids_k4 | 1/1 | 4 | 0.090 |") and "3/4 = 75%" in line
    assert line.endswith("| 0 |")  # errors: none in either condition
    assert "every run trained 4 epochs; validation action L1 change from epoch 3 to 4" in table
    assert "grids_k4 -1.0%; converged (falling by less than 5% there): grids_k4" in table
    results = json.loads((tmp_path / "results" / "quality.json").read_text())
    for written in [row, results]:  # paths relative to the repository, never absolute
        assert not [s for s in _strings(written) if os.path.isabs(s)]

    shutil.rmtree(tmp_path / "runs")
    out, _ = _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    assert "git add" not in out
    assert (tmp_path / "results" / "quality.md").read_text() == table
    assert json.loads((tmp_path / "results" / "quality.json").read_text()) == results

    _build_run(run, successes=1)  # another evaluation
    out, _ = _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    assert f"git add {os.path.relpath(path, ROOT)}" in out
    assert json.loads(path.read_text())["success"]["clean"]["successes"] == 1


def test_tasks_keep_their_own_settings(tmp_path, monkeypatch, capsys):
    run = quality.run_dir(tmp_path / "runs", "robosuite_lift", "grids_k4", 0)
    _build_run(run, curve=[0.4, 0.3, 0.2, 0.1])
    _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    shutil.rmtree(tmp_path / "runs")
    path = quality.run_json(tmp_path / "results", "robosuite_lift", "grids_k4", 0)
    landed = json.loads(path.read_text())
    for stats in landed["success"].values():  # as evaluations older than the errors count wrote them
        del stats["errors"]
    path.write_text(json.dumps(landed))
    out, _ = _report(monkeypatch, capsys, tmp_path, "--tasks", "tabletop_spatial", "--compressors", "grids_k4")
    assert out.index("**tabletop_spatial**") < out.index("**robosuite_lift**")  # planned first, then landed results
    assert "every run 20 epochs on 50 demos per task, 50 online episodes per condition (5 per task" in out
    assert "| tabletop_spatial | grids_k4 | 0/2 | not run |" in out
    assert "**robosuite_lift** (robosuite/Lift): every run 4 epochs on 100 demos, 4 online episodes per condition" in out
    lift = next(line for line in out.splitlines() if line.startswith("| robosuite_lift | grids_k4 |"))
    assert lift.startswith("| robosuite_lift | grids_k4 | 1/1 | 4 |") and lift.endswith("| - |") and "refused" not in out


def test_short_or_other_runs_are_refused(tmp_path, monkeypatch, capsys):
    run = quality.run_dir(tmp_path / "runs", "robosuite_lift", "grids_k4", 0)
    _build_run(run, epochs=3, curve=[0.4, 0.3, 0.2])  # killed after 3 of 4 epochs
    out, err = _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    assert "| robosuite_lift | grids_k4 | 0/1 | refused: last.ckpt holds 3 of 4 epochs |" in out and "3/4 =" not in out
    assert f"refused: {os.path.relpath(run, ROOT)}: last.ckpt holds 3 of 4 epochs" in err
    assert not (tmp_path / "results" / "quality").exists()  # no JSON for a short run

    shutil.rmtree(run)
    _build_run(run, curve=[0.4, 0.3, 0.2, 0.1])
    _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    out, err = _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "8")  # its JSON holds 4 episodes
    assert "refused: other settings: episodes 4 (asked 8)" in out and "refused:" in err
    with pytest.raises(SystemExit, match=r"holds a run with other settings: trainer.max_epochs 4 \(asked 40\)"):
        _report(monkeypatch, capsys, tmp_path, *LIFT[:-4], "--ood", "lighting", "--episodes", "4")  # no --epochs: the conf's 40
    with pytest.raises(SystemExit, match=r"holds a run with other settings: data.episodes 100 \(asked 50\)"):
        _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4", "--demos", "50")


def test_landed_runs_are_not_trained_again_on_a_clone_without_their_folders(tmp_path, monkeypatch, capsys):
    run = quality.run_dir(tmp_path / "runs", "robosuite_lift", "grids_k4", 0)
    _build_run(run)
    _report(monkeypatch, capsys, tmp_path, *LIFT, "--episodes", "4")
    shutil.rmtree(tmp_path / "runs")
    started = []
    monkeypatch.setattr(quality, "train", lambda run, task, compressor, *rest: started.append(("train", compressor)))
    monkeypatch.setattr(quality, "evaluate", lambda run, *rest: started.append(("evaluate", run.name)))
    argv = ["quality.py", "--out-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"), *LIFT]
    monkeypatch.setattr(sys, "argv", [*argv, "--compressors", "grids_k4,topk_k4", "--episodes", "4"])
    quality.main()
    err = capsys.readouterr().err
    assert started == [("train", "topk_k4"), ("evaluate", "topk_k4_seed0")]
    assert "grids_k4 seed0: skipped, landed as " in err and "topk_k4 seed0: skipped" not in err

    started.clear()  # other settings than the landed run's: trained again
    monkeypatch.setattr(sys, "argv", [*argv, "--compressors", "grids_k4", "--episodes", "8"])
    quality.main()
    assert started == [("train", "grids_k4"), ("evaluate", "grids_k4_seed0")]
