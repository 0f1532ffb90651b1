"""Registries of the towers a policy is built from, timm-style: a name -> a builder.

``VISION_TOWERS`` (``policy.vision.backbone``): ``vit`` (the built-in ViT, compressor after
block ``compress_after``) and the pretrained ``siglip`` / ``dinov2`` towers (compressor on
their output patch grid, or after block ``tower_compress_after``). ``LM_BACKBONES`` (``policy.lm.backbone``): ``none`` (the built-in
transformer, ``policy.backbone``) and the pretrained ``qwen2`` / ``llama`` / ``gemma`` LMs.
The names the config accepts are listed in ``gridslab.policy.config`` (light, checked at
load time); a test keeps both in step. Add a tower by registering its builder here.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from gridslab.compress import build_compressor, check_k
from gridslab.policy.backbone import Backbone
from gridslab.policy.config import PolicyConfig
from gridslab.policy.pretrained import LM_FAMILIES, VISION_FAMILIES, PretrainedBackbone, PretrainedVisionEncoder
from gridslab.policy.vision import PatchEncoder, VisionEncoder
from gridslab.registry import Registry

VISION_TOWERS: Registry[PatchEncoder] = Registry("policy.vision.backbone")
LM_BACKBONES: Registry[nn.Module] = Registry("policy.lm.backbone")


@VISION_TOWERS.register("vit")
def build_vit(cfg: PolicyConfig, compressor_cfg: Any) -> PatchEncoder:
    """The built-in ViT of ``cfg.vision`` with its compressor at width ``cfg.vision.dim``."""
    compressor = build_compressor(compressor_cfg, cfg.vision.dim)
    return VisionEncoder(cfg.vision, compressor, checkpointing=cfg.gradient_checkpointing)


def build_pretrained_tower(cfg: PolicyConfig, compressor_cfg: Any) -> PatchEncoder:
    """A SigLIP / DINOv2 tower from ``cfg.vision`` (local path or random ``hf_config``)."""
    return PretrainedVisionEncoder(cfg.vision, compressor_cfg, checkpointing=cfg.gradient_checkpointing)


for _name in VISION_FAMILIES:
    VISION_TOWERS.register(_name)(build_pretrained_tower)


@LM_BACKBONES.register("none")
def build_builtin_backbone(cfg: PolicyConfig, *dims: int) -> nn.Module:
    """The built-in transformer ``cfg.backbone`` (dims: see ``Backbone``)."""
    return Backbone(cfg.backbone, *dims, checkpointing=cfg.gradient_checkpointing)


def build_pretrained_lm(cfg: PolicyConfig, *dims: int) -> nn.Module:
    """A Qwen2 / Llama / Gemma LM from ``cfg.lm`` as the backbone (dims: see ``Backbone``)."""
    return PretrainedBackbone(cfg.lm, *dims, checkpointing=cfg.gradient_checkpointing)


for _name in LM_FAMILIES:
    LM_BACKBONES.register(_name)(build_pretrained_lm)


def make_vision_encoder(cfg: PolicyConfig, compressor_cfg: Any) -> PatchEncoder:
    """The tower ``cfg.vision.backbone`` with its compressor; a ``k`` the tower's patch grid
    cannot give fails first, before anything is built (``check_k``)."""
    side = cfg.vision.patch_grid_side()
    if side is not None:
        check_k(compressor_cfg, side, side)
    return VISION_TOWERS.entry(cfg.vision.backbone).factory(cfg, compressor_cfg)


def make_backbone(cfg: PolicyConfig, *dims: int) -> nn.Module:
    """The backbone ``cfg.lm.backbone`` over (text dim, vision dim, cameras, proprio dim, chunk)."""
    return LM_BACKBONES.entry(cfg.lm.backbone).factory(cfg, *dims)
