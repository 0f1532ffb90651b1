"""Pretrained towers through transformers, loaded from a local directory only.

* ``PretrainedVisionEncoder``: SigLIP or DINOv2 vision tower for one camera. Its output
  patch grid ``[B, g, g, C]`` (g = input_size / patch_size; DINOv2's CLS and register tokens
  dropped) goes to the compressor, exactly where the built-in ViT hands over its grid, so
  GridS and every other compressor plug in unchanged. As in the GridS reference the tower
  runs whole before compression by default; with ``tower_compress_after = L`` below its
  depth, the compressor reads the patch tokens after block L (DINOv2's CLS and registers
  dropped there) and blocks L+1.. and the final norm run on the K compressed tokens only,
  their positions carried by the compressor's coordinate embedding (the built-in ViT's
  ``compress_after``).
* ``PretrainedBackbone``: a decoder LM (Qwen2 / Qwen2.5, Llama family incl. SmolLM, Gemma)
  run with ``inputs_embeds`` over the same sequence as the built-in backbone
  ``[instruction, visual tokens per camera, proprio, action queries]``, each part projected
  into the LM width; its padding mask is the budget's key mask. The action queries come
  last, so under the LM's causal mask they see the whole prompt. When the LM's directory
  holds its tokenizer (``load_tokenizer``), the instruction is that tokenizer's ids through the
  LM's own token embeddings; otherwise gridslab's hashed words and language encoder,
  projected into the LM width.

Weights come from ``path`` with ``local_files_only`` (``HF_HUB_OFFLINE`` is set too), so
nothing is ever downloaded; with no path, the tower is randomly initialised from
``hf_config`` (the transformers config fields), which is how tests and FLOP studies build
tiny or full-size shapes. A missing directory, an unloadable one or a missing package is one
``UserError`` line.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gridslab.compress import build_compressor
from gridslab.compress.base import Tokens
from gridslab.errors import UserError
from gridslab.policy.backbone import TokenSequence
from gridslab.policy.config import LanguageConfig, LMConfig, VisionConfig
from gridslab.policy.language import HashedWords, InstructionTokenizer, LMTokenizer
from gridslab.policy.layers import additive_key_mask
from gridslab.policy.vision import IMAGENET_MEAN, IMAGENET_STD, PatchEncoder


@dataclass(frozen=True)
class Family:
    """A transformers model family: model and config class names, image statistics, how
    many leading non-patch tokens its vision output carries (CLS, registers), and where a
    vision tower keeps its blocks and final norm (attribute paths)."""

    model: str
    config: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    prefix_tokens: int = 0
    layers: str = ""
    final_norm: str = ""


VISION_FAMILIES = {
    "siglip": Family(
        "SiglipVisionModel", "SiglipVisionConfig", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 0, "encoder.layers", "post_layernorm"
    ),
    "dinov2": Family("Dinov2Model", "Dinov2Config", IMAGENET_MEAN, IMAGENET_STD, 1, "encoder.layer", "layernorm"),
}
TOKENIZER_FILES = (  # the files that define how a transformers tokenizer splits text (fingerprinted)
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
)
LM_FAMILIES = {
    "qwen2": Family("Qwen2Model", "Qwen2Config"),
    "llama": Family("LlamaModel", "LlamaConfig"),
    "gemma": Family("GemmaModel", "GemmaConfig"),
}


def load_model(family_name: str, family: Family, path: str, hf_config: dict[str, Any], where: str) -> nn.Module:
    """The transformers model of ``family`` from local ``path`` (float32), or randomly
    initialised from ``hf_config`` when ``path`` is empty; in training mode either way
    (``from_pretrained`` returns models in eval mode, which would switch dropout and drop-path
    off while the policy trains; Lightning's ``train()``/``eval()`` calls set it from then on)."""
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
        return model_class.from_pretrained(directory, local_files_only=True, dtype=torch.float32).train()
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


def tokenizer_files(directory: Path) -> list[Path]:
    """The tokenizer files (``TOKENIZER_FILES``) present in ``directory``."""
    return [directory / name for name in TOKENIZER_FILES if (directory / name).is_file()]


def tokenizer_fingerprint(directory: Path) -> str:
    """sha256 (hex) over the names and bytes of the tokenizer files in ``directory``."""
    digest = hashlib.sha256()
    for file in tokenizer_files(directory):
        digest.update(f"{file.name}|{file.stat().st_size}|".encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def load_tokenizer(lm: LMConfig, language: LanguageConfig) -> InstructionTokenizer:
    """The instruction tokenizer ``policy.lm.tokenizer`` asks for (see ``LMConfig``): the LM's
    own (``LMTokenizer``, ``language.max_len`` ids) or gridslab's hashed words (``HashedWords``).

    A tokenizer.json is loaded as it is (the fast tokenizer the model ships), other layouts
    through ``AutoTokenizer``; local files only. A recorded directory without its tokenizer,
    or with other tokenizer files than the recorded fingerprint, is one ``UserError`` line.
    """
    hashed = HashedWords(language.max_len, language.vocab_size)
    if lm.backbone == "none" or lm.tokenizer == "hashed" or not (lm.tokenizer or lm.path):
        return hashed
    directory = Path(lm.tokenizer or lm.path).expanduser().resolve()
    if not tokenizer_files(directory):
        if not lm.tokenizer:  # the LM's directory, which has no tokenizer: today's behaviour, said once
            warnings.warn(
                f"policy.lm.path={lm.path} holds no tokenizer ({', '.join(TOKENIZER_FILES[:2])}, ...): the instruction "
                f"goes through gridslab's hashed words and policy.language encoder",
                stacklevel=2,
            )
            return hashed
        raise UserError(
            f"policy.lm.tokenizer={lm.tokenizer} holds no tokenizer ({', '.join(TOKENIZER_FILES[:2])}, ...); the policy "
            f"was trained with the one there: restore it, or point policy.lm.tokenizer at a copy"
        )
    fingerprint = tokenizer_fingerprint(directory)
    if lm.tokenizer_sha256 and fingerprint != lm.tokenizer_sha256:
        raise UserError(
            f"policy.lm.tokenizer={lm.tokenizer} is not the tokenizer the policy was trained with (sha256 "
            f"{fingerprint[:12]}..., recorded {lm.tokenizer_sha256[:12]}...): restore the original files"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers

        if (directory / "tokenizer.json").is_file():
            tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(directory, local_files_only=True)
        else:
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except ImportError:
        raise UserError(f"policy.lm.backbone={lm.backbone} needs transformers: pip install -e '.[pretrained]'") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"policy.lm tokenizer {directory}: cannot load it ({str(err).splitlines()[0][:160]})") from None
    return LMTokenizer(tokenizer, language.max_len, str(directory), fingerprint)


class PretrainedVisionEncoder(PatchEncoder):
    """SigLIP / DINOv2 tower for one camera: ``images uint8 [B, H, W, 3], ctx -> Tokens [B, K, C]``
    with C the tower's hidden size; ``compressor_cfg`` is built for that width.

    ``compress_after`` (L, from ``cfg.tower_compress_after``) of the tower's ``depth`` blocks
    run on the full patch grid; at L = depth the tower runs whole (``model(...)``, exactly as
    without the option) and nothing follows the compressor.
    """

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
        self.depth = int(hf.num_hidden_layers)
        self.compress_after = self.depth if cfg.tower_compress_after == -1 else cfg.tower_compress_after
        if self.compress_after > self.depth:
            raise UserError(
                f"policy.vision.tower_compress_after={cfg.tower_compress_after} exceeds the {cfg.backbone} tower's "
                f"{self.depth} blocks; valid: -1 (after the whole tower) or 0 .. {self.depth}"
            )
        root = "model.vision_model" if hasattr(self.model, "vision_model") else "model"  # transformers 4.x nests SigLIP's
        self.embeddings_path, self.layers_path = f"{root}.embeddings", f"{root}.{family.layers}"
        self.norm_path = f"{root}.{family.final_norm}"
        if self.compress_after < self.depth:
            layer = self.get_submodule(self.layers_path)[0]
            if "attention_mask" not in inspect.signature(layer.forward).parameters:
                raise UserError(
                    f"policy.vision.tower_compress_after={self.compress_after} needs {cfg.backbone} blocks that take an "
                    f"attention mask (transformers >= 5); use -1 (after the whole tower) with this transformers"
                )
        self.prefix_tokens = family.prefix_tokens + int(getattr(hf, "num_register_tokens", 0) or 0)
        self.interpolate = self.image_size != hf.image_size and cfg.backbone == "siglip"
        self.compressor = build_compressor(compressor_cfg, self.dim)
        self.register_buffer("image_mean", torch.tensor(family.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(family.std).view(1, 3, 1, 1), persistent=False)
        unused = [
            getattr(self.model, "head", None),  # SigLIP's pooling head (transformers >= 5)
            getattr(getattr(self.model, "vision_model", None), "head", None),  # ... and where 4.x keeps it
            getattr(self.get_submodule(self.embeddings_path), "mask_token", None),
        ]  # DINOv2's masked-image token
        for module_or_param in (u for u in unused if u is not None):
            module_or_param.requires_grad_(False)  # never in the loss: DDP would wait for its gradient
        if cfg.freeze:
            self.model.requires_grad_(False)
        if checkpointing:
            enable_checkpointing(self.model)

    def run_layers(self, hidden: Tensor, start: int, stop: int, keys: Tensor | None) -> Tensor:
        """The tower's blocks ``start .. stop - 1`` over ``hidden [B, N, C]``; keys: ``[B, N]``
        bool or float key weights (``additive_key_mask``), or None (every token a key)."""
        bias = None if keys is None else additive_key_mask(keys, hidden.dtype)
        for layer in self.get_submodule(self.layers_path)[start:stop]:
            output = layer(hidden, attention_mask=bias)
            hidden = output[0] if isinstance(output, tuple) else output  # transformers 4.x returns tuples
        return hidden

    def patch_features(self, images: Tensor) -> Tensor:
        """The patch grid ``[B, g, g, C]`` the compressor reads: the tower's last hidden state,
        or with L < depth the hidden state after block L (before the final norm)."""
        kwargs = {"interpolate_pos_encoding": True} if self.interpolate else {}
        pixels = self.normalize(images)
        if self.compress_after == self.depth:
            hidden = self.model(pixel_values=pixels, **kwargs).last_hidden_state
        else:
            hidden = self.run_layers(self.get_submodule(self.embeddings_path)(pixels, **kwargs), 0, self.compress_after, None)
        hidden = hidden[:, self.prefix_tokens :]
        return hidden.reshape(hidden.shape[0], self.grid_size, self.grid_size, self.dim)

    def encode_tokens(self, compressed: Tokens) -> Tokens:
        """The tower's blocks after L over the K slots (keys masked / weighted), then its final
        norm; at L = depth the compressed tokens as they are."""
        if self.compress_after == self.depth:
            return compressed
        keys = compressed.mask if compressed.weight is None else compressed.key_weights()
        hidden = self.run_layers(compressed.tokens, self.compress_after, self.depth, keys)
        tokens = self.get_submodule(self.norm_path)(hidden)
        return Tokens(tokens, compressed.coords, compressed.mask, compressed.weight)

    def flop_component(self, path: str) -> str | None:
        """Which FLOPs component the module at ``path`` (relative to this encoder) counts toward:
        the whole tower (``model``, L = depth) or the embeddings and blocks up to L count as
        vision_before, the later blocks and the final norm as vision_after; None for the
        modules inside those."""
        if path == "compressor":
            return "compressor"
        if self.compress_after == self.depth:
            return "vision_before" if path == "model" else None
        if path == self.embeddings_path:
            return "vision_before"
        if path == self.norm_path:
            return "vision_after"
        prefix = self.layers_path + "."
        if path.startswith(prefix) and path[len(prefix) :].isdigit():
            return "vision_before" if int(path[len(prefix) :]) < self.compress_after else "vision_after"
        return None


class PretrainedBackbone(TokenSequence):
    """A decoder LM over the assembled sequence -> action-query features ``[B, H, D]`` (D = the
    LM's hidden size). Soft slot weights are not supported (the LM takes a 0/1 padding mask).

    text_dim 0: the instruction arrives as the LM's own token embeddings (``embed_text``,
    trained as the rest of the LM under ``finetune``), else as features of that width,
    projected (see ``TokenSequence``).
    """

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
        self.own_text = text_dim == 0
        if not self.own_text:
            model.get_input_embeddings().requires_grad_(False)  # inputs arrive as inputs_embeds; never in the loss
        # Gemma multiplies inputs_embeds by sqrt(width); undo it so projected tokens enter at their own scale
        # (the LM's own token embeddings keep it, as when it reads ids)
        self.input_scale = float(model.config.hidden_size) ** -0.5 if cfg.backbone == "gemma" else 1.0
        if checkpointing:
            enable_checkpointing(model)
        if cfg.finetune == "frozen":
            model.requires_grad_(False)
        elif cfg.finetune == "lora":
            model = with_lora(model, cfg)
        self.model = model

    @property
    def vocab_rows(self) -> int:
        """Rows of the LM's token-embedding table (ids must stay below it)."""
        return int(self.model.get_input_embeddings().num_embeddings)

    def embed_text(self, ids: Tensor) -> Tensor:
        """The LM's own token embeddings of instruction ids ``[B, T]`` -> ``[B, T, D]``."""
        return self.model.get_input_embeddings()(ids)

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
        if self.own_text:
            length = text.shape[1]
            sequence = torch.cat([sequence[:, :length], sequence[:, length:] * self.input_scale], dim=1)
        else:
            sequence = sequence * self.input_scale
        hidden = self.model(inputs_embeds=sequence, attention_mask=key_mask.long()).last_hidden_state
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
    original directory (its weights are in the checkpoint); with an LM backbone, the
    instruction tokenizer it was built with is recorded (``policy.lm.tokenizer``: the
    directory, or "hashed"; ``tokenizer_sha256``), so evaluation tokenizes the same way."""
    config = {**policy_config, "vision": dict(policy_config["vision"]), "lm": dict(policy_config["lm"])}
    if config["lm"].get("backbone", "none") != "none":
        tokenizer = policy.processor.tokenizer
        config["lm"].update(tokenizer=tokenizer.source, tokenizer_sha256=tokenizer.sha256)
    encoder = next(iter(policy.vision.values()))
    for section, model in (("vision", getattr(encoder, "model", None)), ("lm", getattr(policy.backbone, "model", None))):
        if config[section].get("path") and model is not None:
            hf = model.config.to_dict()
            for key in ("architectures", "transformers_version", "dtype", "torch_dtype", "_name_or_path", "model_type"):
                hf.pop(key, None)
            config[section].update(path="", hf_config=hf)
    return config
