"""Copy the tables in benchmarks/results/*.md into README.md between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` markers (no hand-typed numbers).

    python benchmarks/report.py [--eval NAME=EVAL_DIR ...]

``--eval`` first stores an evaluation's summary.json and timing.json as
benchmarks/results/NAME.eval.json (the committed source). Every run renders each
``*.eval.json`` into NAME.md with today's table code (success with 95% CI, drop vs clean,
latency, errors), so an evaluation table is never older than the code that draws it.
A README marker without a results file, or a results table without a marker, is reported.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gridslab from this checkout, installed or not

from gridslab.eval.summary import ALL_TASKS, markdown_table, timing_key

RESULTS = Path(__file__).parent / "results"
EVAL_SUFFIX = ".eval.json"


def training_settings(eval_dir: Path) -> dict | None:
    """What the evaluated checkpoint was trained with, from the config.yaml of the run folder
    holding ``eval_dir`` (``<run>/eval/<name>``): conf, env, demos (per task for a suite),
    epochs, compressor, K (None for a compressor that ignores it: identity keeps every patch),
    GridS's point init (None for the other compressors), seed; None when the evaluation is not
    inside a run folder."""
    config_path = eval_dir.resolve().parent.parent / "config.yaml"
    if not config_path.is_file():
        return None
    from omegaconf import OmegaConf

    from gridslab.compress import COMPRESSORS

    config = OmegaConf.load(config_path)
    honours_k = COMPRESSORS.entry(str(config.compressor.name)).factory.honours_budget
    return {
        "conf": config.experiment,
        "env": config.env.name,
        "demos": config.data.episodes,
        "epochs": config.trainer.max_epochs,
        "compressor": config.compressor.name,
        "k": config.compressor.get("k") if honours_k else None,
        "init": config.compressor.get("init"),
        "seed": config.seed,
    }


def store_eval(name: str, eval_dir: Path) -> Path:
    """benchmarks/results/NAME.eval.json: ``eval_dir``'s summary.json and timing.json in one
    file, with the checkpoint's training settings (``training_settings``) where known."""
    source = {
        "summary": json.loads((eval_dir / "summary.json").read_text()),
        "timing": json.loads((eval_dir / "timing.json").read_text()),
    }
    training = training_settings(eval_dir)
    if training is not None:
        source["training"] = training
    path = RESULTS / f"{name}{EVAL_SUFFIX}"
    path.write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")
    return path


def eval_table(source: dict) -> str:
    """A stored evaluation as markdown: one line of provenance, then ``markdown_table``."""
    summary = source["summary"]
    versions = summary["versions"]
    header = (
        f"{summary['env']}, checkpoint `{summary['checkpoint_name']}`, {summary['episodes_per_condition']} episodes per "
        f"condition from seed {summary['first_seed']} (mujoco {versions.get('mujoco')}, robosuite {versions.get('robosuite')}, "
        f"torch {versions.get('torch')}); errors: episodes ended by an env or worker error (counted as failures)."
    )
    training = source.get("training")
    if training is not None:
        from envs.registry import expand

        k = f" K={training['k']}" if training.get("k") else ""
        k += f" ({training['init']} init)" if training.get("init") else ""
        header += (
            f" Trained with `conf={training['conf']}` on {training['env']}: {training['epochs']} epochs on "
            f"{training['demos']} demos{' per task' if len(expand(training['env'])) > 1 else ''}, "
            f"{training['compressor']}{k}, seed {training['seed']}."
        )
    return (
        header
        + points_sentence(summary["conditions"], source["timing"])
        + "\n\n"
        + markdown_table(summary["conditions"], source["timing"])
    )


def points_sentence(rows: list[dict], timings: dict) -> str:
    """Where the sampled points landed, per condition row with the distances in ``timings``
    (first camera, image widths, episode means): each point's distance to the nearest task
    object, and a uniform grid of as many points'; "" when no row has them (no object poses,
    or a compressor without points). A suite's pooled rows only, when it has them."""
    pooled = [row for row in rows if row["task"] == ALL_TASKS]
    found = []
    for row in pooled or rows:
        stats = timings.get(timing_key(row["task"], row["perturbation"], row["severity"]), {})
        if stats.get("points_to_object") is not None and stats.get("grid_points_to_object") is not None:
            found.append(f"{row['perturbation']} {stats['points_to_object']:.3f} (grid {stats['grid_points_to_object']:.3f})")
    if not found:
        return ""
    return (
        " Sampled points' distance to the nearest task object (first camera, image widths; a uniform grid of as many "
        f"points in brackets): {', '.join(found)}."
    )


def provenance() -> str:
    """Where and with what the tables were produced: date, machine, package versions."""
    import datetime
    import os
    import platform

    from envs.hdf5_format import package_versions

    versions = ", ".join(f"{name} {version}" for name, version in package_versions().items())
    return (
        f"Every table in this README is generated from `benchmarks/results/` by `python benchmarks/report.py` "
        f"(last run {datetime.date.today().isoformat()} on {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; {versions}). Each dataset and result file records the "
        "versions it was made with.\n"
    )


def fill_readme(text: str) -> str:
    """``text`` with every ``results:NAME`` block replaced by benchmarks/results/NAME.md."""
    names = set(re.findall(r"<!-- results:([\w.-]+) -->", text))
    for table in sorted(RESULTS.glob("*.md")):
        name, body = table.stem, table.read_text().strip()
        pattern = re.compile(rf"(<!-- results:{re.escape(name)} -->\n).*?(<!-- /results:{re.escape(name)} -->)", re.DOTALL)
        if name in names:
            text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)
            print(f"README: {name} <- {table.relative_to(ROOT)}")
        else:
            print(f"README: no marker for {table.relative_to(ROOT)}")
    for name in sorted(names - {p.stem for p in RESULTS.glob("*.md")}):
        print(f"README: marker results:{name} has no benchmarks/results/{name}.md")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", action="append", default=[], help="NAME=EVAL_DIR")
    args = parser.parse_args()
    for item in args.eval:
        name, _, eval_dir = item.partition("=")
        if not name or not (Path(eval_dir) / "summary.json").is_file():
            parser.error(f"--eval {item!r}: expected NAME=EVAL_DIR of an evaluation (a folder holding summary.json)")
        store_eval(name, Path(eval_dir))
    for source in sorted(RESULTS.glob(f"*{EVAL_SUFFIX}")):
        name = source.name[: -len(EVAL_SUFFIX)]
        (RESULTS / f"{name}.md").write_text(eval_table(json.loads(source.read_text())))
    (RESULTS / "provenance.md").write_text(provenance())
    readme = ROOT / "README.md"
    readme.write_text(fill_readme(readme.read_text()))


if __name__ == "__main__":
    main()
