"""``VLA``: vision (+ compressor) per camera, instruction encoder, backbone, action head.

``forward`` / ``loss`` take the *policy batch* that ``self.processor``
(``gridslab.policy.processor.PolicyProcessor``) builds from raw observations: uint8
images per camera, normalised proprio, instruction ids and mask, the instructions as text,
optional per-sample ``k`` (overrides the policy's own budget, ``gridslab.policy.budget``) and
``noise_seed``, and, for ``loss``, normalised ``actions [B, H, A]`` with ``action_mask [B, H]``.
``predict`` and ``example_batch`` go through the same processor, and so do training and
rollouts, so a frame becomes one batch wherever it comes from. The normalisation
statistics are the processor's buffers, so a checkpoint's state_dict carries them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Mapping

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from gridslab.compress.base import CompressContext, Tokens
from gridslab.errors import UserError
from gridslab.policy.backbones import make_backbone, make_vision_encoder
from gridslab.policy.budget import BudgetChoice, build_budget
from gridslab.policy.config import PolicyConfig, as_policy_config
from gridslab.policy.heads import HEADS
from gridslab.policy.language import LanguageEncoder, LMTokenizer
from gridslab.policy.pretrained import load_tokenizer
from gridslab.policy.processor import PolicyProcessor


class VLA(nn.Module):
    """Vision-language-action policy predicting ``chunk`` normalised actions at once.

    cfg: ``PolicyConfig`` (or a dict / OmegaConf node of it); compressor_cfg: the
    compressor node (``{"name": "grids", "k": 4, ...}``); cameras: camera names in the
    order their tokens enter the backbone; proprio_dim: P; action_dim: A;
    budget_cfg: the token-budget node (``{"name": "fixed"}`` when None).
    """

    def __init__(
        self,
        cfg: PolicyConfig | DictConfig | dict[str, Any],
        compressor_cfg: DictConfig | dict[str, Any],
        cameras: list[str],
        proprio_dim: int,
        action_dim: int,
        budget_cfg: DictConfig | dict[str, Any] | None = None,
    ):
        super().__init__()
        cfg = as_policy_config(cfg)
        if not cameras:
            raise UserError("the policy needs at least one camera (env.cameras is empty)")
        self.cfg = cfg
        self.cameras = list(cameras)
        self.chunk = cfg.chunk
        self.action_dim = action_dim
        self.proprio_dim = proprio_dim
        tokenizer = load_tokenizer(cfg.lm, cfg.language)
        own_text = isinstance(tokenizer, LMTokenizer)  # the LM's own tokenizer and token embeddings
        self.language = None if own_text else LanguageEncoder(cfg.language)
        text_dim = cfg.lm.width() if own_text else cfg.language.dim
        if cfg.vision.shared:
            shared = make_vision_encoder(cfg, compressor_cfg)
            self.vision = nn.ModuleDict({camera: shared for camera in self.cameras})
        else:
            self.vision = nn.ModuleDict({camera: make_vision_encoder(cfg, compressor_cfg) for camera in self.cameras})
        vision_dim = self.vision[self.cameras[0]].dim
        uses_text = any(encoder.compressor.uses_text for encoder in self.vision.values())
        # instruction tokens projected to the vision width, only for compressors that read them
        self.text_to_vision = nn.Linear(text_dim, vision_dim) if uses_text else None
        budget_cfg = budget_cfg if budget_cfg is not None else {"name": "fixed"}
        self.budget = build_budget(budget_cfg, self.max_tokens_per_image(), vision_dim, text_dim)
        honours = all(encoder.compressor.honours_budget for encoder in self.vision.values())
        if (budget_cfg["name"] != "fixed" or self.budget.anneal_end) and not honours:
            raise UserError(
                f"budget={budget_cfg['name']} needs a compressor that honours a per-sample k; "
                f"compressor={compressor_cfg['name']} keeps every patch (use budget=fixed)"
            )
        if cfg.lm.backbone != "none" and getattr(self.budget, "rule", None) == "head":
            raise UserError(
                "budget=adaptive with rule=head trains through soft token weights, which policy.lm "
                "backbones do not take; use budget.rule=saliency"
            )
        self.uses_prefix = HEADS.entry(cfg.head.name).factory.uses_prefix  # head reads the prefix, no queries
        queries = 0 if self.uses_prefix else cfg.chunk
        self.backbone = make_backbone(cfg, 0 if own_text else text_dim, vision_dim, len(self.cameras), proprio_dim, queries)
        if own_text and tokenizer.vocab_size > self.backbone.vocab_rows:
            raise UserError(
                f"policy.lm tokenizer {tokenizer.source} has {tokenizer.vocab_size} tokens, more than the LM's "
                f"{self.backbone.vocab_rows} embedding rows: use the LM's own tokenizer (or policy.lm.tokenizer=hashed)"
            )
        self.head = HEADS.build(asdict(cfg.head), self.backbone.dim, action_dim, cfg.chunk)
        self.processor = PolicyProcessor(self.cameras, proprio_dim, action_dim, tokenizer)

    # normalisation ---------------------------------------------------------------------

    def set_normalization(self, stats: Mapping[str, Any]) -> None:
        """The dataset's ``action_mean/std`` ``[A]`` and ``proprio_mean/std`` ``[P]`` into the processor."""
        self.processor.set_normalization(stats)

    # token counts ----------------------------------------------------------------------

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Patch grid (rows, columns) each image is encoded into before compression."""
        side = self.vision[self.cameras[0]].grid_size
        return side, side

    def max_tokens_per_image(self) -> int:
        """Visual token slots per image the compressor emits (``K_max``)."""
        return self.vision[self.cameras[0]].tokens_per_image

    def visual_tokens_per_image(self, tokens: Mapping[str, Tokens] | None = None) -> float:
        """K: ``K_max`` without arguments, else the mean valid tokens per image over
        ``tokens`` (``forward(...)["tokens"]``: camera -> Tokens with mask ``[B, K]``)."""
        if tokens is None:
            return float(self.max_tokens_per_image())
        counts = torch.stack([camera_tokens.mask.float().sum(dim=1) for camera_tokens in tokens.values()])
        return float(counts.mean())

    # forward ---------------------------------------------------------------------------

    def encode(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor | None, dict[str, Tokens], BudgetChoice]:
        """The head's features (action-query outputs ``[B, H, D]``, or for a head that reads the
        prefix its states ``[B, N, D]``) with their keys (None, or ``[B, N]``), each camera's
        visual Tokens, and the budget's choice."""
        text_mask = batch["instruction_mask"]
        if self.language is not None:
            text = self.language(batch["instruction_ids"], text_mask)
        else:  # the LM's own token embeddings [B, T, D]
            text = self.backbone.embed_text(batch["instruction_ids"])
        vision_text = self.text_to_vision(text) if self.text_to_vision is not None else None
        feats = {camera: self.vision[camera].patch_features(batch["images"][camera]) for camera in self.cameras}
        if batch.get("k") is not None:
            choice = BudgetChoice(k=batch["k"])
        else:
            choice = self.budget(feats, text, text_mask, batch.get("instruction"))
        ctx = CompressContext(text=vision_text, text_mask=text_mask, k=choice.k, noise_seed=batch.get("noise_seed"))
        tokens = {
            camera: self.vision[camera].tokens_from_features(feats[camera], replace(ctx, camera_index=index), choice.weight)
            for index, camera in enumerate(self.cameras)
        }
        visual = [tokens[camera] for camera in self.cameras]
        if self.uses_prefix:
            features, key_mask = self.backbone(text, text_mask, visual, batch["proprio"], prefix=True)
            return features, key_mask, tokens, choice
        return self.backbone(text, text_mask, visual, batch["proprio"]), None, tokens, choice

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """``{"actions": normalised [B, H, A], "tokens": {camera: Tokens}, "budget": BudgetChoice}``."""
        features, key_mask, tokens, choice = self.encode(batch)
        actions = self.head(features, key_mask, batch.get("noise_seed"))
        return {"actions": actions, "tokens": tokens, "budget": choice}

    def loss(self, batch: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """Head loss against ``batch["actions"]`` (masked by ``batch["action_mask"]``) plus the
        budget's compute penalty, and the ``forward`` outputs (``"action_loss"``: the head loss alone)."""
        features, key_mask, tokens, choice = self.encode(batch)
        action_loss, actions = self.head.loss(features, batch["actions"], batch.get("action_mask"), key_mask)
        penalty = self.budget.penalty_loss(choice)
        loss = action_loss if penalty is None else action_loss + penalty
        return loss, {"actions": actions, "tokens": tokens, "budget": choice, "action_loss": action_loss}

    def tokens_per_sample(self, outputs: Mapping[str, Any]) -> Tensor:
        """``[B]`` float visual tokens per image of each sample: the budget's soft K while a
        learned budget trains, else the valid slots averaged over cameras."""
        choice = outputs["budget"]
        if choice.soft_k is not None and choice.weight is not None:
            return choice.soft_k.detach().float()
        return torch.stack([t.mask.float().sum(dim=1) for t in outputs["tokens"].values()]).mean(dim=0)

    def example_batch(self, batch_size: int = 1, instruction: str = "lift the red cube", seed: int = 0) -> dict[str, Any]:
        """The policy batch of ``batch_size`` random observations in this policy's input
        shapes (for FLOP counts and latency), on the policy's device."""
        generator = torch.Generator().manual_seed(seed)
        size = self.vision[self.cameras[0]].image_size
        images = {
            camera: torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8, generator=generator)
            for camera in self.cameras
        }
        proprio = torch.randn(batch_size, self.proprio_dim, generator=generator)
        return self.processor.observation_batch(images, proprio, [instruction] * batch_size)

    @torch.no_grad()
    def predict(
        self, observations: Mapping[str, Any], instructions: list[str], k: Tensor | None = None, noise_seed: Tensor | None = None
    ) -> np.ndarray:
        """Action chunks ``[B, H, A]`` float32 in env units from env observations.

        observations: ``{"images": {camera: uint8 [B, H, W, 3]}, "proprio": float32 [B, P]}``
        (numpy or tensors); instructions: B strings; k: optional ``[B]`` token budget;
        noise_seed: optional ``[B]`` seeds of a compressor's random draw and of a flow
        head's initial noise.
        Runs in the module's current train/eval mode (rollouts call ``.eval()``).
        """
        batch = self.processor.observation_batch(
            observations["images"], observations["proprio"], instructions, k=k, noise_seed=noise_seed
        )
        return self.processor.env_actions(self(batch)["actions"]).float().cpu().numpy()
