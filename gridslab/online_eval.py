"""Evaluate a policy online: conditions -> rollouts -> results files (what ``evaluate.py`` runs).

Files in the evaluation directory:
    results.jsonl     one line per finished episode, appended and flushed as it finishes
    settings.json     what the episodes depend on (a resumed run must match it)
    summary.json/csv  success with Wilson 95% CI per condition, drop vs clean (deterministic)
    timing.json       policy latency per step, episode wall time, where the points land
    videos/           MP4s of the first ``video_episodes`` episodes per condition
    tb/               TensorBoard scalars and frame strips
Re-running the same command resumes: episodes already in ``results.jsonl`` are read back,
not re-run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from envs.errors import EnvUserError
from envs.hdf5_format import package_versions
from gridslab.config import env_kwargs
from gridslab.errors import UserError
from gridslab.evaluation import render_table, summarize, timing, write_summary
from gridslab.rollout import (
    Condition,
    EpisodeRecord,
    PolicyRunner,
    default_workers,
    record_to_json,
    run_condition,
)
from gridslab.viz import tile

RESULTS_FILE = "results.jsonl"
SETTINGS_FILE = "settings.json"
VIDEO_FPS = 20


def conditions_for(cfg: DictConfig) -> list[Condition]:
    """For each task of ``cfg.env.name`` (one env, or every task of a suite): the "clean"
    condition plus one per entry of ``cfg.eval.ood`` (names validated)."""
    from envs import ood
    from envs.registry import expand

    kwargs = env_kwargs(cfg.env)
    if cfg.eval.max_steps:
        kwargs["max_steps"] = int(cfg.eval.max_steps)
    specs = [s.strip() for s in str(cfg.eval.ood).split(",") if s.strip() and s.strip() != "clean"]
    ood.check_severity(cfg.eval.severity)
    for spec in specs:
        ood.parse(spec)
    conditions = []
    for name in expand(cfg.env.name):
        conditions.append(Condition(name, kwargs))
        conditions += [Condition(name, kwargs, spec, float(cfg.eval.severity)) for spec in specs]
    return conditions


def probe_conditions(conditions: list[Condition], seed: int) -> int:
    """Build and reset the first task under every condition, so a bad env setting or a
    perturbation this env cannot take fails with one line before any file is written (not
    inside a worker). Returns the task's episode limit (env steps)."""
    from envs import ood

    first = conditions[0].env_name
    for condition in (c for c in conditions if c.env_name == first):
        try:
            env = ood.make(condition.env_name, condition.perturbation, condition.severity, **condition.env_kwargs)
            env.reset(seed=seed)
        except EnvUserError:
            raise
        except Exception as err:  # noqa: BLE001 - the env's own failure, reported in one line
            reason = f"{type(err).__name__}: {err}".splitlines()[0]
            raise UserError(f"{condition.label} cannot run on {first} ({reason})") from None
        max_steps = env.unwrapped.max_steps
        env.close()
    return int(max_steps)


def check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Record what the episodes in ``out_dir`` depend on; refuse to mix other settings in.

    A resumed run must match, or earlier records would be read back as if they were new.
    """
    path = out_dir / SETTINGS_FILE
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(recorded) | set(settings) if recorded.get(k) != json.loads(json.dumps(settings)).get(k))
            raise UserError(f"{out_dir} holds episodes made with other settings ({', '.join(changed)}); "
                            f"pass --out DIR for a new evaluation or delete that folder")
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records already written; a line cut short by a crash is dropped (and later re-run)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class ResultsWriter:
    """Appends one JSON line per episode and flushes it to disk at once."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.meta = meta
        existing = path.read_bytes() if path.exists() else b""
        self.handle = open(path, "a")
        if existing and not existing.endswith(b"\n"):
            self.handle.write("\n")

    def write(self, record: EpisodeRecord) -> dict[str, Any]:
        line = {**record_to_json(record), **self.meta}
        self.handle.write(json.dumps(line, sort_keys=True) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return line

    def close(self) -> None:
        self.handle.close()


def _save_video(out_dir: Path, condition: Condition, seed: int, frames: list[np.ndarray], writer: Any) -> None:
    import imageio.v2 as imageio

    videos = out_dir / "videos"
    videos.mkdir(exist_ok=True)
    path = videos / f"{_slug(condition.env_name)}_{condition.label.replace('+', '_')}_seed{seed}.mp4"
    tmp = path.with_name(path.stem + ".tmp.mp4")
    imageio.mimwrite(tmp, frames, fps=VIDEO_FPS, macro_block_size=8)
    os.replace(tmp, path)
    strip = tile([frames[i] for i in np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)], columns=8)
    writer.add_image(f"rollouts/{_slug(condition.env_name)}/{condition.label}/seed{seed}", strip, 0, dataformats="HWC")


