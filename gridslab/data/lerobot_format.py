"""LeRobot datasets in a local directory: their layout, read (``read_episodes``) and written
(``write_lerobot``). Layouts as LeRobot's ``datasets/utils.py`` defines them:

v2.0 / v2.1, one file per episode (``episode_chunk = episode_index // chunks_size``):
    meta/info.json        codebase_version, fps, chunks_size, features {key: {dtype, shape,
                          names, info}}, data_path, video_path (the templates below)
    meta/episodes.jsonl   one {"episode_index", "tasks": [str], "length"} per line
    meta/tasks.jsonl      one {"task_index", "task"} per line
    meta/episodes_stats.jsonl (v2.1) one {"episode_index", "stats": {key: {min, max, mean, std, count}}} per line
    data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet
    videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4
v3.0, many episodes per file:
    meta/info.json        as above; data_path data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet,
                          video_path videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4
    meta/episodes/chunk-{c:03d}/file-{f:03d}.parquet  one row per episode: episode_index, tasks,
                          length, data/chunk_index, data/file_index, dataset_from_index,
                          dataset_to_index (global frame rows [from, to)), videos/{key}/chunk_index,
                          videos/{key}/file_index, videos/{key}/from_timestamp, videos/{key}/to_timestamp
                          (seconds: the episode's span inside the concatenated MP4)
    meta/tasks.parquet    task_index, task (pandas index)
    meta/stats.json       {key: {min, max, mean, std, count}}
A parquet row is one frame: each non-video feature (fixed-length float lists such as
``observation.state`` [D] and ``action`` [A]; shape [1] features as scalars), ``timestamp``
(float32 seconds from the episode start), ``frame_index``, ``episode_index``, ``index`` (global)
and ``task_index``. A "video" feature's frame for a row is the MP4 frame at the row's timestamp
(+ ``from_timestamp`` in v3.0), matched to the nearest decoded frame within half a frame
period; an "image" feature holds an encoded PNG/JPEG per row (``{bytes, path}``).

Frames come back uint8 ``[T, S, S, 3]``: resized, when ``image_size`` asks for another size,
to ``S x S`` pixels by area averaging (libswscale's AREA for video, PIL's BOX for images), the
aspect ratio not kept (the envs render square images); as stored (no flip) otherwise.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gridslab.errors import UserError

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")
INFO_PATH = "meta/info.json"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CHUNKS_SIZE = 1000  # LeRobot's files per chunk folder
FRAME_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CAMERA_PREFIX = "observation.images."
SEEK_AHEAD_S = 2.0  # a requested frame further ahead than this seeks instead of decoding through


def is_lerobot_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory holding ``meta/info.json``."""
    return Path(path).is_dir() and (Path(path) / INFO_PATH).exists()


def camera_key(keys: dict[str, str], camera: str) -> str:
    """The LeRobot feature holding ``camera``'s frames: ``keys[camera]`` or ``observation.images.<camera>``."""
    return keys.get(camera) or f"{CAMERA_PREFIX}{camera}"


def _json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise UserError(f"missing LeRobot file {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_parquet(path: Path, columns: list[str] | None = None) -> pa.Table:
    """The table at ``path``: only those of ``columns`` it has (all when None)."""
    if not path.exists():
        raise UserError(f"missing LeRobot file {path}")
    if columns is not None:
        names = set(pq.read_schema(path).names)
        columns = [c for c in columns if c in names]
    return pq.read_table(path, columns=columns)


def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json`` of the dataset at ``root``; an unknown ``codebase_version`` fails with one line."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"LeRobot dataset {root} is not a directory (give the folder that holds meta/info.json)")
    path = root / INFO_PATH
    if not path.exists():
        raise UserError(f"{root} is not a LeRobot dataset: missing {path}")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err})") from None
    version = info.get("codebase_version")
    if version not in SUPPORTED_VERSIONS:
        raise UserError(f"{path}: unsupported LeRobot codebase_version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}")
    return info


def _column(table: pa.Table, key: str) -> np.ndarray:
    """A feature column as ``[T, ...]``: list columns stacked to ``[T, D]``, scalars as ``[T]``."""
    column = table.column(key).combine_chunks()
    if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) or pa.types.is_large_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False)


