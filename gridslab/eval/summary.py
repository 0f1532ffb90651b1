"""Success tables from per-episode rollout records: Wilson 95% CIs, drop vs clean.

A record is one finished episode (see ``rollout.EpisodeRecord``). A condition is a
(task, perturbation, severity) triple; ``summarize`` groups records by condition and
writes ``summary.json`` / ``summary.csv`` with stable ordering and rounding, so the same
seeds give byte-identical files. Wall-clock figures (policy latency, episode seconds) vary
run to run, so they live in the printed table and ``timing.json``, not in the summary.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when ``n == 0``."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def condition_key(record: dict[str, Any]) -> tuple[str, str, float]:
    return record["task"], record["perturbation"], float(record["severity"])


ALL_TASKS = "all tasks"


def task_order(task: str) -> tuple:
    """Sort key putting ``suite/2`` before ``suite/10`` (numbers compare as numbers)."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", task))


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per condition, sorted by (task, perturbation with clean first, severity).

    With several tasks (a suite), each (perturbation, severity) also gets a row for task
    ``"all tasks"`` pooling every task's episodes (its CI over all of them), listed first.
    """
    records = list(records)
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(condition_key(record), []).append(record)
    if len({task for task, _, _ in groups}) > 1:
        for record in records:
            groups.setdefault((ALL_TASKS, record["perturbation"], float(record["severity"])), []).append(record)
    clean_rate = {task: sum(r["success"] for r in rs) / len(rs) for (task, pert, _), rs in groups.items() if pert == "clean"}
    order = sorted(
        groups.items(), key=lambda kv: (kv[0][0] != ALL_TASKS, task_order(kv[0][0]), kv[0][1] != "clean", kv[0][1], kv[0][2])
    )
    return [_row(task, perturbation, severity, group, clean_rate.get(task)) for (task, perturbation, severity), group in order]


def _row(task: str, perturbation: str, severity: float, group: list[dict[str, Any]], clean_rate: float | None) -> dict[str, Any]:
    """The summary row of one condition's episodes."""
    n = len(group)
    acted = [r for r in group if r.get("tokens_per_plan", [r["tokens_per_image"]])]  # episodes with a policy call
    successes = sum(bool(r["success"]) for r in group)
    low, high = wilson_interval(successes, n)
    rate = successes / n
    return {
        "task": task,
        "perturbation": perturbation,
        "severity": severity,
        "episodes": n,
        "successes": successes,
        "success_rate": round(rate, 4),
        "ci95_low": round(low, 4),
        "ci95_high": round(high, 4),
        "drop_vs_clean": round(clean_rate - rate, 4) if clean_rate is not None else None,
        "mean_steps": round(sum(r["steps"] for r in group) / n, 2),
        "tokens_per_image": round(sum(r["tokens_per_image"] for r in group) / n, 3),
        "tokens_min": min((r.get("tokens_min", r["tokens_per_image"]) for r in acted), default=0.0),
        "tokens_max": max((r.get("tokens_max", r["tokens_per_image"]) for r in acted), default=0.0),
        "policy_gflops": round(sum(r.get("policy_gflops", 0.0) for r in acted) / max(len(acted), 1), 6),
        "errors": sum(1 for r in group if r.get("error")),
    }


TRACKING = ("points_to_object", "object_to_points", "grid_points_to_object", "grid_object_to_points")


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    """Mean of ``key`` over the records that have it (None when none do)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return round(sum(values) / len(values), 3) if values else None


def timing(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per condition: mean policy latency per env step (ms), episode wall time (s) and the
    where-the-points-land distances. These vary between identical runs (the distances by
    ~1e-4 here), so they go to timing.json, not into the byte-identical summary."""
    records = list(records)
    pooled = len({r["task"] for r in records}) > 1
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        for task in (record["task"], ALL_TASKS) if pooled else (record["task"],):
            groups.setdefault(f"{task}|{record['perturbation']}|{record['severity']}", []).append(record)
    return {
        key: {
            "policy_ms_per_step": sum(r["policy_ms_per_step"] for r in rs) / len(rs),
            "episode_seconds": sum(r["wall_s"] for r in rs) / len(rs),
            **{name: _mean_of(rs, name) for name in TRACKING},
        }
        for key, rs in sorted(groups.items())
    }


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(out_dir: Path, rows: list[dict[str, Any]], meta: dict[str, Any], timings: dict[str, Any]) -> None:
    """summary.json (rows + meta), summary.csv (rows) and timing.json, each written atomically."""
    _atomic_write(out_dir / "summary.json", json.dumps({"conditions": rows, **meta}, indent=2, sort_keys=True) + "\n")
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    _atomic_write(out_dir / "summary.csv", buffer.getvalue())
    _atomic_write(out_dir / "timing.json", json.dumps(timings, indent=2, sort_keys=True) + "\n")


def _latency(row: dict[str, Any], timings: dict[str, Any]) -> float:
    """Mean policy ms per env step of ``row``'s condition (NaN when ``timings`` lacks it)."""
    return timings.get(f"{row['task']}|{row['perturbation']}|{row['severity']}", {}).get("policy_ms_per_step", float("nan"))


def _drop(row: dict[str, Any]) -> str:
    return "-" if row["drop_vs_clean"] is None or row["perturbation"] == "clean" else f"{row['drop_vs_clean']:+.0%}"


MARKDOWN_COLUMNS = (
    "task",
    "perturbation",
    "severity",
    "success",
    "95% CI",
    "drop vs clean",
    "mean steps",
    "tokens/image",
    "policy ms/step",
    "errors",
)


def markdown_table(rows: list[dict[str, Any]], timings: dict[str, Any]) -> str:
    """The summary rows as a markdown table (``MARKDOWN_COLUMNS``); "errors" counts the
    episodes that ended in an env or worker error (counted as failures in "success")."""
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for row in rows:
        lines.append(
            f"| {row['task']} | {row['perturbation']} | {row['severity']:g} | {row['successes']}/{row['episodes']} "
            f"({row['success_rate']:.0%}) | [{row['ci95_low']:.0%}, {row['ci95_high']:.0%}] | {_drop(row)} | "
            f"{row['mean_steps']:.0f} | {row['tokens_per_image']:g} | {_latency(row, timings):.2f} | {row['errors']} |"
        )
    return "\n".join(lines) + "\n"


def render_table(rows: list[dict[str, Any]], timings: dict[str, Any], title: str) -> Any:
    """A rich Table: success with 95% CI, drop vs clean, length, latency, tokens, errors (episodes
    that ended in an env or worker error)."""
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "task",
        "perturbation",
        "sev.",
        "success (95% CI)",
        "drop vs clean",
        "mean steps",
        "policy ms/step",
        "tokens/image (min-max)",
        "GFLOPs/call",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("task", "perturbation") else "right")
    for row in rows:
        table.add_row(
            row["task"],
            row["perturbation"],
            f"{row['severity']:g}",
            f"{row['successes']}/{row['episodes']} = {row['success_rate']:.0%} [{row['ci95_low']:.0%}, {row['ci95_high']:.0%}]",
            _drop(row),
            f"{row['mean_steps']:.0f}",
            f"{_latency(row, timings):.1f}",
            f"{row['tokens_per_image']:g} ({row['tokens_min']:g}-{row['tokens_max']:g})",
            f"{row['policy_gflops']:.3f}",
            str(row["errors"]),
        )
    return table
