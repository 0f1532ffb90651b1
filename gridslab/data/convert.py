"""Convert demonstrations between LeRobot datasets and HDF5 files (ours or LIBERO's), both ways.

    python -m gridslab.data.convert data/robosuite_Lift_84px.hdf5 data/lift_lerobot       # HDF5 -> LeRobot v3.0
    python -m gridslab.data.convert a_demo.hdf5 b_demo.hdf5 out --version v2.1 --fps 20   # several tasks, one dataset
    python -m gridslab.data.convert data/lift_lerobot data/lift_hdf5                      # LeRobot -> HDF5, one file per task

The output format is the other one by default (``--format`` picks it; LeRobot -> LeRobot
rewrites a dataset in another ``--version``). HDF5 files are read in our layout
(``envs.hdf5_format``) or LIBERO's (``envs.libero_format``: frames right side up, proprio as
the env's 9-d vector) and written in ours, which training reads. Cameras and vectors map
to LeRobot features by ``--keys`` (training's ``data.lerobot_keys`` defaults). Per-step
rewards, dones and MuJoCo states travel as ``next.reward``, ``next.done`` and
``observation.environment_state``; each source file's and demo's attributes go to
``meta/gridslab_sources.json`` (LeRobot ignores it), so HDF5 -> LeRobot -> HDF5 gives back
the same files: everything exact but the frames, which MP4 (yuv420p) changes slightly
(``tests/test_lerobot.py`` bounds the mean absolute error). Writing HDF5 from a foreign
LeRobot dataset: files grouped by task, rewards 0, the last step done, no MuJoCo states ([T, 0]);
``obs/ee_pos``, ``ee_ori``, ``gripper_states`` are slices 0:3, 3:7, 7:9 of the proprio vector, as
``write_demo`` cuts the env's 9-d one (training reads ``obs/proprio`` only).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from envs import hdf5_format, libero_format
from envs.hdf5_format import demo_keys, write_demo, write_file_attrs
from gridslab.config.schema import LEROBOT_KEYS
from gridslab.data.lerobot_format import (
    CAMERA_PREFIX,
    VIDEO_CODECS,
    WRITE_VERSIONS,
    LeRobotReader,
    camera_key,
    is_lerobot_dataset,
    iter_episodes,
    write_lerobot,
)
from gridslab.errors import UserError, run_cli

FORMATS = ("lerobot", "hdf5")
EXTRAS = {"rewards": "next.reward", "dones": "next.done", "states": "observation.environment_state"}
SOURCES_PATH = "meta/gridslab_sources.json"
DEFAULT_FPS = 20  # robosuite's and LIBERO's control frequency, Hz


def _plain(value: Any) -> Any:
    """An HDF5 attribute as JSON data (arrays as lists, numpy scalars as Python ones)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.item() if isinstance(value, np.generic) else value


def _hdf5_cameras(obs: h5py.Group, libero: bool) -> list[str]:
    """Camera names of a demo's ``obs`` group (LIBERO's file names mapped to the env's)."""
    inverse = {key: camera for camera, key in libero_format.IMAGE_KEYS.items()} if libero else {}
    suffix = hdf5_format.IMAGE_SUFFIX
    return [inverse.get(key, key[: -len(suffix)]) for key in sorted(obs) if key.endswith(suffix)]


