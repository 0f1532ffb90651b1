"""The GridS paper's claims beside ours, from the committed compressor comparison.

    python benchmarks/claims.py   # reads benchmarks/results/quality.json, writes claims.{json,md}

The paper: Feng et al., "See What Matters: Differentiable Grid Sample Pruning for
Generalizable Vision-Language-Action Model", ICML 2026 (arXiv 2605.11817); its figures below
are copied from the LIBERO table (pi0, 256 visual tokens, vs pi0 + GridS at K = 16 and 4 and
pi0 + FastV / SparseVLM at 100 tokens) and the real-robot figure (three tasks, 21 OOD scenes)
of the authors' repository (github.com/Fediory/Grid-Sampler, assets/main_result{1,2}.png).

Ours, per task of quality.json (``benchmarks/quality.py``; seeds pooled), clean success unless
named, as differences in success rate with a 95% interval by the MOVER method (Newcombe's
hybrid score interval for a difference of two rates, Zou & Donner's extension to the
difference of two drops), from each rate's Wilson interval:

1. ``k4_vs_full``: GridS K=4 minus full tokens (``identity``). The paper claims no loss;
   ours contradicts it when the whole interval lies below zero.
2. ``grids_vs_topk``: GridS K=4 minus top-k K=4, our stand-in for the paper's score-based
   pruning (FastV, SparseVLM). Claimed: above zero.
3. ``ood_drop``: per OOD condition, full tokens' drop (clean minus OOD) minus GridS K=4's:
   above zero when GridS loses less. Claimed: above zero.
4. ``points_vs_grid``: where GridS K=4's points land (clean episodes, first camera): the mean
   distance from each task object to its nearest sampled point, in image widths, against a
   uniform grid of as many points. The paper shows it only in pictures; ours: the grid's
   distance minus GridS's (above zero: GridS's points are nearer the objects). Per-episode
   distances are not kept in the results, so this one has no interval.

Verdicts: "agrees" (the interval on the claimed side of zero), "contradicts" (on the other),
"not significant" (the interval holds zero; the sign of the difference said); for the
no-loss claim an interval holding zero is "agrees: no measurable loss". "untestable" when
every rate involved is at most 10% (neither policy learns the task at those settings), and
for an OOD drop also when either policy's clean rate is (a policy that fails clean has no
success to lose: its drop is not a measure of robustness); "not run" when a compressor's
runs have not landed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
FLOOR = 0.10  # every rate at most this: the task is not learnt, a comparison says nothing
PAPER_SOURCE = "Feng et al., ICML 2026 (arXiv 2605.11817)"
PAPER = {  # claim -> what the paper reports for it (its own figures, percent or points)
    "k4_vs_full": "LIBERO mean success (pi0): GridS K=4 95.5% vs full (256 tokens) 94.4%: +1.1 points; K=16 96.0% (+1.6)",
    "grids_vs_topk": "LIBERO mean success: GridS K=4 95.5% vs score-based pruning at 100 tokens: FastV 92.9%, SparseVLM 89.8% (+2.6, +5.7 points)",
    "ood_drop": "real robot, 21 OOD scenes: GridS's gain over pi0 grows from +4.8 / +9.5 / +52.4 points in-domain to "
    "+14.3 / +33.3 / +38.1 OOD (pi0 fails 2 of 3 tasks OOD)",
    "points_vs_grid": "shown in pictures only (points on the task objects); no figure",
}
CLAIMS = {  # claim -> how the README names it
    "k4_vs_full": "success at K=4 vs full tokens",
    "grids_vs_topk": "GridS vs top-k at equal K",
    "ood_drop": "OOD drop of GridS vs full tokens",
    "points_vs_grid": "where the points land vs a uniform grid",
}
NO_LOSS = {"k4_vs_full"}  # claims of "no worse", not "better"
COMPARED = ("grids_k4", "identity", "topk_k4")  # the compressors the claims read


def mover(terms: list[tuple[float, float, float, float]]) -> tuple[float, float, float]:
    """A sum of rates with signs and its 95% interval (MOVER, from each rate's Wilson interval).

    terms: ``(sign, rate, ci95_low, ci95_high)``, sign +1 or -1. Returns (estimate, low, high):
    low adds each term's distance to the end of its interval that lowers the sum, in quadrature.
    """
    estimate = sum(sign * rate for sign, rate, _, _ in terms)
    below = sum((rate - low) ** 2 if sign > 0 else (high - rate) ** 2 for sign, rate, low, high in terms)
    above = sum((high - rate) ** 2 if sign > 0 else (rate - low) ** 2 for sign, rate, low, high in terms)
    return estimate, estimate - math.sqrt(below), estimate + math.sqrt(above)


def verdict(claim: str, low: float, high: float) -> str:
    if low > 0:
        return "agrees"
    if high < 0:
        return "contradicts"
    return "agrees: no measurable loss" if claim in NO_LOSS else "not significant"


def term(sign: int, stats: dict[str, Any]) -> tuple[float, float, float, float]:
    return sign, stats["rate"], stats["ci95_low"], stats["ci95_high"]


def rate_cell(name: str, stats: dict[str, Any]) -> str:
    return f"{name} {stats['successes']}/{stats['episodes']} ({stats['rate']:.0%})"


def compare(
    claim: str, condition: str, terms: dict[str, tuple[int, dict[str, Any] | None]], learned: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One row of a success claim: ``terms`` name -> (sign, the entry's success stats for the
    condition, None when not run); ``learned``: the terms whose rate must be above ``FLOOR``
    for the row to be testable (an OOD drop's clean rates)."""
    missing = [name for name, (_, stats) in terms.items() if stats is None]
    row: dict[str, Any] = {"claim": claim, "condition": condition, "paper": PAPER[claim]}
    if missing:
        return {**row, "ours": "-", "verdict": f"not run: {', '.join(missing)}"}
    row["ours"] = ", ".join(rate_cell(name, stats) for name, (_, stats) in terms.items())
    estimate, low, high = mover([term(sign, stats) for sign, stats in terms.values()])
    row.update({"difference": estimate, "ci95_low": low, "ci95_high": high})
    floored = [name for name in learned if terms[name][1]["rate"] <= FLOOR]
    if all(stats["rate"] <= FLOOR for _, stats in terms.values()):
        row["verdict"] = "untestable: no policy learns the task here"
    elif floored:
        row["verdict"] = f"untestable: {' and '.join(floored)} at most {FLOOR:.0%}, no success to lose"
    else:
        row["verdict"] = verdict(claim, low, high)
    return row


def points_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Claim 4 from the GridS K=4 runs' clean point distances (mean over seeds)."""
    row: dict[str, Any] = {"claim": "points_vs_grid", "condition": "clean", "paper": PAPER["points_vs_grid"]}
    found = [r["points"]["clean"] for r in runs if r.get("points", {}).get("clean", {}).get("object_to_points") is not None]
    if not found:
        return {**row, "ours": "-", "verdict": "not recorded (no GridS K=4 run with point distances)"}
    ours = sum(p["object_to_points"] for p in found) / len(found)
    grid = sum(p["grid_object_to_points"] for p in found) / len(found)
    row["ours"] = f"object -> nearest point: GridS {ours:.3f}, uniform grid {grid:.3f} image widths"
    row["difference"] = grid - ours
    row["verdict"] = "agrees" if grid > ours else "contradicts"
    return row


def task_claims(
    task: str, settings: dict[str, Any], entries: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every claim's rows for one task of quality.json."""

    def stats(compressor: str, condition: str) -> dict[str, Any] | None:
        entry = next((e for e in entries if e["compressor"] == compressor and e["runs"]), None)
        return None if entry is None else entry["success"].get(condition)

    rows = [
        compare(
            "k4_vs_full", "clean", {"grids_k4": (1, stats("grids_k4", "clean")), "identity": (-1, stats("identity", "clean"))}
        ),
        compare(
            "grids_vs_topk", "clean", {"grids_k4": (1, stats("grids_k4", "clean")), "topk_k4": (-1, stats("topk_k4", "clean"))}
        ),
    ]
    for condition in settings["ood"]:
        terms = {  # identity's drop minus GridS's: + identity clean - identity OOD - GridS clean + GridS OOD
            "identity clean": (1, stats("identity", "clean")),
            f"identity {condition}": (-1, stats("identity", condition)),
            "grids_k4 clean": (-1, stats("grids_k4", "clean")),
            f"grids_k4 {condition}": (1, stats("grids_k4", condition)),
        }
        rows.append(compare("ood_drop", condition, terms, learned=("identity clean", "grids_k4 clean")))
    rows.append(points_row([r for r in runs if r["compressor"] == "grids_k4" and r["status"] == "done"]))
    return [{"task": task, **row} for row in rows]


def settings_line(task: str, settings: dict[str, Any], entries: list[dict[str, Any]]) -> str:
    landed = [f"{e['compressor']} {e['runs']}/{e['seeds']}" for e in entries if e["compressor"] in COMPARED]
    return (
        f"**{task}** ({settings['env']}): {settings['epochs']} epochs on {settings['demos']} demos"
        f"{' per task' if settings['env_tasks'] > 1 else ''}, {settings['episodes']} episodes per condition; "
        f"seeds landed: {', '.join(landed) or '-'}."
    )


def difference_cell(row: dict[str, Any]) -> str:
    if "difference" not in row:
        return "-"
    if "ci95_low" not in row:
        return f"{row['difference']:+.3f}"
    return f"{row['difference'] * 100:+.0f} points [{row['ci95_low'] * 100:+.0f}, {row['ci95_high'] * 100:+.0f}]"


def markdown(quality: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        f"The paper: {PAPER_SOURCE}, pi0 on LIBERO and a real robot; ours: `benchmarks/quality.py` (quality.json), "
        "clean success unless a condition is named, seeds pooled; difference: success-rate points with a 95% "
        "interval (MOVER from Wilson intervals), positive = on the paper's side; see benchmarks/claims.py for each rule."
    ]
    for task, settings in quality["tasks"].items():
        entries = [e for e in quality["table"] if e["task"] == task]
        lines += ["", settings_line(task, settings, entries), ""]
        lines += ["| claim | condition | the paper | ours | difference | verdict |", "|---|---|---|---|---|---|"]
        shown = set()
        for row in (r for r in rows if r["task"] == task):
            paper = "(as above)" if row["claim"] in shown else row["paper"]
            shown.add(row["claim"])
            cells = [CLAIMS[row["claim"]], row["condition"], paper, row["ours"], difference_cell(row), row["verdict"]]
            lines.append("| " + " | ".join(cells) + " |")
    against = [f"{r['task']}: {CLAIMS[r['claim']]} ({r['condition']})" for r in rows if r["verdict"] == "contradicts"]
    lines += ["", f"Contradicted by our runs: {'; '.join(against) if against else 'none so far'}."]
    return "\n".join(lines) + "\n"


def build(results_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """Every task's claim rows and the markdown, from ``results_dir``/quality.json."""
    path = results_dir / "quality.json"
    if not path.is_file():
        sys.exit(f"{path}: no comparison results; run python benchmarks/quality.py --report-only first")
    quality = json.loads(path.read_text())
    rows = [
        row
        for task, settings in quality["tasks"].items()
        for row in task_claims(
            task,
            settings,
            [e for e in quality["table"] if e["task"] == task],
            [r for r in quality["runs"] if r["task"] == task],
        )
    ]
    return rows, markdown(quality, rows)


def main() -> None:
    rows, table = build(RESULTS)
    (RESULTS / "claims.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "claims.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
