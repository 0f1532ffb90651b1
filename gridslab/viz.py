"""Sampled coordinates drawn on frames, and rollout videos as TensorBoard video summaries.

Frames are uint8 ``[H, W, 3]``; coordinates are (x, y) in [0, 1] image units, x to the
right, y downwards (the compressor convention). Numpy and Pillow, no plotting library.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

PALETTE = np.array(
    [
        [255, 64, 64],
        [64, 200, 255],
        [255, 220, 0],
        [120, 255, 120],
        [255, 120, 255],
        [255, 160, 60],
        [160, 120, 255],
        [255, 255, 255],
    ],
    dtype=np.uint8,
)


def draw_points(
    frame: np.ndarray, coords: np.ndarray, mask: np.ndarray | None = None, scale: int = 2, radius: int = 2
) -> np.ndarray:
    """``frame`` upscaled ``scale`` x (nearest) with a dot per valid token.

    frame: uint8 ``[H, W, 3]``; coords: ``[K, 2]`` (x, y) in [0, 1]; mask: bool ``[K]``.
    Returns uint8 ``[H*scale, W*scale, 3]``; dot colours cycle through ``PALETTE`` by token index.
    """
    canvas = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1).copy()
    height, width = canvas.shape[:2]
    ys, xs = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = xs**2 + ys**2 <= radius**2
    for index, (x, y) in enumerate(np.asarray(coords, dtype=np.float64)):
        if mask is not None and not mask[index]:
            continue
        cx = int(np.clip(round(x * width - 0.5), 0, width - 1))
        cy = int(np.clip(round(y * height - 0.5), 0, height - 1))
        py, px = cy + ys[disk], cx + xs[disk]
        inside = (py >= 0) & (py < height) & (px >= 0) & (px < width)
        canvas[py[inside], px[inside]] = PALETTE[index % len(PALETTE)]
    return canvas


def tile(frames: list[np.ndarray], columns: int) -> np.ndarray:
    """Frames of one shape ``[H, W, 3]`` in a ``rows x columns`` grid (black padding)."""
    height, width, channels = frames[0].shape
    rows = -(-len(frames) // columns)
    grid = np.zeros((rows * height, columns * width, channels), dtype=np.uint8)
    for index, frame in enumerate(frames):
        r, c = divmod(index, columns)
        grid[r * height : (r + 1) * height, c * width : (c + 1) * width] = frame
    return grid


def gif_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """Looping animated GIF of uint8 frames ``[H, W, 3]`` at ``fps`` frames per second, each frame
    with its own 256-colour palette (Pillow's fast octree quantizer: ~5 ms per 256 px frame)."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(frame)).quantize(256, method=Image.Quantize.FASTOCTREE) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    return buffer.getvalue()


def add_video(writer: Any, tag: str, frames: Sequence[np.ndarray], step: int, fps: float) -> None:
    """Log ``frames`` (uint8 ``[H, W, 3]`` each, ``fps`` frames per second) to ``writer`` (a
    ``torch.utils.tensorboard.SummaryWriter``) as a TensorBoard video at ``step``.

    The summary is the one ``SummaryWriter.add_video`` writes, an animated GIF in an image
    summary (TensorBoard's Images tab plays it), encoded here because torch's encoder imports
    ``moviepy.editor``, which moviepy 2 removed (there ``add_video`` prints a notice and logs nothing).
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    height, width, channels = frames[0].shape
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=gif_bytes(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