def _slug(task: str) -> str:
    """``tabletop_spatial/3`` -> ``tabletop_spatial_3``; ``all tasks`` -> ``all_tasks`` (file names, TB tags)."""
    return task.replace("/", "_").replace(" ", "_")


def evaluate_policy(policy: Any, cfg: DictConfig, out_dir: Path, checkpoint: str = "", progress: bool = True,
                    k: int | None = None) -> list[dict[str, Any]]:
    """Run every condition of ``cfg.eval`` for ``policy``; write the files; return summary rows."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from torch.utils.tensorboard import SummaryWriter

    conditions = conditions_for(cfg)
    tasks = list(dict.fromkeys(c.env_name for c in conditions))
    eval_cfg = cfg.eval
    if eval_cfg.episodes < 1:
        raise UserError(f"eval.episodes={eval_cfg.episodes} must be >= 1")
    max_steps = eval_cfg.max_steps or probe_conditions(conditions, eval_cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_settings(out_dir, {"checkpoint": Path(checkpoint).name, "env": cfg.env.name, "env_kwargs": env_kwargs(cfg.env),
                             "max_steps": max_steps, "replan_every": cfg.policy.replan_every, "chunk": cfg.policy.chunk,
                             "compressor": OmegaConf.to_container(cfg.compressor), "budget": OmegaConf.to_container(cfg.budget),
                             "k": k})
    seeds = [eval_cfg.seed + i for i in range(eval_cfg.episodes)]
    results_path = out_dir / RESULTS_FILE
    done = {(r["env"], r["perturbation"], float(r["severity"]), int(r["seed"])): r for r in read_records(results_path)}
    meta = {"checkpoint": str(checkpoint), "versions": package_versions()}
    writer = ResultsWriter(results_path, {"versions": meta["versions"]})
    tb = SummaryWriter(str(out_dir / "tb"))
    runner = PolicyRunner(policy, k=k)
    workers = eval_cfg.workers or default_workers()
    columns = (TextColumn("[bold]eval[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("success {task.fields[rate]}"), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not progress, console=Console(stderr=True)) as bar:
            for condition in conditions:
                key = (condition.env_name, condition.perturbation, float(condition.severity))
                finished = [done[(*key, s)] for s in seeds if (*key, s) in done]
                todo = [s for s in seeds if (*key, s) not in done]
                task = bar.add_task(f"{condition.env_name} {condition.label}", total=len(seeds), completed=len(finished),
                                    rate=_rate(finished))

                def on_record(record: EpisodeRecord, _finished=finished, _task=task, _key=key) -> None:
                    line = writer.write(record)
                    done[(*_key, record.seed)] = line
                    _finished.append(line)
                    bar.update(_task, completed=len(_finished), rate=_rate(_finished))

                video_seeds = set(seeds[: eval_cfg.video_episodes]) & set(todo)
                run_condition(runner, condition, todo, max_steps, cfg.policy.replan_every or cfg.policy.chunk, workers, on_record,
                              video_seeds, lambda seed, frames, _c=condition: _save_video(out_dir, _c, seed, frames, tb))
    finally:
        writer.close()
    records = [done[(c.env_name, c.perturbation, float(c.severity), s)] for c in conditions for s in seeds]
    rows = summarize(records)
    timings = timing(records)
    write_summary(out_dir, rows, {"checkpoint_name": Path(checkpoint).name, "env": cfg.env.name,
                                  "episodes_per_condition": eval_cfg.episodes, "first_seed": eval_cfg.seed,
                                  "versions": meta["versions"]}, timings)
    for row in rows:
        label = row["perturbation"] if row["perturbation"] == "clean" else f"{row['perturbation']}@{row['severity']:g}"
        if len(tasks) > 1:  # a suite: one tag group per task and one for the pooled row
            label = f"{_slug(row['task'])}/{label}"
        for metric in ("success_rate", "ci95_low", "ci95_high", "mean_steps", "tokens_per_image", "tokens_min", "tokens_max",
                       "policy_gflops"):
            tb.add_scalar(f"eval/{label}/{metric}", row[metric], 0)
        if row["drop_vs_clean"] is not None and row["perturbation"] != "clean":
            tb.add_scalar(f"eval/{label}/drop_vs_clean", row["drop_vs_clean"], 0)
    tb.close()
    Console().print(render_table(rows, timings, f"{cfg.env.name}: {Path(checkpoint).name or 'policy'}"))
    return rows


def _rate(records: list[dict[str, Any]]) -> str:
    if not records:
        return "-"
    return f"{sum(bool(r['success']) for r in records) / len(records):.0%}"
