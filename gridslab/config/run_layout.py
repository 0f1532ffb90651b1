"""Where a run writes what, under its ``output_dir`` (the one home of these names)::

config.yaml          the resolved config
checkpoints/         last.ckpt (every epoch end) and best-epoch<E>-step<S>.ckpt (lowest val/loss)
tb/                  TensorBoard event files
eval/<name>/         evaluations (``gridslab.eval.runner``)
"""

from __future__ import annotations

from pathlib import Path

CONFIG_FILE = "config.yaml"
LAST_CHECKPOINT_STEM = "last"


def checkpoint_dir(output_dir: str | Path) -> Path:
    """``<output_dir>/checkpoints``."""
    return Path(output_dir) / "checkpoints"


def last_checkpoint(output_dir: str | Path) -> Path:
    """``<output_dir>/checkpoints/last.ckpt``: the checkpoint ``evaluate.py`` and ``resume=auto`` use."""
    return checkpoint_dir(output_dir) / f"{LAST_CHECKPOINT_STEM}.ckpt"


def eval_dir(output_dir: str | Path, name: str) -> Path:
    """``<output_dir>/eval/<name>``."""
    return Path(output_dir) / "eval" / name
