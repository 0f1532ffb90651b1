"""Pretrained towers through transformers, loaded from a local directory only.

* ``PretrainedVisionEncoder``: SigLIP or DINOv2 vision tower for one camera. Its output
  patch grid ``[B, g, g, C]`` (g = input_size / patch_size; DINOv2's CLS and register tokens
  dropped) goes to the compressor, exactly where the built-in ViT hands over its grid, so
  GridS and every other compressor plug in unchanged. As in the GridS reference the tower
  runs whole before compression (there are no blocks after it).
* ``PretrainedBackbone``: a decoder LM (Qwen2 / Qwen2.5, Llama family incl. SmolLM, Gemma)
  run with ``inputs_embeds`` over the same sequence as the built-in backbone
  ``[instruction, visual tokens per camera, proprio, action queries]``, each part projected
  into the LM width; its padding mask is the budget's key mask. The action queries come
  last, so under the LM's causal mask they see the whole prompt. The LM's own token
  embeddings are not used: the instruction comes from gridslab's language encoder.

Weights come from ``path`` with ``local_files_only`` (``HF_HUB_OFFLINE`` is set too), so
nothing is ever downloaded; with no path, the tower is randomly initialised from
``hf_config`` (the transformers config fields), which is how tests and FLOP studies build
tiny or full-size shapes. A missing directory, an unloadable one or a missing package is one
``UserError`` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gridslab.compress import build_compressor
from gridslab.compress.base import Tokens
from gridslab.errors import UserError
from gridslab.policy.backbone import TokenSequence
from gridslab.policy.config import LMConfig, VisionConfig
from gridslab.policy.vision import IMAGENET_MEAN, IMAGENET_STD, PatchEncoder


@dataclass(frozen=True)
class Family:
    """A transformers model family: model and config class names, image statistics, and how
    many leading non-patch tokens its vision output carries (CLS, registers)."""

    model: str
    config: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    prefix_tokens: int = 0


VISION_FAMILIES = {
    "siglip": Family("SiglipVisionModel", "SiglipVisionConfig", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0),
    "dinov2": Family("Dinov2Model", "Dinov2Config", IMAGENET_MEAN, IMAGENET_STD, 1),
}
LM_FAMILIES = {
    "qwen2": Family("Qwen2Model", "Qwen2Config"),
    "llama": Family("LlamaModel", "LlamaConfig"),
    "gemma": Family("GemmaModel", "GemmaConfig"),
}


def load_model(family_name: str, family: Family, path: str, hf_config: dict[str, Any], where: str) -> nn.Module:
    """The transformers model of ``family`` from local ``path`` (float32), or randomly
    initialised from ``hf_config`` when ``path`` is empty."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"{where}.backbone={family_name} needs transformers: pip install -e '.[pretrained]'") from None
    model_class, config_class = getattr(transformers, family.model), getattr(transformers, family.config)
    if not path:
        try:
            return model_class(config_class(**dict(hf_config)))
        except (TypeError, ValueError) as err:
            raise UserError(f"{where}.hf_config does not make a {family.config}: {str(err).splitlines()[0]}") from None
    directory = Path(path).expanduser()
    if not (directory / "config.json").is_file():
        raise UserError(
            f"{where}.path={path} is not a local {family_name} model directory (no config.json there); "
            f"gridslab never downloads: point it at a directory holding config.json and the weights"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return model_class.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"{where}.path={path}: cannot load a {family.model} from it ({str(err).splitlines()[0][:160]})") from None


