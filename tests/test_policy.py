"""The VLA policy: shapes, compressor placement, padding invariance, tokenizer, training signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gridslab.compress import COMPRESSORS
from gridslab.compress.base import Tokens
from gridslab.errors import UserError
from gridslab.policy.backbone import Backbone
from gridslab.policy.config import BackboneConfig, PolicyConfig, VisionConfig, as_policy_config
from gridslab.policy.language import tokenize
from tests.helpers import ACTION_DIM, CAMERAS, GRIDS, IDENTITY, INSTRUCTIONS, PROPRIO_DIM, first_row, make_batch, make_policy


@pytest.mark.parametrize("compressor, tokens_per_image", [(GRIDS, 4), (IDENTITY, 49)])
def test_forward_shapes(compressor, tokens_per_image):
    policy = make_policy(compressor)
    batch = make_batch(policy, batch=3)
    batch["instruction_ids"][2], batch["instruction_mask"][2] = 0, False  # an empty instruction
    outputs = policy(batch)
    assert outputs["actions"].shape == (3, 8, ACTION_DIM) and outputs["actions"].isfinite().all()
    assert policy.patch_grid == (7, 7)
    assert policy.max_tokens_per_image() == tokens_per_image
    assert list(outputs["tokens"]) == CAMERAS
    for camera_tokens in outputs["tokens"].values():
        assert camera_tokens.tokens.shape == (3, tokens_per_image, policy.cfg.vision.dim)
        assert camera_tokens.coords.shape == (3, tokens_per_image, 2)
        assert camera_tokens.mask.shape == (3, tokens_per_image) and camera_tokens.mask.all()
        assert 0 <= camera_tokens.coords.min() and camera_tokens.coords.max() <= 1
    assert policy.visual_tokens_per_image(outputs["tokens"]) == tokens_per_image


@pytest.mark.parametrize("name", sorted(set(COMPRESSORS.names()) - {"identity"}))
def test_every_compressor_honours_per_sample_budget(name):
    policy = make_policy({"name": name, "k": 4})
    batch = make_batch(policy, batch=2)
    outputs = policy({**batch, "k": torch.tensor([1, 3])})
    assert outputs["actions"].shape == (2, 8, ACTION_DIM) and outputs["actions"].isfinite().all()
    for camera_tokens in outputs["tokens"].values():
        # slots past the batch's largest k are dropped; the rest are masked per sample
        assert camera_tokens.tokens.shape == (2, 3, policy.cfg.vision.dim)
        assert camera_tokens.mask.sum(1).tolist() == [1, 3]
    assert policy.visual_tokens_per_image(outputs["tokens"]) == 2.0


@pytest.mark.parametrize("compress_after", [0, 1, 3])
def test_blocks_after_compression_run_on_k_tokens(compress_after):
    policy = make_policy(vision={"depth": 3, "compress_after": compress_after})
    encoder = policy.vision[CAMERAS[0]]
    assert len(encoder.grid_blocks) == compress_after and len(encoder.token_blocks) == 3 - compress_after
    seen_lengths: list[tuple[str, int]] = []
    for stage in ("grid_blocks", "token_blocks"):
        for block in getattr(encoder, stage):
            block.register_forward_hook(lambda module, args, out, stage=stage: seen_lengths.append((stage, out.shape[1])))
    policy(make_batch(policy))
    assert seen_lengths == [("grid_blocks", 49)] * compress_after + [("token_blocks", 4)] * (3 - compress_after)


def _camera_tokens(k_valid: int, k_slots: int, dim: int, generator: torch.Generator) -> Tokens:
    tokens = torch.randn(1, k_slots, dim, generator=generator)
    mask = torch.arange(k_slots)[None] < k_valid
    return Tokens(tokens, torch.rand(1, k_slots, 2, generator=generator), mask)


def _stack(samples: list[Tokens]) -> Tokens:
    return Tokens(*(torch.cat([getattr(s, part) for s in samples]) for part in ("tokens", "coords", "mask")))


def test_backbone_ignores_padding():
    torch.manual_seed(0)
    dim, chunk = 32, 4
    backbone = Backbone(
        BackboneConfig(dim=dim, heads=4), text_dim=16, vision_dim=dim, num_cameras=2, proprio_dim=PROPRIO_DIM, chunk=chunk
    ).eval()
    generator = torch.Generator().manual_seed(1)
    text = torch.randn(2, 6, 16, generator=generator)
    text_mask = torch.tensor([[True] * 3 + [False] * 3, [True] * 6])
    proprio = torch.randn(2, PROPRIO_DIM, generator=generator)
    # sample 0 has 2 real tokens per camera, sample 1 has 4: sample 0 is padded to 4 slots
    sample0 = [_camera_tokens(2, 2, dim, generator) for _ in range(2)]
    sample1 = [_camera_tokens(4, 4, dim, generator) for _ in range(2)]
    padded0 = [
        Tokens(
            torch.cat([t.tokens, torch.randn(1, 2, dim, generator=generator)], 1),
            torch.cat([t.coords, torch.rand(1, 2, 2, generator=generator)], 1),
            torch.cat([t.mask, torch.zeros(1, 2, dtype=torch.bool)], 1),
        )
        for t in sample0
    ]
    with torch.no_grad():
        alone = backbone(text[:1, :3], text_mask[:1, :3], sample0, proprio[:1])
        batched = backbone(text, text_mask, [_stack([p, s]) for p, s in zip(padded0, sample1)], proprio)
        assert torch.allclose(alone[0], batched[0], atol=1e-5)
        garbage_text = text.clone()
        garbage_text[0, 3:] = 1e3
        garbage_visual = [Tokens(t.tokens.clone(), t.coords, t.mask) for t in padded0]
        for t in garbage_visual:
            t.tokens[:, 2:] = -1e3
        changed = backbone(garbage_text, text_mask, [_stack([p, s]) for p, s in zip(garbage_visual, sample1)], proprio)
    assert torch.allclose(batched, changed, atol=1e-5)


def test_policy_output_independent_of_batch_mates_budget():
    policy = make_policy().eval()
    batch = {**make_batch(policy, batch=2), "k": torch.tensor([2, 4])}
    with torch.no_grad():
        together = policy(batch)["actions"]
        alone = policy(first_row(batch))["actions"]
    assert torch.allclose(alone[0], together[0], atol=1e-5)


def test_tokenizer_is_deterministic_and_pads():
    ids, mask = tokenize(["Pick up the RED cube!", "pick_up the red cube", ""], max_len=8, vocab_size=4096)
    again, _ = tokenize(["Pick up the RED cube!"], max_len=8, vocab_size=4096)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == (3, 8)
    assert torch.equal(ids[:1], again)
    assert torch.equal(ids[0], ids[1])  # case, punctuation and underscores do not matter
    assert mask[0].tolist() == [True] * 5 + [False] * 3 and not mask[2].any()
    assert (ids[~mask] == 0).all() and ((ids[mask] >= 1) & (ids[mask] < 4096)).all()
    truncated, truncated_mask = tokenize(["one two three four five six"], max_len=4)
    assert truncated_mask.all() and torch.equal(truncated, tokenize(["one two three four"], max_len=4)[0])


def test_predict_returns_env_units():
    policy = make_policy().eval()
    stats = {
        "action_mean": np.full(ACTION_DIM, 100.0),
        "action_std": np.full(ACTION_DIM, 0.01),
        "proprio_mean": np.zeros(PROPRIO_DIM),
        "proprio_std": np.ones(PROPRIO_DIM),
    }
    policy.set_normalization(stats)
    assert torch.equal(policy.state_dict()["processor.action_mean"], torch.full((ACTION_DIM,), 100.0))
    batch = make_batch(policy, batch=2)
    observations = {
        "images": {c: v.numpy() for c, v in batch["images"].items()},
        "proprio": batch["proprio"].numpy().astype(np.float32),
    }
    chunk = policy.predict(observations, INSTRUCTIONS)
    assert chunk.shape == (2, 8, ACTION_DIM) and chunk.dtype == np.float32
    assert ((chunk > 99) & (chunk < 101)).all()
    normalised = policy(batch)["actions"].detach().numpy()
    assert np.allclose(chunk, normalised * 0.01 + 100.0, atol=1e-4)
    with pytest.raises(UserError, match="proprio_std"):
        policy.set_normalization({**stats, "proprio_std": np.ones(3)})


def test_loss_decreases_when_overfitting_a_batch():
    policy = make_policy()
    batch = make_batch(policy, batch=4)
    batch["action_mask"][0, 5:] = False
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-4)
    losses = []
    for _ in range(30):
        loss, _ = policy.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_action_loss_reaches_grids_coordinates():
    policy = make_policy()
    loss, outputs = policy.loss(make_batch(policy, batch=2))
    loss.backward()
    compressor = policy.vision[CAMERAS[0]].compressor
    coordinate_grads = [p.grad for name, p in compressor.named_parameters() if "coord" in name and "embed" not in name]
    assert coordinate_grads and all(g is not None for g in coordinate_grads)
    assert sum(g.abs().sum() for g in coordinate_grads) > 0


def test_cameras_have_separate_or_shared_encoders():
    separate = make_policy()
    assert separate.vision[CAMERAS[0]] is not separate.vision[CAMERAS[1]]
    shared = make_policy(vision={"shared": True})
    assert shared.vision[CAMERAS[0]] is shared.vision[CAMERAS[1]]
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in separate.parameters())
    assert shared(make_batch(shared))["actions"].shape == (2, 8, ACTION_DIM)


def test_config_errors_are_one_line():
    with pytest.raises(UserError, match="patch_size"):
        VisionConfig(image_size=84, patch_size=10)
    with pytest.raises(UserError, match="compress_after"):
        VisionConfig(depth=2, compress_after=3)
    with pytest.raises(UserError, match="did you mean chunk"):
        as_policy_config({"chunks": 4})
    cfg = as_policy_config({"chunk": 4, "vision": {"stem": "patchify"}})
    assert isinstance(cfg, PolicyConfig) and cfg.vision.stem == "patchify" and cfg.replan_steps == 4
    assert PolicyConfig(**{"chunk": 6, "replan_every": 3, "vision": {"depth": 1, "compress_after": 1}}).vision.depth == 1


def test_tower_registries_match_the_names_the_config_accepts():
    from gridslab.policy.backbones import LM_BACKBONES, VISION_TOWERS
    from gridslab.policy.config import LM_BACKBONES as LM_NAMES
    from gridslab.policy.config import VISION_BACKBONES as VISION_NAMES

    assert VISION_TOWERS.names() == sorted(VISION_NAMES) and LM_BACKBONES.names() == sorted(LM_NAMES)
