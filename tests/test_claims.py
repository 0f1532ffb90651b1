"""benchmarks/claims.py: the MOVER interval of a rate difference (Newcombe's published values),
the verdict rules, and the claims table built from a quality.json as quality.py writes it."""

from __future__ import annotations

import json

import pytest

from gridslab.eval.summary import wilson_interval
from tests.helpers import load_benchmark

claims = load_benchmark("claims")


def _stats(successes: int, episodes: int) -> dict:
    low, high = wilson_interval(successes, episodes)
    return {"successes": successes, "episodes": episodes, "rate": successes / episodes, "ci95_low": low, "ci95_high": high}


def test_mover_difference_matches_newcombe_method_10():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10 (hybrid score)
    for (a, m), (b, n), expected in [((56, 70), (48, 80), (0.0524, 0.3339)), ((9, 10), (3, 10), (0.1705, 0.8090))]:
        estimate, low, high = claims.mover([claims.term(1, _stats(a, m)), claims.term(-1, _stats(b, n))])
        assert estimate == pytest.approx(a / m - b / n)
        assert (low, high) == pytest.approx(expected, abs=1e-4)


def test_verdicts_follow_the_interval():
    assert claims.verdict("grids_vs_topk", 0.01, 0.3) == "agrees"
    assert claims.verdict("grids_vs_topk", -0.3, -0.01) == "contradicts"
    assert claims.verdict("grids_vs_topk", -0.1, 0.2) == "not significant"
    assert claims.verdict("k4_vs_full", -0.1, 0.2) == "agrees: no measurable loss"
    assert claims.verdict("k4_vs_full", -0.3, -0.01) == "contradicts"


def _entry(task, compressor, **conditions):
    return {"task": task, "compressor": compressor, "runs": 1, "seeds": 2, "success": conditions}


def test_claims_table_from_quality_json(tmp_path):
    task = "robosuite_pickplacecan"
    quality = {
        "tasks": {
            task: {
                "env": "robosuite/PickPlaceCan",
                "env_tasks": 1,
                "epochs": 40,
                "demos": 100,
                "episodes": 50,
                "ood": ["lighting"],
            }
        },
        "table": [
            _entry(task, "grids_k4", clean=_stats(30, 50), lighting=_stats(10, 50)),  # GridS drops 40 points
            _entry(task, "identity", clean=_stats(32, 50), lighting=_stats(31, 50)),  # full tokens drop 2
            _entry(task, "topk_k4", clean=_stats(45, 50), lighting=_stats(40, 50)),
        ],
        "runs": [
            {
                "task": task,
                "compressor": "grids_k4",
                "status": "done",
                "points": {"clean": {"object_to_points": 0.3, "grid_object_to_points": 0.2}},
            }
        ],
    }
    (tmp_path / "quality.json").write_text(json.dumps(quality))
    rows, table = claims.build(tmp_path)
    by_claim = {(r["claim"], r["condition"]): r for r in rows}
    assert by_claim[("k4_vs_full", "clean")]["verdict"] == "agrees: no measurable loss"
    assert by_claim[("grids_vs_topk", "clean")]["verdict"] == "contradicts"  # 60% vs 90%
    ood = by_claim[("ood_drop", "lighting")]
    assert ood["difference"] == pytest.approx((32 - 31) / 50 - (30 - 10) / 50) and ood["verdict"] == "contradicts"
    points = by_claim[("points_vs_grid", "clean")]
    assert points["difference"] == pytest.approx(-0.1) and points["verdict"] == "contradicts"
    assert "seeds landed: grids_k4 1/2, identity 1/2, topk_k4 1/2" in table
    assert table.rstrip().endswith(
        "robosuite_pickplacecan: OOD drop of GridS vs full tokens (lighting); "
        "robosuite_pickplacecan: where the points land vs a uniform grid (clean)."
    )

    def verdicts_with(grids_k4: tuple[int, int], identity: tuple[int, int]) -> dict[tuple[str, str], str]:
        """The verdicts when only grids_k4 and identity have landed, with these (clean, lighting) successes of 50."""
        quality["table"] = [
            _entry(task, name, clean=_stats(clean, 50), lighting=_stats(lighting, 50))
            for name, (clean, lighting) in (("grids_k4", grids_k4), ("identity", identity))
        ]
        (tmp_path / "quality.json").write_text(json.dumps(quality))
        return {(r["claim"], r["condition"]): r["verdict"] for r in claims.build(tmp_path)[0]}

    verdicts = verdicts_with(grids_k4=(2, 0), identity=(1, 0))
    assert verdicts[("k4_vs_full", "clean")].startswith("untestable")  # 4% vs 2%: neither learns the task
    assert verdicts[("grids_vs_topk", "clean")] == "not run: topk_k4"

    # full tokens fail clean, GridS does not: a drop of GridS's cannot be set against a policy with nothing to lose
    verdicts = verdicts_with(grids_k4=(45, 20), identity=(0, 0))
    assert verdicts[("ood_drop", "lighting")] == "untestable: identity clean at most 10%, no success to lose"
    assert verdicts[("k4_vs_full", "clean")] == "agrees"  # 90% vs 0%: a clean comparison stays testable


