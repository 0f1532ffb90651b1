"""Load a training checkpoint safely and rebuild its policy (what ``evaluate.py`` needs).

Checkpoints are read with ``torch.load(weights_only=True)``: they hold only tensors and
plain data (the resolved config, dims, instructions), so loading one runs no code.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from gridslab.config import load_config, to_plain
from gridslab.errors import UserError
from gridslab.module import build_policy
from gridslab.policy.vla import VLA


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict; missing, corrupt or foreign files fail with one line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing checkpoint {path}; train first (python train.py) or pass --ckpt PATH")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as err:
        raise UserError(f"{path} is not a readable checkpoint ({str(err).splitlines()[0][:160]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint.get("hyper_parameters", {}):
        raise UserError(f"{path} is not a gridslab checkpoint (no state_dict / hyper_parameters.config)")
    return checkpoint


def policy_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The evaluation weights: the EMA copy when the run kept one, else the trained policy."""
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in state_dict) else "policy."
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_policy(path: str | Path, overrides: list[str] | None = None) -> tuple[VLA, DictConfig, dict[str, Any]]:
    """Rebuild (policy in eval mode, resolved config with ``overrides``, hyper-parameters)."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    cfg = load_config(overrides or [], base=hparams["config"])
    policy = build_policy(to_plain(cfg), hparams["proprio_dim"], hparams["action_dim"])
    try:
        policy.load_state_dict(policy_state(checkpoint["state_dict"]))
    except RuntimeError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line or "Missing key" in line
                       or "Unexpected key" in line), str(err).splitlines()[0])
        raise UserError(f"checkpoint {path} does not fit the configured policy (another policy shape?): {detail[:200]}") from None
    return policy.eval(), cfg, hparams
