"""The pi0 FLOPs "as the paper counts" (``benchmarks/cost.py``): each scanned layer stack
once, the patch embeddings in full, plus openpi's SigLIP head on every patch."""

from __future__ import annotations

from functools import partial

from gridslab.config import load_config, to_plain
from gridslab.policy.factory import build_policy
from gridslab.policy.flops import build_on_meta
from tests.helpers import load_benchmark

cost = load_benchmark("cost")
CAMERAS, PATCHES, PATCH_PX, SIGLIP_WIDTH, GEMMA_WIDTH = 3, 256, 14, 1152, 2048


def test_paper_count_takes_embeddings_in_full_and_adds_openpi_head():
    overrides = ["policy=pi0", "env.image_size=224", "env.cameras=[agentview,robot0_eye_in_hand,wrist]", "compressor=grids"]
    policy = build_on_meta(partial(build_policy, to_plain(load_config(overrides)), 9, 7))
    embed = cost.embedding_flops(policy)
    assert embed == CAMERAS * 2 * PATCHES * (PATCH_PX * PATCH_PX * 3) * SIGLIP_WIDTH  # the patchify conv
    assert cost.openpi_head_flops(policy) == CAMERAS * 2 * PATCHES * SIGLIP_WIDTH * GEMMA_WIDTH

    block, layer, step = 10**9, 3 * 10**8, 2 * 10**7  # one SigLIP block (3 cameras), one Gemma layer, one expert block-step
    expert_steps = len(policy.head.expert.blocks) * policy.head.steps
    split = {
        "vision_before": 27 * block + embed,
        "backbone": 18 * layer,
        "head": expert_steps * step,
        "language": 5 * 10**6,
        "compressor": 10**6,
    }
    counted = cost.one_layer_gflops(policy, split)
    assert abs(counted["one_layer_vision"] - (block + embed) / 1e9) < 1e-9
    assert abs(counted["one_layer_backbone"] - layer / 1e9) < 1e-9
    assert abs(counted["one_layer_head"] - step / 1e9) < 1e-9
    expected = (block + embed + layer + step + 6 * 10**6) / 1e9
    assert abs(counted["one_layer_total"] - expected) < 1e-9
    assert abs(counted["paper_convention_total"] - expected - cost.openpi_head_flops(policy) / 1e9) < 1e-9
