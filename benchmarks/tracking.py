"""Where the sampled points land: distance from the points to the task objects, vs a fixed grid.

For each ``NAME=CHECKPOINT`` it runs an online evaluation (clean, ``--episodes`` seeded
episodes, resumable) into runs/tracking/NAME (``NAME=EVAL_DIR``: an evaluation already made,
e.g. by benchmarks/quality.py) and reads (from its timing.json) the diagnostics the
rollouts record for envs that expose object poses (first camera, image widths):
``points_to_object`` (mean over valid points of the distance to the nearest task object)
and ``object_to_points`` (mean over task objects of the distance to the nearest point), for
the learned points and for a uniform grid of as many points. Learned points that follow
the objects score below the grid. Writes benchmarks/results/tracking.{json,md}.

    python benchmarks/tracking.py lift_grids_k4=runs/robosuite_lift/checkpoints/last.ckpt [--episodes 20]

For a suite, the success and distances are those of the pooled "all tasks" row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


DISTANCES = ("points_to_object", "grid_points_to_object", "object_to_points", "grid_object_to_points")


def evaluate(name: str, source: str, episodes: int) -> dict:
    """Evaluate checkpoint ``source`` (or read the evaluation folder ``source``); one table row."""
    out = Path(source)
    if not (out / "summary.json").exists():
        out = ROOT / "runs" / "tracking" / name
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "evaluate.py"),
                "--ckpt",
                source,
                "--episodes",
                str(episodes),
                "--video-episodes",
                "0",
                "--out",
                str(out),
            ],
            check=True,
            cwd=ROOT,
        )
    summary = json.loads((out / "summary.json").read_text())
    row = next(r for r in summary["conditions"] if r["perturbation"] == "clean")  # a suite's pooled row comes first
    diagnostics = json.loads((out / "timing.json").read_text())[f"{row['task']}|clean|{row['severity']}"]
    return {
        "name": name,
        "source": source,
        "env": summary["env"],
        "episodes": row["episodes"],
        "success_rate": row["success_rate"],
        "tokens_per_image": row["tokens_per_image"],
        **{key: diagnostics[key] for key in DISTANCES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="NAME=CHECKPOINT or NAME=EVAL_DIR")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    rows = [evaluate(*item.split("=", 1), args.episodes) for item in args.runs]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tracking.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [
        "Distances in image widths, first camera (agentview), averaged over every step of every episode "
        '(clean, fixed seeds); "grid": a uniform grid with the same number of points.',
        "",
        "| run | env | episodes | success | tokens/image | points -> nearest object | grid | object -> nearest point | grid |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        distances = " | ".join("-" if r[key] is None else f"{r[key]:.3f}" for key in DISTANCES)
        lines.append(
            f"| {r['name']} | {r['env']} | {r['episodes']} | {r['success_rate']:.0%} | {r['tokens_per_image']:g} | {distances} |"
        )
    (RESULTS / "tracking.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
