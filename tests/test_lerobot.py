"""LeRobot datasets: read v2.1 and v3.0 layouts (fixtures written here by hand with pyarrow
and PyAV, following LeRobot's spec, not by our writer), train on one through ``train.py``,
convert HDF5 <-> LeRobot both ways, and fail on bad input with one line."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from envs.hdf5_format import demo_keys
from envs.libero_format import read_proprio, write_libero_demo_file
from gridslab.config import load_config
from gridslab.config.schema import DataConfig
from gridslab.data.convert import main as convert_main
from gridslab.data.datamodule import load_demos
from gridslab.data.lerobot_format import read_episodes
from gridslab.errors import UserError
from tests.helpers import ROOT, TINY, run_python

FPS = 10
SIDE = 64  # stored frames; training resizes them to TINY's 32 px
TASKS = ["put the bowl on the plate", "open the drawer"]
EPISODES = [(12, 0), (9, 1), (15, 0)]  # (frames, task index)
CAMERAS = {"agentview": "observation.images.image", "robot0_eye_in_hand": "observation.images.image2"}
# MP4 (H.264, yuv420p) changes frames slightly; a frame one step off differs by >= 10 grey levels here
FIXTURE_MAE = 4.0
# HDF5 -> LeRobot -> HDF5 on the 32 px Lift demos (measured: libx264 crf 10 1.86-1.98, mpeg4 2.29-2.52 grey levels)
ROUND_TRIP_MAE = {"libx264": 2.5, "mpeg4": 3.0}


def _frames(episode: int, steps: int, camera: int) -> np.ndarray:
    """Smooth colour gradients, brighter by 10 grey levels each step: uint8 [T, SIDE, SIDE, 3]."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    base = np.stack([x * 2, y * 2, (x + y) + 40 * camera + 20 * episode], -1)
    return np.clip(base[None] + 10 * np.arange(steps)[:, None, None, None], 0, 255).astype(np.uint8)


def _episodes() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "steps": steps,
            "task": task,
            "state": rng.normal(size=(steps, 8)).astype(np.float32),
            "action": rng.uniform(-1, 1, size=(steps, 7)).astype(np.float32),
            "frames": [_frames(index, steps, 0), _frames(index, steps, 1)],
        }
        for index, (steps, task) in enumerate(EPISODES)
    ]


