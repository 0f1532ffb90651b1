"""Evaluate a policy online: conditions -> rollouts -> results files (what ``evaluate.py`` runs).

Files in the evaluation directory:
    results.jsonl     one line per finished episode, appended and flushed as it finishes (with
                      several ranks each appends to results.rank<r>-of-<n>.jsonl, and rank 0
                      merges them here; ``gridslab.eval.shard``)
    settings.json     what the episodes depend on, the evaluated weights' sha256 included (a
                      resumed run must match it, so re-trained weights never read back old episodes)
    summary.json/csv  success with Wilson 95% CI per condition, drop vs clean (deterministic)
    summary.md        the printed results table (latency included, so not deterministic)
    timing.json       policy latency per step, episode wall time, where the points land
    videos/           MP4s of the first ``video_episodes`` episodes per condition
    tb/               TensorBoard scalars, frame strips and rollout videos (the MP4s' frames)
Re-running the same command resumes: episodes already in any results file are read back,
not re-run, and an episode is never written twice. A video that cannot be saved is skipped
with one warning; its episode's record stands.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from envs.errors import EnvUserError
from envs.hdf5_format import package_versions
from gridslab.config.schema import env_kwargs
from gridslab.errors import UserError
from gridslab.eval.checkpoint import reason, weights_fingerprint
from gridslab.eval.execution import Execution
from gridslab.eval.rollout import (
    Condition,
    EpisodeRecord,
    Job,
    PolicyRunner,
    default_workers,
    record_to_json,
    run_episodes,
)
from gridslab.eval.shard import RESULTS_FILE, Shard, barrier, policy_on_device, process_group, results_paths
from gridslab.eval.summary import render_table, summarize, timing, write_summary
from gridslab.eval.workers import EnvPool
from gridslab.viz import add_video, tile

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
    for spec in specs:
        ood.parse(spec)
    conditions = []
    for name in expand(cfg.env.name):
        conditions.append(Condition(name, kwargs))
        conditions += [Condition(name, kwargs, spec, float(cfg.eval.severity)) for spec in specs]
    return conditions


class ConditionProbe:
    """Builds and resets the first task under every condition on the pool's workers, so a bad
    env setting or a perturbation this env cannot take fails with one line before any file is
    written. Every worker builds one (conditions repeat when workers outnumber them) and keeps it
    for its first episode, so the probe costs no env build of its own and runs while the main
    process prepares the policy: the first round is sent here, ``max_steps()`` waits for it."""

    def __init__(self, pool: EnvPool, conditions: list[Condition], seed: int):
        self.pool, self.seed, self.task = pool, seed, conditions[0].env_name
        firsts = [c for c in conditions if c.env_name == self.task]
        orders = [firsts[i % len(firsts)] for i in range(max(len(pool), len(firsts)))]
        self.rounds = [orders[start : start + len(pool)] for start in range(0, len(orders), len(pool))]
        self._send(self.rounds[0])

    def _send(self, batch: list[Condition]) -> None:
        for index, condition in enumerate(batch):
            self.pool.send(index, "probe", (condition, self.seed))

    def max_steps(self) -> int:
        """The task's episode limit (env steps); raises ``EnvUserError``/``UserError`` (one line)."""
        for number, batch in enumerate(self.rounds):
            if number:
                self._send(batch)
            for index, condition in enumerate(batch):
                result = self.pool.recv(index)
                if isinstance(result.error, EnvUserError):
                    raise result.error
                if result.error is not None:
                    raise UserError(f"{condition.label} cannot run on {self.task} ({reason(result.error)})") from None
        return result.max_steps


SIMULATOR_PACKAGES = ("mujoco", "robosuite", "libero")


def simulator_versions() -> dict[str, str]:
    """Installed versions of the packages that step and render the envs (LIBERO when present)."""
    versions = package_versions()
    return {name: versions[name] for name in SIMULATOR_PACKAGES if name in versions}


