"""Rollout videos reach TensorBoard as videos: read back from the real event files.

A TensorBoard video is an animated GIF in an image summary (what ``SummaryWriter.add_video``
writes); the checks decode it and count its frames.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from gridslab.train.fit import fit
from gridslab.viz import add_video
from tests.helpers import ONLINE_EVAL, SMALL_ENV, tiny_config


def _images(logdir: Path) -> dict[str, list]:
    """Every image summary under ``logdir`` (one events file), by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def _frames(image_event) -> np.ndarray:
    """The decoded frames ``[T, H, W, 3]`` of a video summary's GIF."""
    return iio.imread(image_event.encoded_image_string, extension=".gif", index=None)[..., :3]


def test_add_video_writes_a_tensorboard_video(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    ramp = np.linspace(0, 255, 48).astype(np.uint8)
    frames = [np.stack([np.roll(np.tile(ramp, (40, 1)), 4 * t, axis=1)] * 3, axis=-1) for t in range(6)]  # [40, 48, 3]
    writer = SummaryWriter(str(tmp_path))
    add_video(writer, "clip", frames, 7, fps=20)
    writer.close()
    (event,) = _images(tmp_path)["clip"]
    assert (event.step, event.width, event.height) == (7, 48, 40)
    decoded = _frames(event)
    assert decoded.shape == (6, 40, 48, 3)
    assert np.abs(decoded.astype(int) - np.stack(frames)).max() <= 8  # 256-colour palette per frame


def test_online_evaluation_logs_rollout_videos_with_points(tmp_path, lift_demos):
    """Training with online evaluation: the training run's TensorBoard gets the first episode as a
    video at the epoch's step, the evaluation's own TensorBoard the video and the 8-frame strip, and
    the MP4 sits beside them; frames are the first camera at 2x, the sampled points drawn."""
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        *ONLINE_EVAL,
    )
    result = fit(cfg)
    size = 2 * SMALL_ENV["image_size"]
    run = Path(cfg.output_dir)
    (video_name,) = [path.stem for path in (run / "eval" / "online_epoch001" / "videos").glob("*.mp4")]
    assert video_name == f"robosuite_Lift_clean_seed{cfg.eval.seed}"

    (online,) = _images(run / "tb")[f"online/{video_name}"]
    assert (online.step, online.width, online.height) == (result["global_step"], size, size)
    assert _frames(online).shape[:3] == (5, size, size)  # one frame per env step

    eval_images = _images(run / "eval" / "online_epoch001" / "tb")
    (video,) = eval_images[f"rollout_videos/robosuite_Lift/clean/seed{cfg.eval.seed}"]
    (strip,) = eval_images[f"rollouts/robosuite_Lift/clean/seed{cfg.eval.seed}"]
    frames = _frames(video)
    assert frames.shape == (5, size, size, 3) and (video.width, video.height) == (size, size)
    assert (strip.width, strip.height) == (8 * size, size)  # 8 columns, black past the 5 frames
    mp4 = iio.imread(run / "eval" / "online_epoch001" / "videos" / f"{video_name}.mp4", index=None)
    assert mp4.shape == frames.shape
    assert np.abs(mp4.astype(int) - frames).mean() < 12  # one video, two codecs (H.264, GIF palette)
