"""What ``train.py`` and ``evaluate.py`` print when they finish: the files they wrote (read from
disk, so the list is what is there) and the commands to look at them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridslab.config.run_layout import CONFIG_FILE, checkpoint_dir


def folder_listing(folder: Path) -> str:
    """``folder``'s entries in one line, sorted: files by name, folders with a trailing "/" and,
    when they hold any, how many MP4s (``videos/ (2 MP4s)``)."""
    entries = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            videos = len(list(path.glob("*.mp4")))
            entries.append(f"{path.name}/" + (f" ({videos} MP4{'s' if videos != 1 else ''})" if videos else ""))
        else:
            entries.append(path.name)
    return ", ".join(entries)


def training_outputs(result: dict[str, Any]) -> list[str]:
    """Lines for the end of ``train.py``, from ``gridslab.train.fit.fit``'s result."""
    run = Path(result["output_dir"])
    checkpoints = sorted(path.name for path in checkpoint_dir(run).glob("*.ckpt"))
    lines = [
        f"wrote {run}/",
        f"  config       {run / CONFIG_FILE}",
        f"  checkpoints  {checkpoint_dir(run)}/: {', '.join(checkpoints) or 'none'}",
        f"  TensorBoard  {run / 'tb'}/",
    ]
    online = sorted(path.name for path in (run / "eval").glob("online_epoch*"))
    if online:
        lines.append(f"  online eval  {run / 'eval'}/: {', '.join(online)} (results, videos, TensorBoard each)")
    return [
        *lines,
        "look at them:",
        f"  tensorboard --logdir {run}",
        f"  python evaluate.py --ckpt {result['last_checkpoint'] or checkpoint_dir(run) / 'last.ckpt'}",
    ]


def evaluation_outputs(out_dir: Path) -> list[str]:
    """Lines for the end of ``evaluate.py``, from what ``gridslab.eval.runner`` wrote to ``out_dir``."""
    lines = [f"wrote {out_dir}/: {folder_listing(out_dir)}", "look at them:"]
    lines.append(f"  {out_dir / 'summary.md'}  (the table above; summary.csv and summary.json: the same figures as data)")
    if any((out_dir / "videos").glob("*.mp4")):
        lines.append(f"  {out_dir / 'videos'}/  (MP4s, the sampled points drawn)")
    return [*lines, f"  tensorboard --logdir {out_dir}"]