def count_hdf5(paths: list[Path]) -> int:
    """Demos in ``paths``; a missing or foreign file fails with one line."""
    total = 0
    for path in paths:
        if not path.is_file():
            raise UserError(f"missing HDF5 file {path}")
        try:
            with h5py.File(path, "r") as f:
                if "data" not in f:
                    raise UserError(f"{path} is not a demonstration file: no 'data' group")
                total += len(demo_keys(f["data"]))
        except OSError as err:
            raise UserError(f"{path} is not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    return total


def iter_hdf5(paths: list[Path], sources: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every demo of ``paths`` (our layout or LIBERO's) as an episode dict (``lerobot_format``'s:
    images, proprio, actions, instruction, extras); appends one record per file to ``sources``
    (its name, attributes, and each demo's group name and attributes)."""
    for path in paths:
        with h5py.File(path, "r") as f:
            data = f["data"]
            libero = "instruction" not in data.attrs
            layout = libero_format if libero else hdf5_format
            instruction = layout.read_instruction(data, path)
            record = {"file": path.name, "attrs": {k: _plain(v) for k, v in data.attrs.items()}, "demos": []}
            sources.append(record)
            for key in demo_keys(data):
                demo = data[key]
                for needed in ("obs", "actions"):
                    if needed not in demo:
                        raise UserError(f"{path}:{key} lacks '{needed}'; expected obs/<camera>_rgb, obs/proprio, actions")
                obs = demo["obs"]
                kinds = {"rewards": np.float32, "dones": bool, "states": np.float64}
                extras = {EXTRAS[name]: demo[name][:].astype(kind) for name, kind in kinds.items() if name in demo}
                record["demos"].append({"name": key, "attrs": {k: _plain(v) for k, v in demo.attrs.items()}})
                yield {
                    "images": {camera: layout.read_images(obs, camera, path) for camera in _hdf5_cameras(obs, libero)},
                    "proprio": layout.read_proprio(obs, path),
                    "actions": demo["actions"][:].astype(np.float32),
                    "instruction": instruction,
                    "extras": {k: v for k, v in extras.items() if v.size},
                }


def _recorded_fps(path: Path) -> int | None:
    """The frame rate a file converted from LeRobot records in its ``collector`` attribute."""
    with h5py.File(path, "r") as f:
        collector = json.loads(f["data"].attrs.get("collector", "{}"))
    return collector.get("fps") if isinstance(collector, dict) else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:80] or "task"


def write_hdf5(
    dst: Path, episodes: Iterator[dict[str, Any]], sources: list[dict[str, Any]] | None, origin: Path, fps: int
) -> list[Path]:
    """Write ``episodes`` as HDF5 files in our layout under the directory ``dst`` (or into the file
    ``dst`` when it ends in .hdf5 and there is one file to write), each episode as it comes: the
    source files again when ``sources`` (``meta/gridslab_sources.json`` of ``origin``) says which
    episodes came from which, else one file per task (``fps`` recorded in its ``collector``
    attribute, where a conversion back to LeRobot finds it). Returns the files written."""
    owners = [(s, d) for s in sources or [] for d in s["demos"]]  # (file record, demo record) per episode
    files: dict[str, h5py.File] = {}
    steps: dict[str, int] = {}
    task_files: dict[str, str] = {}
    try:
        for index, episode in enumerate(episodes):
            task = episode["instruction"]
            if sources:
                if index >= len(owners):
                    raise UserError(f"{origin / SOURCES_PATH} lists {len(owners)} demos but the dataset holds more episodes")
                record, demo = owners[index]
                name = record["file"]
            else:
                record, demo = None, None
                name = task_files.setdefault(task, f"{len(task_files):02d}_{_slug(task)}.hdf5")
            if name not in files:
                collector = {"converted_from": f"LeRobot dataset {origin.name}", "fps": fps}
                files[name] = _create_hdf5(dst, name, len(files), record, task, f"lerobot/{origin.name}", collector)
                steps[name] = 0
            data = files[name]["data"]
            count = len(demo_keys(data))
            _write_episode(
                data.create_group(demo["name"] if demo else f"demo_{count}"), episode, demo["attrs"] if demo else {}, count
            )
            steps[name] += len(episode["actions"])
    finally:
        for name, handle in files.items():
            if not sources:
                handle["data"].attrs["total"] = steps[name]
            handle.close()
    return [dst if dst.suffix == ".hdf5" else dst / name for name in files]


def _create_hdf5(
    dst: Path, name: str, count: int, record: dict[str, Any] | None, instruction: str, env_name: str, collector: dict
) -> h5py.File:
    """The HDF5 file ``name`` for one source file or task (the ``count``-th), its ``data``
    attributes set: the source file's (``record``), else ``write_file_attrs``' (``env_name``, ``collector``)."""
    if dst.suffix == ".hdf5" and count:
        raise UserError(f"{dst} is one file but the source holds more than one task or file; give a directory")
    path = dst if dst.suffix == ".hdf5" else dst / name
    if path.exists():
        raise UserError(f"{path} exists; choose a new destination")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = h5py.File(path, "w")
    data = handle.create_group("data")
    if record is None:
        write_file_attrs(data, env_name, {}, instruction, collector)
    else:
        for key, value in record["attrs"].items():
            data.attrs[key] = value
    data.attrs["instruction"] = instruction  # our layout's instruction (LIBERO sources lack it)
    return handle


def _write_episode(group: h5py.Group, episode: dict[str, Any], attrs: dict[str, Any], index: int) -> None:
    """One episode into a ``demo_<i>`` group through ``envs.hdf5_format.write_demo``, then ``attrs``."""
    steps = len(episode["actions"])
    extras = episode.get("extras", {})
    dones = np.zeros(steps, dtype=np.uint8)
    dones[-1] = 1
    cameras = tuple(episode["images"])
    write_demo(
        group,
        {
            "obs": [
                {"images": {c: episode["images"][c][t] for c in cameras}, "proprio": episode["proprio"][t]} for t in range(steps)
            ],
            "actions": list(episode["actions"]),
            "rewards": list(extras.get(EXTRAS["rewards"], np.zeros(steps, np.float32))),
            "dones": list(extras.get(EXTRAS["dones"], dones)),
            "states": list(extras.get(EXTRAS["states"], np.zeros((steps, 0)))),
        },
        cameras,
        seed=int(attrs.get("seed", index)),
    )
    for key, value in attrs.items():
        group.attrs[key] = value


def _parse_keys(text: str) -> dict[str, str]:
    """``--keys agentview=observation.images.image,proprio=observation.state`` over the defaults."""
    keys = dict(LEROBOT_KEYS)
    for pair in filter(None, text.split(",")):
        if "=" not in pair:
            raise UserError(f"--keys entry {pair!r} is not NAME=FEATURE (e.g. agentview=observation.images.image)")
        name, feature = pair.split("=", 1)
        keys[name.strip()] = feature.strip()
    return keys


def _counted(episodes: Iterator[dict[str, Any]], bar: Any, task: Any) -> Iterator[dict[str, Any]]:
    """``episodes``, advancing the progress bar after each."""
    for episode in episodes:
        yield episode
        bar.advance(task)


def convert(
    sources: list[Path],
    dst: Path,
    output: str | None = None,
    version: str = "v3.0",
    fps: int | None = None,
    keys: dict[str, str] | None = None,
    codec: str = "libx264",
    crf: int = 10,
    progress: bool = True,
) -> list[Path]:
    """Convert ``sources`` (one LeRobot directory, or HDF5 files) into ``dst`` in ``output``
    ("lerobot" or "hdf5"; default: the other format). Returns what was written."""
    keys = dict(keys or LEROBOT_KEYS)
    from_lerobot = len(sources) == 1 and sources[0].is_dir()
    if any(s.is_dir() for s in sources) and not from_lerobot:
        raise UserError("give one LeRobot dataset directory, or HDF5 files, as the source (not both)")
    output = output or ("hdf5" if from_lerobot else "lerobot")
    if output not in FORMATS:
        raise UserError(f"unknown output format {output!r}; valid: {', '.join(FORMATS)}")
    records: list[dict[str, Any]] = []
    if from_lerobot:
        if not is_lerobot_dataset(sources[0]):
            raise UserError(f"{sources[0]} is not a LeRobot dataset: missing {sources[0] / 'meta/info.json'}")
        reader = LeRobotReader(sources[0])
        inverse = {feature: name for name, feature in keys.items()}
        cameras = {inverse.get(k, k.removeprefix(CAMERA_PREFIX)): k for k in reader.camera_keys()}
        stored = sources[0] / SOURCES_PATH
        records = json.loads(stored.read_text()) if stored.exists() else []
        total, fps = len(reader.episodes), fps or int(reader.fps)
        episodes = iter_episodes(reader, cameras, keys["proprio"], keys["actions"], extras=EXTRAS.values())
    else:
        total = count_hdf5(sources)
        fps = fps or _recorded_fps(sources[0])
        episodes = iter_hdf5(sources, records)
        cameras = None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]convert[/] {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    label = f"{sources[0].name if len(sources) == 1 else f'{len(sources)} files'} -> {dst.name}"
    with Progress(*columns, disable=not progress, transient=False) as bar:
        counted = _counted(episodes, bar, bar.add_task(label, total=total))
        if output == "hdf5":
            return write_hdf5(dst, counted, records if from_lerobot else None, sources[0], fps or DEFAULT_FPS)
        first = next(counted, None)
        if first is None:
            raise UserError(f"no demos in {', '.join(map(str, sources))}")
        cameras = cameras or {camera: camera_key(keys, camera) for camera in first["images"]}
        written = write_lerobot(
            dst,
            itertools.chain([first], counted),
            fps or DEFAULT_FPS,
            cameras,
            keys["proprio"],
            keys["actions"],
            version,
            codec,
            crf,
        )
    if records:
        (dst / SOURCES_PATH).write_text(json.dumps(records, indent=1))
    return [written]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Convert demonstrations between LeRobot datasets and HDF5, both ways.")
    parser.add_argument(
        "paths", nargs="+", type=Path, help="SRC [SRC ...] DST: one LeRobot directory or HDF5 files, then the output"
    )
    parser.add_argument("--format", choices=FORMATS, default=None, help="output format (default: the other one)")
    parser.add_argument("--version", choices=WRITE_VERSIONS, default="v3.0", help="LeRobot layout to write")
    parser.add_argument(
        "--fps",
        type=int,
        default=None,
        help=f"frames per second when writing LeRobot (default: the source's; {DEFAULT_FPS} for HDF5 that records none)",
    )
    parser.add_argument("--keys", default="", help="NAME=FEATURE pairs: cameras, proprio, actions (default: data.lerobot_keys')")
    parser.add_argument("--codec", choices=list(VIDEO_CODECS), default="libx264", help="MP4 video encoder")
    parser.add_argument("--crf", type=int, default=10, help="libx264 quality (0 = best, 51 = worst)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (read by envs.errors.run_cli)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m gridslab.data.convert SRC [SRC ...] DST ...``: convert, then print what was written."""
    args = build_parser().parse_args(argv)
    if len(args.paths) < 2:
        raise UserError("give a source and a destination: python -m gridslab.data.convert SRC [SRC ...] DST")
    *sources, dst = args.paths
    written = convert(
        sources, dst, args.format, args.version, args.fps, _parse_keys(args.keys), args.codec, args.crf, not args.no_progress
    )
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    run_cli(main)