class _VideoFile:
    """One MP4 read forward: the frames nearest to requested times (seconds), seeking when a
    request lies behind the last frame or far ahead of it."""

    def __init__(self, path: Path, fps: float):
        import av

        if not path.exists():
            raise UserError(f"missing LeRobot video {path}")
        self.av, self.path, self.tolerance = av, path, 0.5 / fps
        self.container = None
        self.position: float | None = None  # time of the last frame handed out

    def _open(self, start: float) -> None:
        if self.container is not None:
            self.container.close()
        self.container = self.av.open(str(self.path))
        stream = self.container.streams.video[0]
        stream.thread_type = "AUTO"
        if start > 0:
            self.container.seek(int(start / stream.time_base), stream=stream, backward=True)  # the key frame at or before
        self.frames = self.container.decode(stream)
        self.pending = None

    def read(self, times: np.ndarray, size: int | None) -> np.ndarray:
        """Frames at ``times`` [T] (seconds into the file): uint8 ``[T, H, W, 3]`` (``size`` x ``size`` when given)."""
        start = float(times[0])
        if self.position is None or start < self.position - self.tolerance or start > self.position + SEEK_AHEAD_S:
            self._open(start)
        resize = {"width": size, "height": size, "interpolation": "AREA"} if size else {}
        frames = []
        for wanted in times:
            while True:
                if self.pending is None:
                    self.pending = next(self.frames, None)
                    if self.pending is None:
                        raise UserError(f"{self.path} ends before {wanted:.3f} s, a timestamp its episodes' rows ask for")
                if self.pending.time < wanted - self.tolerance:
                    self.pending = None
                    continue
                if self.pending.time > wanted + self.tolerance:
                    raise UserError(f"{self.path} has no frame at {wanted:.3f} s (next frame at {self.pending.time:.3f} s)")
                break
            frames.append(self.pending.to_ndarray(format="rgb24", **resize))
            self.position = float(self.pending.time)
        return np.stack(frames)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()


def _decode_images(cells: list[dict[str, Any]], root: Path, size: int | None) -> np.ndarray:
    """An "image" feature's encoded frames ``[{bytes, path}]`` -> uint8 ``[T, H, W, 3]``."""
    from PIL import Image

    frames = []
    for cell in cells:
        source = io.BytesIO(cell["bytes"]) if cell.get("bytes") else root / str(cell.get("path"))
        image = Image.open(source).convert("RGB")
        if size and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BOX)
        frames.append(np.asarray(image, dtype=np.uint8))
    return np.stack(frames)