def check_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Record what the episodes in ``out_dir`` depend on; refuse to mix other settings in.

    A resumed run must match, or earlier records would be read back as if they were new.
    """
    path = out_dir / SETTINGS_FILE
    if path.exists():
        recorded, wanted = json.loads(path.read_text()), json.loads(json.dumps(settings))
        if recorded != wanted:
            changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
            raise UserError(
                f"{out_dir} holds episodes made with other settings ({', '.join(changed)}); "
                f"pass --out DIR for a new evaluation or delete that folder"
            )
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # ranks may write it at once
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


RecordKey = tuple[str, str, float, int]


def record_key(record: dict[str, Any] | EpisodeRecord) -> RecordKey:
    """(env, perturbation, severity, seed): what identifies one episode of an evaluation."""
    line = record if isinstance(record, dict) else record_to_json(record)
    return line["env"], line["perturbation"], float(line["severity"]), int(line["seed"])


class ResultsWriter:
    """Appends one JSON line per episode and flushes it to disk at once; one line per
    ``record_key`` at most (``records``: every episode in the files, the first line of a key wins).

    A failed write (full disk, ...) stops the evaluation with a ``UserError``: as an ``OSError``
    it would read as a crashed worker in ``run_condition`` and re-run the episode."""

    def __init__(self, path: Path, meta: dict[str, Any], others: list[Path] = ()):
        """``others``: more results files (other ranks' shards) whose episodes count as written."""
        self.path = path
        self.meta = meta
        self.records = self.read_all([path, *(o for o in others if o != path)])
        existing = path.read_bytes() if path.exists() else b""
        self.handle = open(path, "a")
        if existing and not existing.endswith(b"\n"):
            self.handle.write("\n")

    @staticmethod
    def read_all(paths: list[Path]) -> dict[RecordKey, dict[str, Any]]:
        """Every episode of the results files ``paths``, the first line of a key winning."""
        records: dict[RecordKey, dict[str, Any]] = {}
        for path in paths:
            for line in read_records(path):
                records.setdefault(record_key(line), line)
        return records

    def write(self, record: EpisodeRecord) -> bool:
        """Append ``record`` unless its episode is already in the file; True when appended."""
        key = record_key(record)
        if key in self.records:
            return False
        line = {**record_to_json(record), **self.meta}
        try:
            self.handle.write(json.dumps(line, sort_keys=True) + "\n")
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError as err:
            raise UserError(f"cannot write {self.path} ({reason(err)}); finished episodes are kept, re-run to resume") from None
        self.records[key] = line
        return True

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:  # the failed write already raised; a line it cut short is dropped on resume
            pass


def video_path(out_dir: Path, condition: Condition, seed: int) -> Path:
    return out_dir / "videos" / f"{_slug(condition.env_name)}_{condition.label.replace('+', '_')}_seed{seed}.mp4"


def _save_video(out_dir: Path, condition: Condition, seed: int, frames: list[np.ndarray], writer: Any) -> None:
    """MP4 of ``frames`` (first camera, sampled points drawn, ``VIDEO_FPS``) written atomically; to
    TensorBoard at step 0 an 8-frame strip (``rollouts/...``) and the whole video (``rollout_videos/...``)."""
    import imageio.v2 as imageio

    path = video_path(out_dir, condition, seed)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.mp4")
    try:
        imageio.mimwrite(tmp, frames, fps=VIDEO_FPS, macro_block_size=8)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    strip = tile([frames[i] for i in np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)], columns=8)
    name = f"{_slug(condition.env_name)}/{condition.label}/seed{seed}"
    writer.add_image(f"rollouts/{name}", strip, 0, dataformats="HWC")
    add_video(writer, f"rollout_videos/{name}", frames, 0, VIDEO_FPS)