def enable_checkpointing(model: nn.Module) -> None:
    """Recompute the model's layers in the backward pass (transformers' activation checkpointing)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def check_local_paths(vision: VisionConfig, lm: LMConfig) -> None:
    """Fail early (before data or files) on a pretrained path that is not a model directory."""
    for where, cfg in (("policy.vision", vision), ("policy.lm", lm)):
        if cfg.path and not (Path(cfg.path).expanduser() / "config.json").is_file():
            raise UserError(
                f"{where}.path={cfg.path} is not a local {cfg.backbone} model directory (no config.json "
                f"there); gridslab never downloads: point it at a directory holding config.json and the weights"
            )


class PretrainedVisionEncoder(PatchEncoder):
    """SigLIP / DINOv2 tower for one camera: ``images uint8 [B, H, W, 3], ctx -> Tokens [B, K, C]``
    with C the tower's hidden size; ``compressor_cfg`` is built for that width."""

    def __init__(self, cfg: VisionConfig, compressor_cfg: Any, checkpointing: bool = False):
        super().__init__()
        family = VISION_FAMILIES[cfg.backbone]
        self.model = load_model(cfg.backbone, family, cfg.path, cfg.hf_config, "policy.vision")
        hf = self.model.config
        self.image_size = int(cfg.input_size or hf.image_size)
        if self.image_size % hf.patch_size:
            raise UserError(
                f"policy.vision.input_size={self.image_size} must be a multiple of the tower's patch size {hf.patch_size}"
            )
        self.grid_size = self.image_size // hf.patch_size
        self.dim = int(hf.hidden_size)
        self.prefix_tokens = family.prefix_tokens + int(getattr(hf, "num_register_tokens", 0) or 0)
        self.interpolate = self.image_size != hf.image_size and cfg.backbone == "siglip"
        self.compressor = build_compressor(compressor_cfg, self.dim)
        self.register_buffer("image_mean", torch.tensor(family.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(family.std).view(1, 3, 1, 1), persistent=False)
        unused = [
            getattr(self.model, "head", None),  # SigLIP's pooling head (transformers >= 5)
            getattr(getattr(self.model, "vision_model", None), "head", None),  # ... and where 4.x keeps it
            getattr(self.model.embeddings, "mask_token", None),
        ]  # DINOv2's masked-image token
        for module_or_param in (u for u in unused if u is not None):
            module_or_param.requires_grad_(False)  # never in the loss: DDP would wait for its gradient
        if cfg.freeze:
            self.model.requires_grad_(False)
        if checkpointing:
            enable_checkpointing(self.model)

    def patch_features(self, images: Tensor) -> Tensor:
        """The tower's last hidden state on the patch grid: ``[B, g, g, C]``."""
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate else {}
        hidden = self.model(pixel_values=self.normalize(images), **kwargs).last_hidden_state[:, self.prefix_tokens :]
        return hidden.reshape(hidden.shape[0], self.grid_size, self.grid_size, self.dim)

    def encode_tokens(self, compressed: Tokens) -> Tokens:
        """No blocks after the tower: the compressed tokens go to the backbone as they are."""
        return compressed


class PretrainedBackbone(TokenSequence):
    """A decoder LM over the assembled sequence -> action-query features ``[B, H, D]`` (D = the
    LM's hidden size). Soft slot weights are not supported (the LM takes a 0/1 padding mask)."""

    def __init__(
        self,
        cfg: LMConfig,
        text_dim: int,
        vision_dim: int,
        num_cameras: int,
        proprio_dim: int,
        chunk: int,
        checkpointing: bool = False,
    ):
        family = LM_FAMILIES[cfg.backbone]
        model = load_model(cfg.backbone, family, cfg.path, cfg.hf_config, "policy.lm")
        super().__init__(int(model.config.hidden_size), text_dim, vision_dim, num_cameras, proprio_dim, chunk)
        model.get_input_embeddings().requires_grad_(False)  # inputs arrive as inputs_embeds; never in the loss
        # Gemma multiplies inputs_embeds by sqrt(width); undo it so projected tokens enter at their own scale
        self.input_scale = float(model.config.hidden_size) ** -0.5 if cfg.backbone == "gemma" else 1.0
        if checkpointing:
            enable_checkpointing(model)
        if cfg.finetune == "frozen":
            model.requires_grad_(False)
        elif cfg.finetune == "lora":
            model = with_lora(model, cfg)
        self.model = model

    def forward(
        self, text: Tensor, text_mask: Tensor, visual: list[Tokens], proprio: Tensor, prefix: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Action-query features ``[B, H, D]`` (arguments as in ``TokenSequence.assemble``), or
        with ``prefix`` (built with chunk 0) the LM's last hidden states over the prefix
        ``[B, N, D]`` and its padding mask ``[B, N]`` bool."""
        if any(camera_tokens.weight is not None for camera_tokens in visual):
            raise UserError(
                "soft token weights (budget=adaptive with rule=head while training) need the built-in "
                "backbone; with policy.lm use budget.rule=saliency"
            )
        sequence, key_mask = self.assemble(text, text_mask, visual, proprio)
        hidden = self.model(inputs_embeds=sequence * self.input_scale, attention_mask=key_mask.long()).last_hidden_state
        if prefix:
            return hidden, key_mask
        return hidden[:, -self.action_queries.shape[1] :]


def with_lora(model: nn.Module, cfg: LMConfig) -> nn.Module:
    """``model`` with LoRA adapters (rank ``lora_rank``, alpha ``lora_alpha``) on its attention
    and MLP projections and everything else frozen; needs peft."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError("policy.lm.finetune=lora needs peft (pip install peft); or use finetune=full or frozen") from None
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(model, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules=targets)).base_model.model


def self_contained(policy_config: dict[str, Any], policy: nn.Module) -> dict[str, Any]:
    """``policy_config`` (plain data) with each pretrained path replaced by the loaded
    model's full transformers config, so a checkpoint rebuilds the policy without the
    original directory (its weights are in the checkpoint)."""
    config = {**policy_config, "vision": dict(policy_config["vision"]), "lm": dict(policy_config["lm"])}
    encoder = next(iter(policy.vision.values()))
    for section, model in (("vision", getattr(encoder, "model", None)), ("lm", getattr(policy.backbone, "model", None))):
        if config[section].get("path") and model is not None:
            hf = model.config.to_dict()
            for key in ("architectures", "transformers_version", "dtype", "torch_dtype", "_name_or_path", "model_type"):
                hf.pop(key, None)
            config[section].update(path="", hf_config=hf)
    return config