class LeRobotReader:
    """A local LeRobot dataset (any of ``SUPPORTED_VERSIONS``): its info, tasks, episodes' metadata
    and, per episode, its frame rows and camera frames."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.info = read_info(self.root)
        self.version = self.info["codebase_version"]
        self.fps = float(self.info["fps"])
        self.features: dict[str, dict[str, Any]] = self.info["features"]
        if self.version == "v3.0":
            table = _read_parquet(self.root / "meta/tasks.parquet")
            names = table.column("task" if "task" in table.column_names else "__index_level_0__").to_pylist()
            self.tasks = dict(zip(table.column("task_index").to_pylist(), names))
            files = sorted((self.root / "meta/episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise UserError(f"missing LeRobot episode metadata: no {self.root / 'meta/episodes/chunk-*/file-*.parquet'}")
            tables = [pq.read_table(f) for f in files]
            columns = [c for c in tables[0].column_names if not c.startswith("stats/")]
            self.episodes = [row for t in tables for row in t.select(columns).to_pylist()]
        else:
            self.tasks = {row["task_index"]: row["task"] for row in _json_lines(self.root / "meta/tasks.jsonl")}
            self.episodes = _json_lines(self.root / "meta/episodes.jsonl")
        self.episodes.sort(key=lambda e: e["episode_index"])
        self._tables: dict[tuple[Path, tuple[str, ...]], pa.Table] = {}
        self._videos: dict[Path, _VideoFile] = {}

    def feature(self, key: str, role: str) -> dict[str, Any]:
        """Feature ``key``'s spec; a missing one fails naming the dataset's features and the config key."""
        if key not in self.features:
            names = ", ".join(k for k in self.features if k not in FRAME_COLUMNS)
            raise UserError(
                f"LeRobot dataset {self.root} has no feature {key!r} (for {role}); its features: {names}; "
                f"map one with data.lerobot_keys.{role}=KEY"
            )
        return self.features[key]

    def camera_keys(self) -> list[str]:
        """Features holding frames ("video" or "image"), in info.json order."""
        return [k for k, spec in self.features.items() if spec.get("dtype") in ("video", "image")]

    def _path(self, template_key: str, default: str, **fields: Any) -> Path:
        template = self.info.get(template_key) or default
        return self.root / template.format(**fields)

    def rows(self, episode: dict[str, Any], columns: list[str]) -> pa.Table:
        """The episode's frame rows (``columns`` + timestamp, task_index), sorted by frame_index."""
        index = int(episode["episode_index"])
        wanted = list(dict.fromkeys([*columns, "timestamp", "frame_index", "episode_index", "task_index"]))
        if self.version == "v3.0":
            path = self._path(
                "data_path", V3_DATA_PATH, chunk_index=episode["data/chunk_index"], file_index=episode["data/file_index"]
            )
            if (path, tuple(wanted)) not in self._tables:  # one file at a time: episodes are read in order
                self._tables = {(path, tuple(wanted)): _read_parquet(path, wanted)}
            table = self._tables[(path, tuple(wanted))]
        else:
            chunk = index // int(self.info.get("chunks_size", CHUNKS_SIZE))
            path = self._path("data_path", V2_DATA_PATH, episode_chunk=chunk, episode_index=index)
            table = _read_parquet(path, wanted)
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise UserError(f"{path} lacks the column(s) {', '.join(missing)}; it holds: {', '.join(pq.read_schema(path).names)}")
        if self.version == "v3.0":
            table = table.filter(pc.equal(table.column("episode_index"), index))
        return table.select(wanted).sort_by("frame_index")

    def frames(self, episode: dict[str, Any], key: str, rows: pa.Table, size: int | None) -> np.ndarray:
        """Feature ``key``'s frames for the episode's ``rows``: uint8 ``[T, H, W, 3]``."""
        if self.features[key]["dtype"] == "image":
            return _decode_images(rows.column(key).to_pylist(), self.root, size)
        index = int(episode["episode_index"])
        if self.version == "v3.0":
            fields = {"chunk_index": episode[f"videos/{key}/chunk_index"], "file_index": episode[f"videos/{key}/file_index"]}
            path, offset = (
                self._path("video_path", V3_VIDEO_PATH, video_key=key, **fields),
                float(episode[f"videos/{key}/from_timestamp"]),
            )
        else:
            chunk = index // int(self.info.get("chunks_size", CHUNKS_SIZE))
            path, offset = self._path("video_path", V2_VIDEO_PATH, video_key=key, episode_chunk=chunk, episode_index=index), 0.0
        if path not in self._videos:
            self._videos[path] = _VideoFile(path, self.fps)
        return self._videos[path].read(offset + _column(rows, "timestamp").astype(np.float64), size)

    def close(self) -> None:
        for video in self._videos.values():
            video.close()
        self._videos = {}


