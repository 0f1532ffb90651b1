"""Success tables: Wilson intervals, grouping, drop vs clean, deterministic files."""

from __future__ import annotations

import json

import pytest

from gridslab.eval.summary import summarize, timing, wilson_interval, write_summary
from tests.helpers import load_benchmark


def test_wilson_interval_known_values():
    low, high = wilson_interval(49, 50)
    assert low == pytest.approx(0.8950, abs=1e-3) and high == pytest.approx(0.9965, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _record(perturbation, seed, success, steps=50, severity=0.5):
    return {
        "task": "robosuite/Lift",
        "env": "robosuite/Lift",
        "perturbation": perturbation,
        "severity": severity,
        "seed": seed,
        "success": success,
        "steps": steps,
        "wall_s": 1.0 + seed,
        "policy_ms_per_step": 2.0,
        "tokens_per_image": 4.0,
        "instruction": "lift the red cube",
        "error": "",
    }


def test_summary_rows_and_drop_vs_clean(tmp_path):
    records = [_record("clean", s, s < 8, severity=0.0) for s in range(10)]
    records += [_record("lighting", s, s < 5) for s in range(10)]
    records.append({**_record("lighting", 99, False), "error": "RuntimeError: boom"})
    rows = summarize(records)
    assert [r["perturbation"] for r in rows] == ["clean", "lighting"]
    clean, lighting = rows
    assert clean["success_rate"] == 0.8 and clean["episodes"] == 10
    assert lighting["episodes"] == 11 and lighting["errors"] == 1
    assert lighting["drop_vs_clean"] == pytest.approx(0.8 - 5 / 11, abs=1e-4)
    assert clean["ci95_low"] < 0.8 < clean["ci95_high"]


def test_summary_files_are_byte_identical_for_the_same_records(tmp_path):
    records = [_record("clean", s, s % 3 != 0, severity=0.0) for s in range(12)]
    first, second = tmp_path / "a", tmp_path / "b"
    for out, order in ((first, records), (second, list(reversed(records)))):
        out.mkdir()
        write_summary(out, summarize(order), {"env": "robosuite/Lift"}, timing(order))
    assert (first / "summary.json").read_bytes() == (second / "summary.json").read_bytes()
    assert (first / "summary.csv").read_bytes() == (second / "summary.csv").read_bytes()
    assert json.loads((first / "summary.json").read_text())["conditions"][0]["successes"] == 8


def test_errors_column_in_every_table(tmp_path):
    from rich.console import Console

    from gridslab.eval.summary import markdown_table, render_table

    records = [_record("clean", s, True, severity=0.0) for s in range(3)]
    records += [{**_record("lighting", s, False), "error": "RuntimeError: boom" if s else ""} for s in range(3)]
    rows, timings = summarize(records), timing(records)
    assert [r["errors"] for r in rows] == [0, 2]
    write_summary(tmp_path, rows, {"env": "robosuite/Lift"}, timings)
    assert [r["errors"] for r in json.loads((tmp_path / "summary.json").read_text())["conditions"]] == [0, 2]
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv_lines[0].endswith(",errors") and csv_lines[2].endswith(",2")
    console = Console(width=250, record=True)
    console.print(render_table(rows, timings, "t"))
    rich_lines = console.export_text().splitlines()
    assert "errors" in next(line for line in rich_lines if "perturbation" in line)
    assert next(line for line in rich_lines if "lighting" in line).rstrip(" │|").endswith("2")
    markdown = markdown_table(rows, timings).splitlines()
    assert markdown[0].endswith("| errors |") and markdown[3].endswith("| 2 |")
    report = load_benchmark("report")
    readme_table = report.eval_table(
        {
            "summary": {
                "env": "robosuite/Lift",
                "checkpoint_name": "last.ckpt",
                "versions": {},
                "episodes_per_condition": 3,
                "first_seed": 0,
                "conditions": rows,
            },
            "timing": timings,
        }
    )
    assert readme_table.splitlines()[-1].endswith("| 2 |") and "| errors |" in readme_table


def test_quality_stops_when_training_ends_short(tmp_path, monkeypatch):
    quality = load_benchmark("quality")
    states = iter([None, (14, {})])  # no checkpoint before training, 14 epochs after it
    monkeypatch.setattr(quality, "checkpoint_state", lambda run: next(states))
    monkeypatch.setattr(quality.subprocess, "run", lambda *args, **kwargs: None)
    with pytest.raises(SystemExit, match="last.ckpt holds 14 of the 15 epochs asked after training"):
        quality.train(tmp_path, "robosuite_lift", "random_k4", 0, 15, 100)


def test_quality_refuses_a_run_trained_with_another_init(tmp_path):
    """quality.py's GridS is the paper's (``compressor.init=random``), the framework's default
    is uniform: a run folder whose resolved compressor.init differs is refused in one line,
    never resumed or reported as the paper's GridS."""
    from omegaconf import OmegaConf

    from gridslab.config import load_config

    quality = load_benchmark("quality")
    assert "compressor.init=random" in quality.COMPRESSORS["grids_k4"]

    def resolved(*overrides):
        config = load_config(["conf=robosuite_lift", "compressor=grids", "compressor.k=4", "seed=0", *overrides])
        return OmegaConf.to_container(config, resolve=True)

    epochs, demos = 15, 100
    trained = resolved("compressor.init=random", f"trainer.max_epochs={epochs}", f"data.episodes={demos}")
    quality.check_same_run(tmp_path, trained, "robosuite_lift", "grids_k4", 0, epochs, demos)  # the same run: accepted
    default = resolved(f"trainer.max_epochs={epochs}", f"data.episodes={demos}")  # init: the default, uniform
    with pytest.raises(SystemExit, match=r"other settings: compressor.init uniform \(asked random\)"):
        quality.check_same_run(tmp_path, default, "robosuite_lift", "grids_k4", 0, epochs, demos)


def test_result_files_hold_no_absolute_paths():
    from tests.helpers import ROOT

    quality = load_benchmark("quality")
    assert quality.relative(ROOT / "runs" / "quality") == "runs/quality"

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    for path in sorted((ROOT / "benchmarks" / "results").rglob("*.json")):  # every subfolder too
        absolute = [s for s in strings(json.loads(path.read_text())) if s.startswith("/") or str(ROOT) in s]
        assert not absolute, (path.name, absolute[:3])


def test_stored_evaluation_names_the_training_it_evaluates(tmp_path, monkeypatch):
    """report.py --eval keeps the checkpoint's demos and epochs (from the run folder's
    config.yaml) with the evaluation, and the README table's header states them."""
    from omegaconf import OmegaConf

    report = load_benchmark("report")
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    run = tmp_path / "run"
    eval_dir = run / "eval" / "last"
    eval_dir.mkdir(parents=True)
    records = [_record("clean", s, s < 2, severity=0.0) for s in range(3)]
    write_summary(eval_dir, summarize(records), {"env": "tabletop_spatial/0", "checkpoint_name": "last.ckpt"}, timing(records))
    summary = json.loads((eval_dir / "summary.json").read_text())
    summary.update({"versions": {}, "episodes_per_condition": 3, "first_seed": 0})
    (eval_dir / "summary.json").write_text(json.dumps(summary))
    config = {
        "experiment": "tabletop_spatial",
        "seed": 1,
        "env": {"name": "tabletop_spatial"},
        "data": {"episodes": 50},
        "trainer": {"max_epochs": 20},
        "compressor": {"name": "grids", "k": 4, "init": "uniform"},
    }
    OmegaConf.save(OmegaConf.create(config), run / "config.yaml")
    stored = json.loads(report.store_eval("demo", eval_dir).read_text())
    assert stored["training"] == {
        "conf": "tabletop_spatial",
        "env": "tabletop_spatial",
        "demos": 50,
        "epochs": 20,
        "compressor": "grids",
        "k": 4,
        "init": "uniform",
        "seed": 1,
    }
    header = report.eval_table(stored).splitlines()[0]
    assert "20 epochs on 50 demos per task, grids K=4 (uniform init), seed 1" in header
    assert "nearest task object" not in header  # records without point distances: no points sentence
    stored["timing"]["robosuite/Lift|clean|0.0"].update(points_to_object=0.404, grid_points_to_object=0.348)
    assert "image widths; a uniform grid of as many points in brackets): clean 0.404 (grid 0.348)." in report.eval_table(stored)
    OmegaConf.save(OmegaConf.create({**config, "compressor": {"name": "identity", "k": 4}}), run / "config.yaml")
    stored = json.loads(report.store_eval("demo", eval_dir).read_text())
    assert stored["training"]["k"] is None and stored["training"]["init"] is None  # no "identity K=4", no init
    assert "20 epochs on 50 demos per task, identity, seed 1" in report.eval_table(stored).splitlines()[0]
    (run / "config.yaml").unlink()  # an evaluation outside a run folder: no training line
    assert "training" not in json.loads(report.store_eval("demo", eval_dir).read_text())