def test_one_task_table_from_stored_evaluations(tmp_path, monkeypatch):
    """benchmarks/one_task.py reads its variants' stored evaluations (report.py's format, written
    from episode records by the summary code) into the claims' rows and a points column."""
    from gridslab.eval.summary import summarize, timing

    one_task = load_benchmark("one_task")
    monkeypatch.setattr(one_task, "STORED", tmp_path)
    # (clean, lighting) successes of 50; grids_k4_seed1 pools into the random init's claims of
    # grids_k4, grids_k4_uniform into the uniform init's, beside the same identity and top-k runs
    wins = {
        "grids_k4": (45, 44),
        "grids_k4_seed1": (45, 44),
        "grids_k4_uniform": (0, 0),
        "identity": (40, 20),
        "topk_k4": (20, 19),
        "grids_adaptive_k4_16": (45, 44),  # its episodes use 4 tokens, or 16 every fifth; not in the claims
        "grids_k16": (40, 30),  # the fixed K=16 the adaptive budget is compared with; not in the claims
        "identity_e40": (30, 30),  # with grids_k4_e40, the 40-epoch claims; top-k "not run" there
        "grids_k4_e40": (35, 30),
        # two seeds of the adaptive budget and fixed K=16 at 40 epochs: pooled beside the per-seed rows
        "grids_adaptive_k4_16_uniform_e40": (40, 40),
        "grids_k16_uniform_e40": (45, 40),
        "grids_adaptive_k4_16_uniform_e40_seed1": (30, 30),
        "grids_k16_uniform_e40_seed1": (35, 20),
    }
    for variant, (clean, lighting) in wins.items():
        records = [
            {
                "task": one_task.ENV,
                "env": one_task.ENV,
                "perturbation": condition,
                "severity": 0.0 if condition == "clean" else 0.5,
                "seed": seed,
                "success": seed < won,
                "steps": 100,
                "wall_s": 1.0,
                "policy_ms_per_step": 1.0,
                "tokens_per_image": 16.0 if variant == "grids_adaptive_k4_16" and seed % 5 == 0 else 4.0,
                "object_to_points": 0.1 if variant.startswith("grids") else 0.4,
                "grid_object_to_points": 0.2,
                "points_to_object": 0.1,
                "grid_points_to_object": 0.2,
            }
            for condition, won in (("clean", clean), ("lighting", lighting))
            for seed in range(50)
        ]
        source = {"summary": {"conditions": summarize(records)}, "timing": timing(records)}
        if variant == "identity":  # still falling fast: not converged
            source["val_action_l1"] = [0.2] * 15 + [0.1, 0.09, 0.08, 0.07, 0.06]
        if variant == "grids_k4":
            source["val_action_l1"] = [0.05] * 16 + [0.049, 0.0485, 0.048, 0.048]
        if variant == "grids_adaptive_k4_16":
            counts, probe_l1, target = {"16": 10, "4": 40}, {"16": 0.2, "4": 0.21, "8": 0.2}, {"16": 10, "4": 38, "8": 2}
            source["validation_k"] = {
                "pick the left block": {
                    "mean": 6.4,
                    "min": 4.0,
                    "max": 16.0,
                    "counts": counts,
                    "probe_l1": probe_l1,
                    "probe_target": target,
                }
            }
        (tmp_path / f"{variant}.eval.json").write_text(json.dumps(source))
    assert (one_task.epochs("identity"), one_task.epochs("identity_e40")) == (20, 40)  # trainer.max_epochs=40 wins
    # the default init changed after the random-init runs landed: every GridS variant names its own
    grids = [v for v, found in one_task.VARIANTS.items() if "compressor=grids" in found.train]
    assert {one_task.grids_init(v) for v in grids} == {"random", "uniform"} and "identity" not in grids
    assert (one_task.grids_init("grids_k4_uniform_e40"), one_task.grids_init("identity")) == ("uniform", None)
    assert one_task.run_dir("grids_adaptive_k4_16_at_k16") == one_task.run_dir("grids_adaptive_k4_16")  # evaluates its checkpoint
    table = one_task.report()
    assert (
        "landed: grids_k4, identity, topk_k4, grids_k16, grids_k4_uniform, grids_k4_seed1, identity_e40, grids_adaptive_k4_16, "
        "grids_k4_e40, grids_adaptive_k4_16_uniform_e40, grids_k16_uniform_e40, grids_k16_uniform_e40_seed1, "
        "grids_adaptive_k4_16_uniform_e40_seed1." in table
    )
    uniform_20 = "**At 20 epochs, GridS with the uniform init (the default)** (seeds landed: grids_k4 1, identity 1, topk_k4 1):"
    random_20 = "**At 20 epochs, GridS with the authors' random init (the paper's GridS)** (seeds landed: grids_k4 2, identity 1, topk_k4 1):"
    # the 40-epoch runs have their own claims and stay out of the 20-epoch ones; no uniform-init run at 40: no table
    random_40 = (
        "**At 40 epochs, GridS with the authors' random init (the paper's GridS)** (seeds landed: grids_k4 1, identity 1):"
    )
    assert "At 40 epochs, GridS with the uniform init" not in table
    at_uniform_20 = table.split(uniform_20)[1].split(random_20)[0]
    at_20, at_40 = table.split(random_20)[1].split(random_40)
    at_40, per_variant = at_40.split("\nPer variant;")
    assert "| success at K=4 vs full tokens | clean | grids_k4 0/50 (0%), identity 40/50 (80%) | -80 points" in at_uniform_20
    assert "| success at K=4 vs full tokens | clean | grids_k4 35/50 (70%), identity 30/50 (60%) | +10 points" in at_40
    assert "| GridS vs top-k at equal K | clean | - | - | not run: topk_k4 |" in at_40
    lines = [line for line in (at_20 + per_variant).splitlines() if line.startswith("| ")]
    rows = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in lines}
    assert "grids_k4 90/100 (90%), topk_k4 20/50 (40%)" in rows["| GridS vs top-k at equal K | clean"]
    assert rows["| GridS vs top-k at equal K | clean"].endswith("| agrees |")
    assert "+10 points" in rows["| success at K=4 vs full tokens | clean"]
    assert rows["| OOD drop of GridS vs full tokens | lighting"].endswith("| agrees |")  # full drops 40 points, GridS 2
    assert "not run" in rows["| OOD drop of GridS vs full tokens | camera"]  # no camera episodes stored
    assert rows["| grids_k4 | 45/50"].endswith("| 4.00 (4-4) | 0.0480 (-4.0%) | 0.100 (0.200) |")  # 0.048 / 0.05
    assert rows["| identity | 40/50"].endswith("| 0.0600 (-70.0%, not converged) | 0.400 (0.200) |")  # 0.06 / 0.2
    assert rows["| topk_k4 | 20/50"].endswith("| - | 0.400 (0.200) |")  # no curve stored
    assert rows["| grids_adaptive_k4_16 | 45/50"].endswith("| 6.40 (4-16) | - | 0.100 (0.200) |")  # 10 of 50 at 16
    # the adaptive budget beside fixed K=16 of the same training: 45/50 vs 40/50 clean, 44/50 vs 30/50 under lighting
    adaptive = [line for line in table.splitlines() if line.startswith("| grids_adaptive_k4_16 | grids_k16 |")]
    assert [line.split(" | ")[2:6] for line in adaptive] == [
        ["clean", "45/50", "40/50", "+10 points [-4, +24]"],
        ["lighting", "44/50", "30/50", "+28 points [+11, +43]"],
    ]
    assert adaptive[0].endswith("| 6.40 (4-16) | 4.00 (4-4) |")
    # the 40-epoch pair's two seeds pooled (the 20-epoch pair has one seed: no pooled row)
    pooled = [line.split(" | ")[:6] for line in table.splitlines() if "seeds pooled" in line]
    setting = "(2 seeds pooled, 40 epochs, uniform init)"
    assert pooled == [
        [
            f"| grids_adaptive_k4_16_uniform_e40 {setting}",
            f"grids_k16_uniform_e40 {setting}",
            "clean",
            "70/100",
            "80/100",
            "-10 points [-22, +2]",
        ],
        [
            f"| grids_adaptive_k4_16_uniform_e40 {setting}",
            f"grids_k16_uniform_e40 {setting}",
            "lighting",
            "70/100",
            "60/100",
            "+10 points [-3, +23]",
        ],
    ]
    assert (
        'grids_adaptive_k4_16, its budget head on the validation frames of "pick the left block": K mean 6.40 (4-16); frames per K: K=4: 40, '
        "K=16: 10; action L1 at each probe K: K=4: 0.2100, K=8: 0.2000, K=16: 0.2000; frames per probe target K: "
        "K=4: 38, K=8: 2, K=16: 10." in table
    )