def _mp4(path: Path, clips: list[np.ndarray], codec: str = "libx264") -> list[tuple[float, float]]:
    """yuv420p MP4 at FPS (``codec``: H.264, or AV1 with LeRobot's default settings), clips one
    after another; returns each clip's (from, to) seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spans, count = [], 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        stream.options = {"g": "2", "crf": "30"} if codec == "libsvtav1" else {}
        for clip in clips:
            spans.append((count / FPS, (count + len(clip)) / FPS))
            for frame in clip:
                encoded = av.VideoFrame.from_ndarray(frame, format="rgb24")
                encoded.pts = count
                container.mux(stream.encode(encoded))
                count += 1
        container.mux(stream.encode())
    return spans


def _vector(values: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def _rows(episode: dict, index: int, first: int, image2_png: bool) -> dict[str, pa.Array]:
    steps = episode["steps"]
    rows = {
        "observation.state": _vector(episode["state"]),
        "action": _vector(episode["action"]),
        "timestamp": pa.array(np.arange(steps, dtype=np.float32) / FPS),
        "frame_index": pa.array(np.arange(steps, dtype=np.int64)),
        "episode_index": pa.array(np.full(steps, index, np.int64)),
        "index": pa.array(np.arange(first, first + steps, dtype=np.int64)),
        "task_index": pa.array(np.full(steps, episode["task"], np.int64)),
    }
    if image2_png:
        cells = []
        for frame in episode["frames"][1]:
            encoded = io.BytesIO()
            Image.fromarray(frame).save(encoded, format="PNG")
            cells.append({"bytes": encoded.getvalue(), "path": None})
        rows["observation.images.image2"] = pa.array(cells, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return rows


def _info(version: str, image2: str, **paths) -> dict:
    video = {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "has_audio": False}
    camera = {"shape": [SIDE, SIDE, 3], "names": ["height", "width", "channels"]}
    scalar = {"shape": [1], "names": None}
    features = {
        "observation.images.image": {"dtype": "video", **camera, "info": video},
        "observation.images.image2": {
            "dtype": image2,
            **camera,
            **({"info": {**video, "video.codec": "av1"}} if image2 == "video" else {}),
        },
        "observation.state": {"dtype": "float32", "shape": [8], "names": None},
        "action": {"dtype": "float32", "shape": [7], "names": None},
        **{key: {"dtype": "int64", **scalar} for key in ("frame_index", "episode_index", "index", "task_index")},
        "timestamp": {"dtype": "float32", **scalar},
    }
    frames = sum(steps for steps, _ in EPISODES)
    return {"codebase_version": version, "robot_type": "panda", "total_episodes": len(EPISODES), "total_frames": frames,
            "total_tasks": len(TASKS), "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(EPISODES)}"},
            "features": features, **paths}  # fmt: skip


def write_v21(root: Path, episodes: list[dict]) -> Path:
    """LeRobot v2.1: a parquet and an MP4 per episode (image2 as PNG cells in the parquet), jsonl metadata."""
    info = _info(
        "v2.1",
        "image",
        data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        total_chunks=1,
        total_videos=len(EPISODES),
    )
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(TASKS)))
    lines = [{"episode_index": i, "tasks": [TASKS[e["task"]]], "length": e["steps"]} for i, e in enumerate(episodes)]
    (root / "meta/episodes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    first = 0
    for index, episode in enumerate(episodes):
        path = root / f"data/chunk-000/episode_{index:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(_rows(episode, index, first, image2_png=True)), path)
        _mp4(root / f"videos/chunk-000/observation.images.image/episode_{index:06d}.mp4", [episode["frames"][0]])
        first += episode["steps"]
    return root


def write_v30(root: Path, episodes: list[dict]) -> Path:
    """LeRobot v3.0: episodes 0-1 in data/video file 000, episode 2 in file 001; image2 in AV1
    (LeRobot's default codec); episode metadata in two parquet files; tasks.parquet as pandas
    writes it (task as the index)."""
    info = _info(
        "v3.0",
        "video",
        data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        data_files_size_in_mb=100,
        video_files_size_in_mb=200,
    )
    (root / "meta").mkdir(parents=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    pandas = {
        "index_columns": ["task"],
        "columns": [{"name": "task_index", "field_name": "task_index"}, {"name": "task", "field_name": "task"}],
    }
    tasks = pa.table({"task_index": pa.array(range(len(TASKS)), pa.int64()), "task": TASKS})
    pq.write_table(tasks.replace_schema_metadata({"pandas": json.dumps(pandas)}), root / "meta/tasks.parquet")
    files = [[0, 1], [2]]
    metadata, first = [], 0
    for file_index, members in enumerate(files):
        tables = []
        spans = {
            key: _mp4(
                root / f"videos/{key}/chunk-000/file-{file_index:03d}.mp4",
                [episodes[i]["frames"][c] for i in members],
                "libsvtav1" if key.endswith("image2") else "libx264",
            )
            for c, key in enumerate(CAMERAS.values())
        }
        for position, index in enumerate(members):
            episode = episodes[index]
            tables.append(pa.table(_rows(episode, index, first, image2_png=False)))
            row = {"episode_index": index, "tasks": [TASKS[episode["task"]]], "length": episode["steps"],
                   "data/chunk_index": 0, "data/file_index": file_index,
                   "dataset_from_index": first, "dataset_to_index": first + episode["steps"],
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": index // 2}  # fmt: skip
            for key in CAMERAS.values():
                start, end = spans[key][position]
                row.update({f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": file_index,
                            f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end})  # fmt: skip
            metadata.append(row)
            first += episode["steps"]
        path = root / f"data/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
    for file_index in (0, 1):
        path = root / f"meta/episodes/chunk-000/file-{file_index:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([m for m in metadata if m["meta/episodes/file_index"] == file_index]), path)
    return root


WRITERS = {"v2.1": write_v21, "v3.0": write_v30}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lerobot")
    return {version: write(root / version.replace(".", ""), _episodes()) for version, write in WRITERS.items()}


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int64) - b.astype(np.int64)).mean())


@pytest.mark.parametrize("version", list(WRITERS))
def test_reader_gives_states_actions_exactly_and_frames_within_codec_tolerance(datasets, version):
    expected = _episodes()
    episodes = read_episodes(datasets[version], CAMERAS, "observation.state", "action")
    assert [e["episode_index"] for e in episodes] == [0, 1, 2]
    for got, want in zip(episodes, expected):
        assert np.array_equal(got["proprio"], want["state"]) and got["proprio"].dtype == np.float32
        assert np.array_equal(got["actions"], want["action"]) and got["actions"].shape == (want["steps"], 7)
        assert got["instruction"] == TASKS[want["task"]]
        for camera, frames in zip(CAMERAS, want["frames"]):
            assert got["images"][camera].shape == (want["steps"], SIDE, SIDE, 3) and got["images"][camera].dtype == np.uint8
            assert _mae(got["images"][camera], frames) < FIXTURE_MAE
            assert _mae(got["images"][camera][1:], frames[:-1]) > 2 * FIXTURE_MAE  # each row gets its own frame
    png = episodes[0]["images"]["robot0_eye_in_hand"]
    assert np.array_equal(png, expected[0]["frames"][1]) == (version == "v2.1")  # PNG cells are lossless


@pytest.mark.parametrize("version", list(WRITERS))
def test_load_demos_limits_per_task_and_resizes(datasets, version):
    cfg = load_config(["data=lerobot", f"data.paths=[{datasets[version]}]"]).data
    demos = load_demos([datasets[version]], list(CAMERAS), 1, cfg, image_size=32)
    assert [d.instruction for d in demos] == TASKS  # the first episode of each task
    assert demos[0].images["agentview"].shape == (EPISODES[0][0], 32, 32, 3)
    assert demos[1].proprio.shape == (EPISODES[1][0], 8)
    auto = load_demos([datasets[version]], list(CAMERAS), 1, DataConfig(), image_size=32)  # format "auto": a directory
    assert np.array_equal(auto[1].actions, demos[1].actions)


def test_train_py_trains_on_a_lerobot_dataset(datasets, tmp_path):
    args = [*TINY, "data=lerobot", f"data.paths=[{datasets['v3.0']}]", "trainer.max_epochs=1", f"output_dir={tmp_path / 'run'}"]
    result = run_python([str(ROOT / "train.py"), *args], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run/checkpoints/last.ckpt").exists()


def _break(root: Path, how: str) -> None:
    if how == "version":
        info = json.loads((root / "meta/info.json").read_text())
        (root / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    else:
        (root / "videos/observation.images.image/chunk-000/file-001.mp4").unlink()


@pytest.mark.parametrize(
    "how, cameras, expected",
    [
        ("key", {"agentview": "observation.images.top"}, "has no feature 'observation.images.top' (for agentview); its features: "
         "observation.images.image, observation.images.image2, observation.state, action; map one with data.lerobot_keys.agentview=KEY"),
        ("version", CAMERAS, "unsupported LeRobot codebase_version 'v1.6'; supported: v2.0, v2.1, v3.0"),
        ("file", CAMERAS, "missing LeRobot video"),
    ],
)  # fmt: skip
def test_bad_dataset_fails_with_one_line(datasets, tmp_path, how, cameras, expected):
    root = shutil.copytree(datasets["v3.0"], tmp_path / "copy")
    if how != "key":
        _break(root, how)
    with pytest.raises(UserError) as error:
        read_episodes(root, cameras, "observation.state", "action")
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["data.format=parquet"], "unknown data.format 'parquet'; valid: auto, hdf5, lerobot"),
        (["data=lerobot"], "data.format=lerobot reads local LeRobot datasets: name their directories, data.paths=[DIR, ...]"),
    ],
)
def test_bad_data_config_is_one_line(args, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        load_config(args)


def _hdf5_tree(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file: {name: array or attribute value}."""
    tree = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, node: tree.update({name: node[:]} if isinstance(node, h5py.Dataset) else {}))
        for name in ["data", *(f"data/{k}" for k in demo_keys(f["data"]))]:
            tree.update({f"{name}@{key}": value for key, value in f[name].attrs.items()})
    return tree