def iter_episodes(
    reader: LeRobotReader,
    cameras: dict[str, str],
    proprio: str,
    actions: str,
    limit: int | None = None,
    image_size: int | None = None,
    extras: Iterable[str] = (),
) -> Iterator[dict[str, Any]]:
    """``reader``'s episodes one at a time, in episode order: the first ``limit`` of each task
    (all when None). ``cameras``: {camera name: feature key}; ``proprio`` / ``actions``: feature
    keys; ``extras``: further per-frame features to return when the dataset has them.

    Each episode: ``images`` {camera: uint8 [T, S, S, 3]}, ``proprio`` float32 [T, D],
    ``actions`` float32 [T, A], ``instruction`` (the task of its rows' task_index),
    ``episode_index`` and ``extras`` {key: [T] or [T, D] as stored}. Closes ``reader`` at the end.
    """
    for role, key in [*cameras.items(), ("proprio", proprio), ("actions", actions)]:
        reader.feature(key, role)
    present = [key for key in extras if key in reader.features]
    tabular = [proprio, actions, *present, *(k for k in cameras.values() if reader.features[k]["dtype"] == "image")]
    taken: dict[str, int] = {}
    try:
        for episode in reader.episodes:
            task = str((episode.get("tasks") or [""])[0])
            if limit is not None and taken.get(task, 0) >= limit:
                continue
            taken[task] = taken.get(task, 0) + 1
            rows = reader.rows(episode, tabular)
            task_index = int(rows.column("task_index")[0].as_py())
            if task_index not in reader.tasks:
                raise UserError(
                    f"{reader.root}: episode {episode['episode_index']} has task_index {task_index}, not in its tasks table"
                )
            yield {
                "images": {camera: reader.frames(episode, key, rows, image_size) for camera, key in cameras.items()},
                "proprio": _column(rows, proprio).astype(np.float32),
                "actions": _column(rows, actions).astype(np.float32),
                "instruction": str(reader.tasks[task_index]),
                "episode_index": int(episode["episode_index"]),
                "extras": {key: _column(rows, key) for key in present},
            }
    finally:
        reader.close()


