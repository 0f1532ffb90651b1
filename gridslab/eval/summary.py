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
from typing import Any, Callable, Iterable, Iterator

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


def timing_key(task: str, perturbation: str, severity: float) -> str:
    """timing.json's key of one condition's row: ``task|perturbation|severity``."""
    return f"{task}|{perturbation}|{severity}"


def timing(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per condition: mean policy latency per env step (ms), episode wall time (s) and the
    where-the-points-land distances. These vary between identical runs (the distances by
    ~1e-4 here), so they go to timing.json, not into the byte-identical summary."""
    records = list(records)
    pooled = len({r["task"] for r in records}) > 1
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        for task in (record["task"], ALL_TASKS) if pooled else (record["task"],):
            groups.setdefault(timing_key(task, record["perturbation"], record["severity"]), []).append(record)
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
    """summary.json (rows + meta), summary.csv (rows), timing.json and summary.md (``markdown_table``,
    latency included, so unlike the first two not byte-identical between runs), each written atomically."""
    _atomic_write(out_dir / "summary.json", json.dumps({"conditions": rows, **meta}, indent=2, sort_keys=True) + "\n")
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    _atomic_write(out_dir / "summary.csv", buffer.getvalue())
    _atomic_write(out_dir / "timing.json", json.dumps(timings, indent=2, sort_keys=True) + "\n")
    _atomic_write(out_dir / "summary.md", markdown_table(rows, timings))


def _latency(row: dict[str, Any], timings: dict[str, Any]) -> float:
    """Mean policy ms per env step of ``row``'s condition (NaN when ``timings`` lacks it)."""
    return timings.get(timing_key(row["task"], row["perturbation"], row["severity"]), {}).get("policy_ms_per_step", float("nan"))


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


def _short_tasks(rows: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """(prefix, task -> name without it): the ``suite/`` or ``robosuite/`` part every task shares
    (up to its last "/") is dropped from the printed task column; "" when there is none."""
    tasks = [row["task"] for row in rows if row["task"] != ALL_TASKS]
    prefix = os.path.commonprefix(tasks) if tasks else ""
    prefix = prefix[: prefix.rfind("/") + 1]
    return prefix, {row["task"]: row["task"][len(prefix) :] if row["task"] != ALL_TASKS else ALL_TASKS for row in rows}


def _perturbation(row: dict[str, Any]) -> str:
    """``lighting+distractors`` printed as ``lighting + distractors``, so a narrow column wraps it at a "+"."""
    return row["perturbation"].replace("+", " + ")


# The printed table's columns: (header, cell of a summary row, with the condition's timings).
Cell = Callable[[dict[str, Any], dict[str, Any]], str]
CONDITION_COLUMNS: tuple[tuple[str, Cell], ...] = (
    ("perturbation", lambda row, t: _perturbation(row)),
    ("sev.", lambda row, t: f"{row['severity']:g}"),
)
WIDE_COLUMNS: tuple[tuple[str, Cell], ...] = (
    *CONDITION_COLUMNS,
    (
        "success (95% CI)",
        lambda row, t: (
            f"{row['successes']}/{row['episodes']} = {row['success_rate']:.0%} [{row['ci95_low']:.0%}, {row['ci95_high']:.0%}]"
        ),
    ),
    ("drop vs clean", lambda row, t: _drop(row)),
    ("mean steps", lambda row, t: f"{row['mean_steps']:.0f}"),
    ("policy ms/step", lambda row, t: f"{_latency(row, t):.1f}"),
    ("tokens/image (min-max)", lambda row, t: f"{row['tokens_per_image']:g} ({row['tokens_min']:g}-{row['tokens_max']:g})"),
    ("GFLOPs/call", lambda row, t: f"{row['policy_gflops']:.3f}"),
    ("errors", lambda row, t: str(row["errors"])),
)
# When the wide table does not fit the console (an 80-column terminal, a log file): the same cells in two tables.
SUCCESS_COLUMNS: tuple[tuple[str, Cell], ...] = (
    *CONDITION_COLUMNS,
    ("success", lambda row, t: f"{row['successes']}/{row['episodes']} = {row['success_rate']:.0%}"),
    ("95% CI", lambda row, t: f"[{row['ci95_low']:.0%}, {row['ci95_high']:.0%}]"),
    ("drop", lambda row, t: _drop(row)),
    ("errors", lambda row, t: str(row["errors"])),
)
COST_COLUMNS: tuple[tuple[str, Cell], ...] = (
    *CONDITION_COLUMNS,
    ("steps", lambda row, t: f"{row['mean_steps']:.0f}"),
    ("ms/step", lambda row, t: f"{_latency(row, t):.1f}"),
    ("tokens", lambda row, t: f"{row['tokens_per_image']:g} ({row['tokens_min']:g}-{row['tokens_max']:g})"),
    ("GFLOPs", lambda row, t: f"{row['policy_gflops']:.3f}"),
)


class ResultsTable:
    """The printed results of an evaluation (a rich renderable): success with 95% CI, drop vs clean,
    length, latency, tokens and errors (episodes that ended in an env or worker error) per condition.

    One table when it fits the console's width, else the same cells in two narrower tables
    (success; cost), so no header or cell is cut to "…"; cells wrap rather than shorten when even
    those do not fit. Terminal output gets rich's box lines, other output (a log file) markdown
    pipes. Task names drop the prefix every task shares (named in the title).
    """

    def __init__(self, rows: list[dict[str, Any]], timings: dict[str, Any], title: str):
        self.rows, self.timings = rows, timings
        prefix, self.task_names = _short_tasks(rows)
        self.title = f"{title} (tasks: {prefix}...)" if prefix and prefix not in title else title

    def table(self, columns: tuple[tuple[str, Cell], ...], title: str | None, terminal: bool) -> Any:
        """A rich Table of ``columns`` (after the task column), one row per summary row."""
        from rich import box
        from rich.table import Table

        table = Table(title=title, box=box.HEAVY_HEAD if terminal else box.MARKDOWN, title_justify="left")
        for header, _ in (("task", None), *columns):
            left = header in ("task", "perturbation")
            table.add_column(header, justify="left" if left else "right", overflow="fold")
        for row in self.rows:
            table.add_row(self.task_names[row["task"]], *(cell(row, self.timings) for _, cell in columns))
        return table

    def __rich_console__(self, console: Any, options: Any) -> Iterator[Any]:
        from rich.measure import Measurement

        terminal = options.is_terminal
        wide = self.table(WIDE_COLUMNS, self.title, terminal)
        unbounded = options.update_width(10_000)  # the width the table wants, not the one it has
        if Measurement.get(console, unbounded, wide).maximum <= options.max_width:
            yield wide
            return
        yield self.table(SUCCESS_COLUMNS, self.title, terminal)
        yield self.table(COST_COLUMNS, None, terminal)


def render_table(rows: list[dict[str, Any]], timings: dict[str, Any], title: str) -> ResultsTable:
    """The summary rows as a printable ``ResultsTable`` (``Console().print(render_table(...))``)."""
    return ResultsTable(rows, timings, title)