@pytest.mark.parametrize("version, codec", [("v3.0", "libx264"), ("v2.1", "mpeg4")])
def test_hdf5_to_lerobot_to_hdf5_round_trip(lift_demos, tmp_path, version, codec):
    """Everything exact (actions, proprio, states, rewards, dones, attributes), frames within ROUND_TRIP_MAE."""
    source = tmp_path / "src" / "lift.hdf5"
    source.parent.mkdir()
    shutil.copy(lift_demos, source)
    convert_main([str(source), str(tmp_path / "lerobot"), "--version", version, "--codec", codec, "--no-progress"])
    info = json.loads((tmp_path / "lerobot/meta/info.json").read_text())
    assert info["codebase_version"] == version and info["total_episodes"] == 3
    assert info["features"]["observation.images.image"]["shape"] == [32, 32, 3]
    convert_main([str(tmp_path / "lerobot"), str(tmp_path / "back"), "--no-progress"])
    before, after = _hdf5_tree(source), _hdf5_tree(tmp_path / "back" / "lift.hdf5")
    assert sorted(before) == sorted(after)
    for name, value in before.items():
        if name.endswith("_rgb"):
            assert value.shape == after[name].shape and _mae(value, after[name]) < ROUND_TRIP_MAE[codec], name
        else:
            assert np.array_equal(np.asarray(value), np.asarray(after[name])), name
            assert np.asarray(value).dtype == np.asarray(after[name]).dtype or np.asarray(value).dtype.kind in "OSU", name


