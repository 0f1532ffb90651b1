"""Success tables: Wilson intervals, grouping, drop vs clean, deterministic files."""

from __future__ import annotations

import json

import pytest

from gridslab.evaluation import summarize, timing, wilson_interval, write_summary


def test_wilson_interval_known_values():
    low, high = wilson_interval(49, 50)
    assert low == pytest.approx(0.8950, abs=1e-3) and high == pytest.approx(0.9965, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0, abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _record(perturbation, seed, success, steps=50, severity=0.5):
    return {"task": "robosuite/Lift", "env": "robosuite/Lift", "perturbation": perturbation, "severity": severity,
            "seed": seed, "success": success, "steps": steps, "wall_s": 1.0 + seed, "policy_ms_per_step": 2.0,
            "tokens_per_image": 4.0, "instruction": "lift the red cube", "error": ""}


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
