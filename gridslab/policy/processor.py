"""``PolicyProcessor``: the one way between env data and the policy's tensors.

Training, validation, rollouts, ``VLA.predict`` and ``VLA.example_batch`` all go through
it, so a frame becomes the same policy batch whether it came from a dataset or an env
(the role of robomimic's ``RolloutPolicy`` and lerobot's processors).

Raw data (what envs and datasets hold)::

    images:       {camera: uint8 [B, H, W, 3]}     right side up (the policy's vision scales pixels)
    proprio:      float [B, P]                     env units
    instruction:  list of B str
    actions:      float [B, H, A] env units        (training only; H = chunk length)
    action_mask:  bool [B, H]                      (training only) False past the episode end

Policy batch (what ``VLA.forward`` / ``VLA.loss`` take)::

    images:           {camera: uint8 [B, H, W, 3]}  as given, on the policy's device
    proprio:          float32 [B, P]  zero-mean unit-std (``proprio_mean/std``)
    instruction_ids:  long [B, T], instruction_mask: bool [B, T]  (the policy's tokenizer:
                      hashed words with its own ``max_len`` and ``vocab_size``, or its LM's
                      own tokenizer; ``gridslab.policy.language``; T = ``max_len``)
    instruction:      list of B str   (read by a per-task budget)
    actions:          float32 [B, H, A] normalised (``action_mean/std``); action_mask as given
    k:                long [B] optional token budget; noise_seed: long [B] optional, seeds a
                      compressor's per-sample draw (``random``)

Outputs go back the other way: ``env_actions`` turns normalised chunks ``[..., A]`` into
env units. The statistics are buffers, so a checkpoint carries them.

Instructions repeat (a dataset has a few tasks), so each string's ids are computed once and
kept in a bounded cache (the ``CACHE_SIZE`` most recently used strings).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from gridslab.errors import UserError
from gridslab.policy.language import InstructionTokenizer, pad_ids

STAT_KEYS = ("action_mean", "action_std", "proprio_mean", "proprio_std")
CACHE_SIZE = 4096  # instruction strings whose ids are kept


class PolicyProcessor(nn.Module):
    """Raw observations + instructions -> policy batch, normalised actions -> env units.

    cameras: the policy's cameras (images of others are dropped); proprio_dim: P;
    action_dim: A; tokenizer: the instruction tokenizer (``HashedWords`` or ``LMTokenizer``).
    """

    action_mean: Tensor
    action_std: Tensor
    proprio_mean: Tensor
    proprio_std: Tensor

    def __init__(self, cameras: list[str], proprio_dim: int, action_dim: int, tokenizer: InstructionTokenizer):
        super().__init__()
        self.cameras = list(cameras)
        self.tokenizer = tokenizer
        self.ids_cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))

    # statistics -----------------------------------------------------------------------

    def set_normalization(self, stats: Mapping[str, Any]) -> None:
        """Copy ``action_mean/std`` ``[A]`` and ``proprio_mean/std`` ``[P]`` (arrays, tensors
        or lists) into the buffers."""
        missing = [key for key in STAT_KEYS if key not in stats]
        if missing:
            raise UserError(f"normalisation stats lack {', '.join(missing)}; need {', '.join(STAT_KEYS)}")
        for key in STAT_KEYS:
            buffer = getattr(self, key)
            value = torch.as_tensor(np.asarray(stats[key], dtype=np.float32))
            if value.shape != buffer.shape:
                raise UserError(
                    f"normalisation stat {key} has shape {tuple(value.shape)}, the policy expects {tuple(buffer.shape)}"
                )
            buffer.copy_(value)

    # raw -> policy --------------------------------------------------------------------

    def token_ids(self, instruction: str) -> tuple[int, ...]:
        """The tokenizer's ids of one instruction (at most ``max_len``), from the cache when seen."""
        ids = self.ids_cache.get(instruction)
        if ids is None:
            ids = tuple(self.tokenizer.encode(instruction))
            self.ids_cache[instruction] = ids
            if len(self.ids_cache) > CACHE_SIZE:
                self.ids_cache.popitem(last=False)
        else:
            self.ids_cache.move_to_end(instruction)
        return ids

    def tokenize(self, instructions: list[str]) -> tuple[Tensor, Tensor]:
        """Instruction ids ``[B, T]`` long (padded with the tokenizer's pad id) and mask
        ``[B, T]`` bool (True = a real token) on the policy's device; T = ``max_len``."""
        rows = [list(self.token_ids(text)) for text in instructions]
        ids, mask = pad_ids(rows, self.tokenizer.max_len, self.tokenizer.pad_id)
        device = self.action_mean.device
        return ids.to(device), mask.to(device)

    def observation_batch(
        self,
        images: Mapping[str, Any],
        proprio: Any,
        instructions: list[str],
        k: Tensor | None = None,
        noise_seed: Tensor | None = None,
    ) -> dict[str, Any]:
        """The policy batch of B observations (numpy arrays or tensors; see module docstring)."""
        device = self.action_mean.device
        missing = [camera for camera in self.cameras if camera not in images]
        if missing:
            raise UserError(f"observation lacks camera(s) {', '.join(missing)}; it has {', '.join(images) or 'none'}")
        ids, mask = self.tokenize(instructions)
        raw_proprio = torch.as_tensor(np.asarray(proprio, dtype=np.float32) if not isinstance(proprio, Tensor) else proprio)
        batch = {
            "images": {camera: _as_uint8(images[camera], device) for camera in self.cameras},
            "proprio": (raw_proprio.to(device=device, dtype=torch.float32) - self.proprio_mean) / self.proprio_std,
            "instruction_ids": ids,
            "instruction_mask": mask,
            "instruction": list(instructions),
        }
        if k is not None:
            batch["k"] = torch.as_tensor(k, dtype=torch.long, device=device)
        if noise_seed is not None:
            batch["noise_seed"] = torch.as_tensor(noise_seed, dtype=torch.long, device=device)
        return batch

    def training_batch(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A collated raw training batch (``images``, ``proprio``, ``instruction``, ``actions``,
        ``action_mask``) -> the policy batch with normalised action targets."""
        batch = self.observation_batch(raw["images"], raw["proprio"], raw["instruction"])
        batch["actions"] = self.normalize_actions(raw["actions"].to(self.action_mean.device, torch.float32))
        batch["action_mask"] = raw["action_mask"].to(self.action_mean.device)
        return batch

    def normalize_actions(self, actions: Tensor) -> Tensor:
        """Env-unit actions ``[..., A]`` -> zero-mean unit-std."""
        return (actions - self.action_mean) / self.action_std

    # policy -> env --------------------------------------------------------------------

    def env_actions(self, actions: Tensor) -> Tensor:
        """Normalised actions ``[..., A]`` -> env units."""
        return actions * self.action_std + self.action_mean


def _as_uint8(frames: Any, device: torch.device) -> Tensor:
    """uint8 ``[B, H, W, 3]`` tensor on ``device`` from an array or tensor of images."""
    tensor = frames if isinstance(frames, Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if tensor.dtype != torch.uint8:
        raise UserError(f"images must be uint8 [B, H, W, 3], got {tensor.dtype}")
    return tensor.to(device)
