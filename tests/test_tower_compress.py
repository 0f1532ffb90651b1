"""GridS inside a pretrained vision tower (``policy.vision.tower_compress_after = L``): tiny
random SigLIP and DINOv2 towers give [B, K, C] tokens with blocks after L running on the K
sampled tokens, gradients reach the sampler, padded slots stay out of the later blocks,
L = depth is the whole-tower path exactly, and FLOPs split before / after L."""

from __future__ import annotations

import pytest
import torch

from gridslab.errors import UserError
from gridslab.policy.flops import COMPONENTS, flops_by_component
from tests.test_pretrained import policy_from, pretrained, with_targets

TOWERS = ["siglip", "dinov2"]
DEPTH, PATCHES = 2, 16  # the tiny towers: 2 blocks over a 4 x 4 patch grid (32 px, patch 8)


def tower_policy(vision: str, after: int, *extra: str):
    return policy_from([*pretrained(vision, "qwen2"), f"policy.vision.tower_compress_after={after}", *extra])


@pytest.mark.parametrize("vision", TOWERS)
@pytest.mark.parametrize("after", [0, 1])
def test_blocks_after_l_run_on_the_k_sampled_tokens(vision, after):
    policy = tower_policy(vision, after).eval()
    encoder = policy.vision["agentview"]
    lengths = []
    for layer in encoder.get_submodule(encoder.layers_path):
        layer.register_forward_hook(lambda module, args, output: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        outputs = policy(policy.example_batch(2))
    prefix = 1 if vision == "dinov2" else 0  # DINOv2's CLS token runs with the patches up to L
    per_camera = [PATCHES + prefix] * after + [4] * (DEPTH - after)
    assert lengths == per_camera  # hooks on the first camera's tower only
    for tokens in outputs["tokens"].values():
        assert tokens.tokens.shape == (2, 4, 32) and tokens.coords.shape == (2, 4, 2)
    assert outputs["actions"].shape == (2, 8, 7) and outputs["actions"].isfinite().all()


@pytest.mark.parametrize("vision", TOWERS)
def test_gradients_reach_the_sampler_through_the_later_blocks(vision):
    policy = tower_policy(vision, 1).train()
    loss, _ = policy.loss(with_targets(policy.example_batch(2)))
    loss.backward()
    sampler = policy.vision["agentview"].compressor.coord_mlp[-1].weight  # the uniform init's first gradient lands here
    assert sampler.grad is not None and sampler.grad.abs().sum() > 0
    missing = [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]


@pytest.mark.parametrize("vision", TOWERS)
def test_l_equal_to_the_depth_is_the_whole_tower_path_exactly(vision):
    whole = policy_from(pretrained(vision, "qwen2")).eval()
    at_depth = tower_policy(vision, DEPTH).eval()
    batch = whole.example_batch(2)
    with torch.no_grad():
        assert torch.equal(whole(batch)["actions"], at_depth(batch)["actions"])
        # the split pieces are the tower: embeddings, every block, final norm = model(...)
        encoder = whole.vision["agentview"]
        pixels = encoder.normalize(batch["images"]["agentview"])
        split = encoder.run_layers(encoder.get_submodule(encoder.embeddings_path)(pixels), 0, DEPTH, None)
        assert torch.equal(encoder.get_submodule(encoder.norm_path)(split), encoder.model(pixel_values=pixels).last_hidden_state)


@pytest.mark.parametrize("vision", TOWERS)
def test_slots_past_a_samples_budget_stay_out_of_the_later_blocks(vision):
    policy = tower_policy(vision, 1, "compressor.k=8").eval()
    batch = policy.example_batch(2)
    first = {
        "images": {camera: frames[:1] for camera, frames in batch["images"].items()},
        **{key: batch[key][:1] for key in ("proprio", "instruction_ids", "instruction_mask", "instruction")},
    }
    with torch.no_grad():
        mixed = policy({**batch, "k": torch.tensor([3, 8])})["tokens"]["agentview"]
        alone = policy({**first, "k": torch.tensor([3])})["tokens"]["agentview"]
    assert mixed.mask[0].sum() == 3 and alone.tokens.shape[1] == 3
    assert torch.allclose(mixed.tokens[0, :3], alone.tokens[0], atol=1e-5)


def test_flops_split_before_and_after_l():
    policies = {after: tower_policy("siglip", after).eval() for after in (0, 1, DEPTH)}
    splits = {after: flops_by_component(policy, policy.example_batch(1)) for after, policy in policies.items()}
    for split in splits.values():
        assert sum(split[part] for part in COMPONENTS) == split["total"]
    assert splits[0]["vision_before"] < splits[1]["vision_before"] < splits[DEPTH]["vision_before"]
    assert splits[0]["vision_after"] > splits[1]["vision_after"] > splits[DEPTH]["vision_after"] == 0
    assert splits[0]["total"] < splits[1]["total"] < splits[DEPTH]["total"]  # K = 4 of 16 patches after L


def test_bad_tower_compress_after_is_one_line():
    with pytest.raises(UserError, match=r"tower_compress_after=3 exceeds the siglip tower's 2 blocks; valid: -1"):
        tower_policy("siglip", 3)
    with pytest.raises(UserError, match=r"tower_compress_after=1 is for the pretrained towers .*compress_after"):
        policy_from(["policy.vision.tower_compress_after=1"])