class VideoSaver:
    """``on_video`` for ``run_condition``: saves each video, and turns a failure (full disk,
    missing codec, ...) into one warning per evaluation instead of an exception. The episode's
    record is already written when its video is saved, and an exception reaching the rollout
    loop (an ``OSError`` reads as a crashed worker) would re-run it."""

    def __init__(self, out_dir: Path, writer: Any):
        self.out_dir = out_dir
        self.writer = writer
        self.warned = False

    def __call__(self, condition: Condition, seed: int, frames: list[np.ndarray]) -> None:
        try:
            _save_video(self.out_dir, condition, seed, frames, self.writer)
        except Exception as err:  # noqa: BLE001 - any video failure leaves the results intact
            if not self.warned:
                print(
                    f"warning: video {video_path(self.out_dir, condition, seed)} not saved ({reason(err)}); "
                    "episodes are recorded, later videos may be missing",
                    file=sys.stderr,
                )
                self.warned = True


def _slug(task: str) -> str:
    """``tabletop_spatial/3`` -> ``tabletop_spatial_3``; ``all tasks`` -> ``all_tasks`` (file names, TB tags)."""
    return task.replace("/", "_").replace(" ", "_")


def evaluate_policy(
    policy: Any,
    cfg: DictConfig,
    out_dir: Path,
    checkpoint: str = "",
    progress: bool = True,
    k: int | None = None,
    render_every_step: bool = False,
    shard: Shard | None = None,
) -> list[dict[str, Any]]:
    """Run every condition of ``cfg.eval`` for ``policy``; write the files; return summary rows.

    ``out_dir`` is tied to ``policy``'s weights (``weights_fingerprint``) and the settings
    episodes depend on: re-running with the same ones resumes, other ones are refused.
    ``checkpoint`` only names the weights in the summary and the printed table;
    ``render_every_step`` renders every env step (``run_episodes``; same records, slower);
    ``shard``: this process's rank (default: from torchrun's or SLURM's variables, ``gridslab.eval.shard``):
    it runs its share of the episodes, and rank 0 writes the summary of all of them."""
    shard = shard or Shard.from_environment()
    shard.claim_render_device()
    with process_group(shard), policy_on_device(policy, shard), cpu_threads(cfg.eval.threads):
        return _evaluate(policy, cfg, out_dir, checkpoint, progress, k, render_every_step, shard)


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` (0: left alone) inside, restored after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate(
    policy: Any,
    cfg: DictConfig,
    out_dir: Path,
    checkpoint: str,
    progress: bool,
    k: int | None,
    render_every_step: bool,
    shard: Shard,
) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    conditions = conditions_for(cfg)
    tasks = list(dict.fromkeys(c.env_name for c in conditions))
    eval_cfg = cfg.eval
    seeds = [eval_cfg.seed + i for i in range(eval_cfg.episodes)]
    episodes = [Job(c, s, s in seeds[: eval_cfg.video_episodes]) for c in conditions for s in seeds]
    workers = eval_cfg.workers or default_workers(shard.local_world_size)
    columns = (
        TextColumn("[bold]eval[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("success {task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    # the workers start and build their envs (the probe) while this process prepares the policy
    with EnvPool(max(1, min(workers, len(shard.take(episodes))))) as pool:
        probe = ConditionProbe(pool, conditions, eval_cfg.seed)
        weights = weights_fingerprint(policy)
        runner = PolicyRunner(policy, k=k)
        from torch.utils.tensorboard import SummaryWriter  # its import (about 1 s) overlaps the probe too

        probed_max_steps = probe.max_steps()
        max_steps = eval_cfg.max_steps or probed_max_steps
        out_dir.mkdir(parents=True, exist_ok=True)
        check_settings(
            out_dir,
            {
                "weights": weights,
                # the physics: a MuJoCo / robosuite / LIBERO upgrade changes the episodes
                "simulator": simulator_versions(),
                "env": cfg.env.name,
                "env_kwargs": env_kwargs(cfg.env),
                "max_steps": max_steps,
                "replan_every": cfg.policy.replan_every,
                "chunk": cfg.policy.chunk,
                "compressor": OmegaConf.to_container(cfg.compressor),
                "budget": OmegaConf.to_container(cfg.budget),
                "k": k,
                # absent from folders written before ensembling existed: they all executed chunks
                **(
                    {"execution": eval_cfg.execution, "ensemble_decay": eval_cfg.ensemble_decay}
                    if eval_cfg.execution != "chunk"
                    else {}
                ),
            },
        )
        versions = package_versions()
        writer = ResultsWriter(out_dir / shard.results_file, {"versions": versions}, results_paths(out_dir))
        done = writer.records
        tb = SummaryWriter(str(out_dir / "tb"))
        save_video = VideoSaver(out_dir, tb)
        execution = Execution.from_config(cfg)
        jobs = [job for job in shard.take(episodes) if job.key not in done]
        bars: dict[tuple[str, str, float], tuple[Any, list[dict[str, Any]]]] = {}
        try:
            with Progress(*columns, disable=not progress or shard.rank != 0, console=Console(stderr=True)) as bar:
                for condition in conditions:  # this rank's episodes of each condition
                    key = (condition.env_name, condition.perturbation, float(condition.severity))
                    mine = [job.key for job in shard.take(episodes) if job.key[:3] == key]
                    finished = [done[episode] for episode in mine if episode in done]
                    bars[key] = (
                        bar.add_task(
                            f"{condition.env_name} {condition.label}",
                            total=len(mine),
                            completed=len(finished),
                            rate=_rate(finished),
                        ),
                        finished,
                    )

                def on_record(record: EpisodeRecord) -> None:
                    if writer.write(record):
                        task, finished = bars[record_key(record)[:3]]
                        finished.append(done[record_key(record)])
                        bar.update(task, completed=len(finished), rate=_rate(finished))

                run_episodes(
                    runner,
                    pool,
                    jobs,
                    max_steps,
                    execution,
                    on_record,
                    save_video,
                    render_every_step,
                    eval_cfg.batched_policy,
                )
        finally:
            writer.close()
    barrier(shard)  # every rank's episodes are on disk
    if shard.world_size > 1:
        done = ResultsWriter.read_all(results_paths(out_dir))
    records = [done[job.key] for job in episodes]
    rows = summarize(records)
    if shard.rank != 0:
        tb.close()
        return rows
    timings = timing(records)
    if shard.world_size > 1:
        write_results(out_dir / RESULTS_FILE, records)
    write_summary(
        out_dir,
        rows,
        {
            "checkpoint_name": Path(checkpoint).name,
            "weights_sha256": weights,
            "env": cfg.env.name,
            "episodes_per_condition": eval_cfg.episodes,
            "first_seed": eval_cfg.seed,
            "versions": versions,
        },
        timings,
    )
    for row in rows:
        label = row["perturbation"] if row["perturbation"] == "clean" else f"{row['perturbation']}@{row['severity']:g}"
        if len(tasks) > 1:  # a suite: one tag group per task and one for the pooled row
            label = f"{_slug(row['task'])}/{label}"
        for metric in (
            "success_rate",
            "ci95_low",
            "ci95_high",
            "mean_steps",
            "tokens_per_image",
            "tokens_min",
            "tokens_max",
            "policy_gflops",
        ):
            tb.add_scalar(f"eval/{label}/{metric}", row[metric], 0)
        if row["drop_vs_clean"] is not None and row["perturbation"] != "clean":
            tb.add_scalar(f"eval/{label}/drop_vs_clean", row["drop_vs_clean"], 0)
    tb.close()
    Console().print(render_table(rows, timings, f"{cfg.env.name}: {Path(checkpoint).name or 'policy'}"))
    return rows


def write_results(path: Path, records: list[dict[str, Any]]) -> None:
    """All ``records`` (JSON lines, in evaluation order) into ``path`` at once: the shards merged."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(record, sort_keys=True) + "\n" for record in records))
    os.replace(tmp, path)


def _rate(records: list[dict[str, Any]]) -> str:
    if not records:
        return "-"
    return f"{sum(bool(r['success']) for r in records) / len(records):.0%}"
