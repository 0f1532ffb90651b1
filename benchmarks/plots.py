"""Plots of online success per compressor (what ``benchmarks/quality.py`` draws), matplotlib Agg.

Both take the per-(task, compressor) entries quality.py aggregates over training seeds:

    {"task": str, "compressor": str, "family": str, "runs": int (0: nothing reported),
     "note": why nothing is reported ("not run", "refused: ..."; None when runs > 0),
     "tokens_per_image": float, "success": {condition: {"rate", "ci95_low", "ci95_high"}}}

with rates and interval bounds as fractions in [0, 1] (Wilson 95% intervals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend
from matplotlib.ticker import NullFormatter

PANEL_INCHES = (5.0, 3.8)
LEGEND_INCHES = 0.35  # height kept free above the panels for the shared legend
MARKERS = {"grids": "o", "identity": "s", "topk": "^", "pool": "v", "random": "X", "tokenlearner": "D"}
X_SPREAD = 1.06  # families sharing a token count are drawn this factor apart on the log axis


def _colours(families: list[str]) -> dict[str, Any]:
    cycle = plt.get_cmap("tab10")
    return {family: cycle(i % 10) for i, family in enumerate(families)}


def _families(entries: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(e["family"] for e in entries))


def _legend_on_top(fig: Any, axes: Any) -> None:
    """One legend for all panels, above them (labels are the same in every panel)."""
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.tight_layout(rect=(0, 0, 1, 1 - LEGEND_INCHES / fig.get_figheight() if handles else 1))
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="upper center", ncols=len(handles), frameon=False)


def _error(stats: dict[str, float]) -> list[list[float]]:
    """Error-bar lengths ``[[below], [above]]`` in percent around the rate."""
    return [[100 * (stats["rate"] - stats["ci95_low"])], [100 * (stats["ci95_high"] - stats["rate"])]]


def plot_tokens(entries: list[dict[str, Any]], tasks: list[str], path: Path) -> None:
    """Clean success (%) vs visual tokens per image (log x), one panel per task, one
    marker/line set per compressor family (a family's K values joined by a line)."""
    families = _families(entries)
    colours = _colours(families)
    fig, axes = plt.subplots(1, len(tasks), figsize=(PANEL_INCHES[0] * len(tasks), PANEL_INCHES[1]), squeeze=False)
    ticks = sorted({e["tokens_per_image"] for e in entries if e["runs"]})
    for ax, task in zip(axes[0], tasks):
        done = [e for e in entries if e["task"] == task and e["runs"] and "clean" in e["success"]]
        for index, family in enumerate(families):
            points = sorted((e for e in done if e["family"] == family), key=lambda e: e["tokens_per_image"])
            if not points:
                continue
            shift = X_SPREAD ** (index - (len(families) - 1) / 2)
            xs = [e["tokens_per_image"] * shift for e in points]
            ys = [100 * e["success"]["clean"]["rate"] for e in points]
            ax.plot(xs, ys, color=colours[family], marker=MARKERS.get(family, "o"), label=family)
            for x, entry in zip(xs, points):
                ax.errorbar(
                    [x],
                    [100 * entry["success"]["clean"]["rate"]],
                    yerr=_error(entry["success"]["clean"]),
                    color=colours[family],
                    capsize=3,
                    linewidth=1,
                )
        ax.set_xscale("log")
        if ticks:
            ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(-3, 103)
        ax.set_title(task)
        ax.set_xlabel("visual tokens per image (log; equal counts drawn apart)")
        ax.set_ylabel("clean success (%), 95% CI")
        ax.grid(alpha=0.3)
        if not done:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    _legend_on_top(fig, axes)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_ood(entries: list[dict[str, Any]], tasks: list[str], conditions: list[str], path: Path) -> None:
    """Success (%) per compressor as grouped bars, one bar per condition (clean first), one
    panel per task; compressors with nothing reported are labelled "not run" or "refused"."""
    colours = _colours(conditions)
    width = 0.8 / len(conditions)
    fig, axes = plt.subplots(len(tasks), 1, figsize=(2 * PANEL_INCHES[0], PANEL_INCHES[1] * len(tasks)), squeeze=False)
    for ax, task in zip(axes[:, 0], tasks):
        row = [e for e in entries if e["task"] == task]
        labelled: set[str] = set()
        for slot, condition in enumerate(conditions):
            for x, entry in enumerate(row):
                stats = entry["success"].get(condition)
                if not entry["runs"] or stats is None:
                    continue
                ax.bar(
                    x + (slot - (len(conditions) - 1) / 2) * width,
                    100 * stats["rate"],
                    width,
                    yerr=_error(stats),
                    color=colours[condition],
                    capsize=2,
                    label=None if condition in labelled else condition,
                )
                labelled.add(condition)
        ax.set_xticks(range(len(row)))
        ax.set_xticklabels([e["compressor"] + ("" if e["runs"] else f"\n({e['note'].split(':')[0]})") for e in row])
        ax.set_ylim(0, 105)
        ax.set_ylabel("success (%), 95% CI")
        ax.set_title(task)
        ax.grid(axis="y", alpha=0.3)
    _legend_on_top(fig, axes)
    fig.savefig(path, dpi=120)
    plt.close(fig)