def read_episodes(root: Path, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every episode ``iter_episodes`` gives (same further arguments) for the dataset at ``root``;
    none fails with one line."""
    episodes = list(iter_episodes(LeRobotReader(root), *args, **kwargs))
    if not episodes:
        raise UserError(f"LeRobot dataset {root} holds no episodes")
    return episodes


VIDEO_CODECS = {"libx264": "h264", "mpeg4": "mpeg4"}  # encoder -> codec name info.json records
WRITE_VERSIONS = ("v2.1", "v3.0")
PIX_FMT = "yuv420p"  # what LeRobot writes and every player decodes; needs even frame sizes
MPEG4_BIT_RATE = 20_000_000  # bits/s: near-lossless for small frames
STATS_FRAMES = 100  # frames per episode that image statistics sample
STATS_SIDE = 64  # pixels per side that image statistics sample


class _VideoWriter:
    """Frames appended to one MP4 at ``fps``: frame i at ``i / fps`` seconds."""

    def __init__(self, path: Path, fps: int, codec: str, crf: int, height: int, width: int):
        import av

        self.av = av
        path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, PIX_FMT
        if codec == "libx264":
            self.stream.options = {"crf": str(crf)}
        else:
            self.stream.bit_rate = MPEG4_BIT_RATE
        self.fps, self.count = fps, 0

    def append(self, frames: np.ndarray) -> tuple[float, float]:
        """Encode uint8 ``[T, H, W, 3]``; returns their span ``(from, to)`` in seconds."""
        start = self.count
        for frame in frames:
            encoded = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            encoded.pts = self.count
            self.container.mux(self.stream.encode(encoded))
            self.count += 1
        return start / self.fps, self.count / self.fps

    def close(self) -> None:
        self.container.mux(self.stream.encode())
        self.container.close()


def feature_stats(values: np.ndarray, image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot's stats of ``values`` [N, ...]: min, max, mean, std per dimension ([D]), or per
    channel of frames [N, H, W, 3] scaled to [0, 1] ([3, 1, 1]) over a sample, as LeRobot
    takes it (at most ``STATS_FRAMES`` evenly spaced frames, every k-th pixel so a side is
    at most ``STATS_SIDE``); count [1] = N."""
    if image:
        step = max(1, max(values.shape[1:3]) // STATS_SIDE)
        sampled = values[:: max(1, len(values) // STATS_FRAMES), ::step, ::step]
        flat, shape = np.ascontiguousarray(sampled.reshape(-1, 3).T, dtype=np.float32) / 255, (3, 1, 1)  # [3, pixels]
    else:
        flat, shape = np.ascontiguousarray(values.reshape(len(values), -1).T, dtype=np.float64), (-1,)  # [D, N]
    return {
        "min": flat.min(1).reshape(shape),
        "max": flat.max(1).reshape(shape),
        "mean": flat.mean(1).reshape(shape),
        "std": flat.std(1).reshape(shape),
        "count": np.array([len(values)]),
    }


def aggregate_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The stats of the union of the parts (count-weighted mean, pooled variance)."""
    counts = np.array([p["count"][0] for p in parts], dtype=np.float64)
    weights = (counts / counts.sum()).reshape(-1, *([1] * parts[0]["mean"].ndim))
    means = np.stack([p["mean"] for p in parts])
    mean = (weights * means).sum(0)
    variance = (weights * (np.stack([p["std"] for p in parts]) ** 2 + (means - mean) ** 2)).sum(0)
    return {
        "min": np.min([p["min"] for p in parts], 0),
        "max": np.max([p["max"] for p in parts], 0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())]),
    }


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {key: {name: value.tolist() for name, value in entry.items()} for key, entry in stats.items()}


def _arrow(values: np.ndarray) -> pa.Array:
    """``[T]`` -> a scalar column; ``[T, D]`` -> a fixed-size list column (LeRobot's ``Sequence(length=D)``)."""
    if values.ndim == 1:
        return pa.array(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _feature_spec(values: np.ndarray, version: str, fps: int) -> dict[str, Any]:
    spec = {"dtype": str(values.dtype), "shape": [1] if values.ndim == 1 else list(values.shape[1:]), "names": None}
    return {**spec, "fps": fps} if version == "v3.0" else spec


def tasks_parquet(tasks: dict[str, int]) -> pa.Table:
    """``meta/tasks.parquet``'s table: columns task_index, task, with the pandas metadata that makes
    ``task`` the index (as ``pandas.DataFrame.to_parquet`` writes it, what LeRobot reads)."""
    table = pa.table({"task_index": pa.array(list(tasks.values()), pa.int64()), "task": pa.array(list(tasks), pa.string())})
    pandas = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})


def write_lerobot(
    root: Path,
    episodes: Iterable[dict[str, Any]],
    fps: int,
    cameras: dict[str, str],
    proprio: str = "observation.state",
    actions: str = "action",
    version: str = "v3.0",
    codec: str = "libx264",
    crf: int = 10,
    robot_type: str | None = None,
) -> Path:
    """Write ``episodes`` (``read_episodes``' dicts: images, proprio, actions, instruction, extras)
    as a LeRobot dataset at ``root`` (a new directory) in layout ``version``: frames as MP4
    (``codec`` in yuv420p, ``crf`` for libx264), proprio / actions / extras as float columns,
    tasks in order of first appearance, stats. ``cameras``: {camera name: feature key}. All of
    v3.0's data goes to file 000 of chunk 000 (one parquet, one MP4 per camera)."""
    root = Path(root)
    if version not in WRITE_VERSIONS:
        raise UserError(f"cannot write LeRobot codebase_version {version!r}; valid: {', '.join(WRITE_VERSIONS)}")
    if codec not in VIDEO_CODECS:
        raise UserError(f"unknown video codec {codec!r}; valid: {', '.join(VIDEO_CODECS)}")
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root} exists and is not empty; choose a new directory for the LeRobot dataset")
    (root / "meta").mkdir(parents=True, exist_ok=True)
    tasks: dict[str, int] = {}
    features: dict[str, dict[str, Any]] = {}
    writers: dict[str, _VideoWriter] = {}
    tables, metadata, episode_stats = [], [], []
    total = 0
    try:
        for index, episode in enumerate(episodes):
            steps = len(episode["actions"])
            task_index = tasks.setdefault(episode["instruction"], len(tasks))
            columns = {proprio: episode["proprio"], actions: episode["actions"], **episode.get("extras", {})}
            row = {
                "episode_index": index,
                "tasks": [episode["instruction"]],
                "length": steps,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": total,
                "dataset_to_index": total + steps,
            }
            stats = {key: feature_stats(values) for key, values in columns.items() if values.dtype != np.bool_}
            for camera, frames in episode["images"].items():
                key = cameras.get(camera) or f"{CAMERA_PREFIX}{camera}"
                height, width = frames.shape[1:3]
                if height % 2 or width % 2:
                    raise UserError(f"camera {camera}'s frames are {width}x{height} px; MP4 in {PIX_FMT} needs even sizes")
                features.setdefault(key, _video_spec(height, width, fps, codec))
                if version == "v3.0":
                    if key not in writers:
                        writers[key] = _VideoWriter(
                            root / V3_VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0),
                            fps,
                            codec,
                            crf,
                            height,
                            width,
                        )
                    start, end = writers[key].append(frames)
                    row.update(
                        {
                            f"videos/{key}/chunk_index": 0,
                            f"videos/{key}/file_index": 0,
                            f"videos/{key}/from_timestamp": start,
                            f"videos/{key}/to_timestamp": end,
                        }
                    )
                else:
                    writer = _VideoWriter(
                        root / V2_VIDEO_PATH.format(episode_chunk=index // CHUNKS_SIZE, video_key=key, episode_index=index),
                        fps,
                        codec,
                        crf,
                        height,
                        width,
                    )
                    writer.append(frames)
                    writer.close()
                stats[key] = feature_stats(frames, image=True)
            for key, values in columns.items():
                features.setdefault(key, _feature_spec(values, version, fps))
            frame_columns = {
                "timestamp": np.arange(steps, dtype=np.float32) / np.float32(fps),
                "frame_index": np.arange(steps, dtype=np.int64),
                "episode_index": np.full(steps, index, np.int64),
                "index": np.arange(total, total + steps, dtype=np.int64),
                "task_index": np.full(steps, task_index, np.int64),
            }
            table = pa.table({key: _arrow(np.asarray(values)) for key, values in {**columns, **frame_columns}.items()})
            if version == "v3.0":
                tables.append(table)
                row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            else:
                path = root / V2_DATA_PATH.format(episode_chunk=index // CHUNKS_SIZE, episode_index=index)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path)
            metadata.append(row)
            episode_stats.append(stats)
            total += steps
    finally:
        for writer in writers.values():
            writer.close()
    if not metadata:
        raise UserError(f"no episodes to write to {root}")
    video_keys = [key for key, spec in features.items() if spec["dtype"] == "video"]
    for key in FRAME_COLUMNS:
        features[key] = _feature_spec(np.zeros(1, np.float32 if key == "timestamp" else np.int64), version, fps)
    info = {
        "codebase_version": version,
        "robot_type": robot_type,
        "total_episodes": len(metadata),
        "total_frames": total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "fps": fps,
        "splits": {"train": f"0:{len(metadata)}"},
        "data_path": V3_DATA_PATH if version == "v3.0" else V2_DATA_PATH,
        "video_path": (V3_VIDEO_PATH if version == "v3.0" else V2_VIDEO_PATH) if video_keys else None,
        "features": features,
    }
    overall = {key: aggregate_stats([s[key] for s in episode_stats]) for key in episode_stats[0]}
    (root / "meta/stats.json").write_text(json.dumps(_jsonable(overall), indent=2))
    if version == "v3.0":
        info.update({"data_files_size_in_mb": 100, "video_files_size_in_mb": 200})
        data_path = root / V3_DATA_PATH.format(chunk_index=0, file_index=0)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), data_path)
        (root / V3_EPISODES_PATH).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(metadata), root / V3_EPISODES_PATH)
        pq.write_table(tasks_parquet(tasks), root / "meta/tasks.parquet")
    else:
        info.update({"total_chunks": (len(metadata) - 1) // CHUNKS_SIZE + 1, "total_videos": len(metadata) * len(video_keys)})
        lines = [{"episode_index": r["episode_index"], "tasks": r["tasks"], "length": r["length"]} for r in metadata]
        (root / "meta/episodes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for t, i in tasks.items()))
        (root / "meta/episodes_stats.jsonl").write_text(
            "".join(json.dumps({"episode_index": i, "stats": _jsonable(s)}) + "\n" for i, s in enumerate(episode_stats))
        )
    (root / INFO_PATH).write_text(json.dumps(info, indent=4))
    return root


def _video_spec(height: int, width: int, fps: int, codec: str) -> dict[str, Any]:
    info = {
        "video.height": height,
        "video.width": width,
        "video.codec": VIDEO_CODECS[codec],
        "video.pix_fmt": PIX_FMT,
        "video.is_depth_map": False,
        "video.fps": fps,
        "video.channels": 3,
        "has_audio": False,
    }
    return {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"], "info": info}
