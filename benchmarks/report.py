"""Copy the tables in benchmarks/results/*.md into README.md between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers (no hand-typed numbers).

    python benchmarks/report.py [--eval NAME=EVAL_DIR ...]

``--eval`` first turns an evaluation's summary.json/timing.json into
benchmarks/results/NAME.md (success with 95% CI, drop vs clean, latency).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def eval_table(eval_dir: Path) -> str:
    summary = json.loads((eval_dir / "summary.json").read_text())
    timings = json.loads((eval_dir / "timing.json").read_text())
    versions = summary["versions"]
    lines = [f"{summary['env']}, checkpoint `{summary['checkpoint_name']}`, {summary['episodes_per_condition']} episodes per "
             f"condition from seed {summary['first_seed']} (mujoco {versions.get('mujoco')}, robosuite {versions.get('robosuite')}, "
             f"torch {versions.get('torch')}).", "",
             "| task | perturbation | severity | success | 95% CI | drop vs clean | mean steps | tokens/image | policy ms/step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["conditions"]:
        timing = timings.get(f"{row['task']}|{row['perturbation']}|{row['severity']}", {"policy_ms_per_step": float("nan")})
        drop = "-" if row["perturbation"] == "clean" else f"{row['drop_vs_clean']:+.0%}"
        lines.append(f"| {row['task']} | {row['perturbation']} | {row['severity']:g} | {row['successes']}/{row['episodes']} ({row['success_rate']:.0%}) | "
                     f"[{row['ci95_low']:.0%}, {row['ci95_high']:.0%}] | {drop} | {row['mean_steps']:.0f} | "
                     f"{row['tokens_per_image']:g} | {timing['policy_ms_per_step']:.2f} |")
    return "\n".join(lines) + "\n"


def provenance() -> str:
    """Where and with what the tables were produced: date, machine, package versions."""
    import datetime
    import os
    import platform

    from envs.hdf5_format import package_versions

    versions = ", ".join(f"{name} {version}" for name, version in package_versions().items())
    return (f"Every table in this README is generated from `benchmarks/results/` by `python benchmarks/report.py` "
            f"(last run {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPUs, "
            f"{platform.processor() or platform.machine()}; {versions}). Each dataset and result file records the "
            "versions it was made with.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval", action="append", default=[], help="NAME=EVAL_DIR")
    args = parser.parse_args()
    for item in args.eval:
        name, eval_dir = item.split("=", 1)
        (RESULTS / f"{name}.md").write_text(eval_table(Path(eval_dir)))
    (RESULTS / "provenance.md").write_text(provenance())
    readme = ROOT / "README.md"
    text = readme.read_text()
    for table in sorted(RESULTS.glob("*.md")):
        name = table.stem
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + table.read_text().strip() + "\n" + m.group(2), text)
            print(f"README: {name} <- {table.relative_to(ROOT)}")
    readme.write_text(text)


if __name__ == "__main__":
    main()
