"""Load a training checkpoint safely and rebuild its policy (what ``evaluate.py`` needs).

Checkpoints are read with ``torch.load(weights_only=True)``: they hold only tensors and
plain data (the resolved config, dims, instructions), so loading one runs no code.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from gridslab.config import load_config, to_plain
from gridslab.errors import UserError
from gridslab.policy.factory import build_policy
from gridslab.policy.vla import VLA


def reason(err: BaseException) -> str:
    """``Type: first line of the message`` (160 characters at most), or ``Type`` when the
    message is empty (an empty file's ``EOFError`` has none)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict; missing, corrupt or foreign files fail with one line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory; pass --ckpt PATH of a .ckpt file")
    if not path.is_file():
        raise UserError(f"missing checkpoint {path}; train first (python train.py) or pass --ckpt PATH")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is not a readable checkpoint (empty file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own text here advises an unsafe load: not repeated
        raise UserError(
            f"{path} is not a readable checkpoint (UnpicklingError: not a torch file of tensors and plain data)"
        ) from None
    except Exception as err:  # noqa: BLE001 - any other unreadable file (bad zip, truncated, I/O) is one line
        raise UserError(f"{path} is not a readable checkpoint ({reason(err)})") from None
    if (
        not isinstance(checkpoint, dict)
        or not isinstance(checkpoint.get("hyper_parameters"), dict)
        or "config" not in checkpoint["hyper_parameters"]
    ):
        raise UserError(f"{path} is not a gridslab checkpoint (no state_dict / hyper_parameters.config)")
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise UserError(f"{path} is not a gridslab checkpoint (state_dict is not a dict of tensors)")
    missing = [key for key in ("proprio_dim", "action_dim") if key not in checkpoint["hyper_parameters"]]
    if missing:
        raise UserError(f"{path} is not a gridslab checkpoint (hyper_parameters lack {', '.join(missing)})")
    return checkpoint


BUDGET_PREFIX = "budget."  # a policy's budget weights (a learned budget head) in its state_dict


def policy_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The evaluation weights: the EMA copy when the run kept one, else the trained policy."""
    prefix = "ema.module." if any(k.startswith("ema.module.") for k in state_dict) else "policy."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def without_replaced_budget(state: dict[str, torch.Tensor], policy: VLA) -> dict[str, torch.Tensor]:
    """``state`` less its budget weights when ``policy``'s budget has none: a checkpoint trained
    with a learned budget (``budget=adaptive``) evaluated under a parameter-free one, e.g.
    ``budget=fixed`` (every sample at the compressor's K) or ``budget=per_task
    budget.default_k=8``. Every other weight still has to fit exactly."""
    if any(name.startswith(BUDGET_PREFIX) for name in policy.state_dict()):
        return state
    return {name: tensor for name, tensor in state.items() if not name.startswith(BUDGET_PREFIX)}


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 (hex) of ``module``'s state_dict: every tensor's name, dtype, shape and bytes in
    sorted name order. Equal for the same weights however they were loaded (live policy or
    checkpoint), different as soon as one parameter or buffer differs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_policy(path: str | Path, overrides: list[str] | None = None) -> tuple[VLA, DictConfig, dict[str, Any]]:
    """Rebuild (policy in eval mode, resolved config with ``overrides``, hyper-parameters)."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    cfg = load_config(overrides or [], base=hparams["config"])
    policy = build_policy(to_plain(cfg), hparams["proprio_dim"], hparams["action_dim"])
    try:
        policy.load_state_dict(without_replaced_budget(policy_state(checkpoint["state_dict"]), policy))
    except RuntimeError as err:
        detail = next(
            (
                line.strip()
                for line in str(err).splitlines()
                if "size mismatch" in line or "Missing key" in line or "Unexpected key" in line
            ),
            reason(err),
        )
        raise UserError(f"checkpoint {path} does not fit the configured policy (another policy shape?): {detail[:200]}") from None
    return policy.eval(), cfg, hparams
