"""Visual-token compressors: ``[B, H, W, C]`` patch features -> ``Tokens`` (see ``base``).

Each compressor lives in its own module next to its typed config and registers itself:
``grids`` (GridS, learned bilinear sampling points), ``identity`` (all patches),
``pool`` (adaptive average pooling), ``random`` (random patches), ``topk`` (FastV-style
saliency) and ``tokenlearner`` (learned soft spatial pooling).
``build_compressor(cfg, dim)`` is the one constructor; ``check_k(cfg, height, width)``
refuses a ``k`` the compressor cannot meaningfully give on the patch grid, building nothing.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from gridslab.compress import grids, identity, pool, random, tokenlearner, topk  # noqa: F401 - each registers itself
from gridslab.compress._registry import COMPRESSORS
from gridslab.compress.base import Compressor
from gridslab.errors import UserError


def build_compressor(cfg: DictConfig | dict[str, Any], dim: int) -> Compressor:
    """The compressor named by ``cfg.name`` for features of width ``dim`` (C).

    ``cfg`` holds ``name``, ``k`` (tokens per image, ``K_max``) and that compressor's
    options; unknown names, unknown keys, wrong types and ``k < 1`` raise a one-line
    ``UserError``.
    """
    config = typed_config(cfg)
    return COMPRESSORS.entry(str(config.name)).factory(config, dim)


def check_k(cfg: DictConfig | dict[str, Any], height: int, width: int) -> None:
    """Raise a one-line ``UserError`` naming the compressor, ``k``, the grid and the valid
    range if ``cfg.k`` is more than compressor ``cfg.name`` can meaningfully give on an
    ``height x width`` patch grid (its class's ``max_k`` / ``check_k``). Builds no module."""
    config = typed_config(cfg)
    name = str(config.name)
    COMPRESSORS.entry(name).factory.check_k(name, config.k, height, width)


def typed_config(cfg: DictConfig | dict[str, Any]) -> Any:
    """``cfg`` validated against its compressor's schema; ``k < 1`` raises a ``UserError``."""
    config = COMPRESSORS.config(cfg, where="compressor")
    if config.k < 1:
        raise UserError(f"compressor.k must be >= 1, got {config.k}")
    return config