def test_libero_file_converts_with_env_conventions(lift_demos, tmp_path):
    """A file in LIBERO's layout: frames right side up and the 9-d proprio, as training reads it."""
    with h5py.File(lift_demos, "r") as f:
        demos = [{"images": {c: f[f"data/{k}/obs/{c}_rgb"][:] for c in CAMERAS}, "proprio": f[f"data/{k}/obs/proprio"][:],
                  "actions": f[f"data/{k}/actions"][:], "joint_states": np.zeros((len(f[f"data/{k}/actions"]), 7)),
                  "states": f[f"data/{k}/states"][:]} for k in demo_keys(f["data"])]  # fmt: skip
    libero = write_libero_demo_file(tmp_path / "pick_up_the_cube_demo.hdf5", demos, "pick_up_the_cube")
    convert_main([str(libero), str(tmp_path / "lerobot"), "--no-progress"])
    episodes = read_episodes(tmp_path / "lerobot", CAMERAS, "observation.state", "action")
    with h5py.File(libero, "r") as f:
        assert np.array_equal(episodes[1]["proprio"], read_proprio(f["data/demo_1/obs"]))
    assert episodes[0]["instruction"] == "pick up the cube"
    assert _mae(episodes[0]["images"]["agentview"], demos[0]["images"]["agentview"]) < ROUND_TRIP_MAE["libx264"]


def test_foreign_lerobot_dataset_converts_to_one_hdf5_file_per_task(datasets, tmp_path):
    """A LeRobot dataset not written by us (the v3.0 fixture): one file per task, read by training's loader."""
    convert_main([str(datasets["v3.0"]), str(tmp_path / "hdf5"), "--no-progress"])
    files = sorted((tmp_path / "hdf5").glob("*.hdf5"))
    assert [f.name for f in files] == ["00_put_the_bowl_on_the_plate.hdf5", "01_open_the_drawer.hdf5"]
    demos = load_demos(files, list(CAMERAS), 10)
    expected = [e for task in (0, 1) for e in _episodes() if e["task"] == task]
    assert [d.instruction for d in demos] == [TASKS[e["task"]] for e in expected]
    for demo, episode in zip(demos, expected):
        assert np.array_equal(demo.proprio, episode["state"]) and np.array_equal(demo.actions, episode["action"])
        assert _mae(demo.images["agentview"], episode["frames"][0]) < FIXTURE_MAE
    convert_main([str(files[1]), str(tmp_path / "again"), "--no-progress"])  # back to LeRobot at the recorded frame rate
    assert json.loads((tmp_path / "again/meta/info.json").read_text())["fps"] == FPS
