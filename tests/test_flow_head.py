"""The flow-matching head (pi0-style action expert): the loss learns, seeded Euler sampling
repeats and ignores the rest of the batch, the cached prefix changes nothing, every compressor
and budget runs through it, and a tiny flow policy trains, saves and reloads."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from gridslab.compress import COMPRESSORS
from gridslab.config import load_config, to_plain
from gridslab.errors import UserError
from gridslab.eval.checkpoint import load_policy
from gridslab.policy.config import HeadConfig
from gridslab.policy.factory import build_policy
from gridslab.policy.flops import COMPONENTS, build_on_meta, flops_by_component
from gridslab.policy.flow import sample_time
from gridslab.policy.heads import FlowHead
from gridslab.train.fit import fit
from tests.helpers import TINY, make_batch, make_policy, tiny_config

FLOW = {"name": "flow", "dim": 32, "heads": 2, "depth": 2, "steps": 4}
FLOW_OVERRIDES = ["policy.head.name=flow", "policy.head.dim=32", "policy.head.heads=2", "policy.head.steps=4"]


def _mean_loss(policy, batch, draws: int = 8) -> float:
    torch.manual_seed(123)  # the same noise and flow times before and after training
    with torch.no_grad():
        return sum(policy.loss(batch)[0].item() for _ in range(draws)) / draws


def test_flow_loss_decreases_when_overfitting_a_batch():
    policy = make_policy(head=FLOW)
    batch = make_batch(policy, 4)
    before = _mean_loss(policy, batch)
    optimiser = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    torch.manual_seed(0)
    for _ in range(100):
        loss, _ = policy.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert _mean_loss(policy, batch) < 0.75 * before


def test_flow_time_follows_beta_1_5_1():
    torch.manual_seed(0)
    t = sample_time(20000, HeadConfig(), torch.device("cpu"))
    assert 0.001 <= t.min() and t.max() <= 1.0
    assert abs(t.mean().item() - (0.6 * 0.999 + 0.001)) < 0.01  # Beta(1.5, 1) has mean 0.6


def test_seeded_euler_sampling_repeats_and_ignores_the_rest_of_the_batch():
    policy = make_policy(head=FLOW).eval()
    batch = {**make_batch(policy, 3), "noise_seed": torch.tensor([7, 8, 9])}
    with torch.no_grad():
        first = policy(batch)["actions"]
        torch.manual_seed(999)  # the global RNG plays no part
        again = policy(batch)["actions"]
        alone = policy({**make_batch(policy, 3), "noise_seed": torch.tensor([1, 8, 2])})["actions"]
        other_seeds = policy({**batch, "noise_seed": torch.tensor([70, 80, 90])})["actions"]
    assert first.shape == (3, 8, 7) and torch.equal(first, again)
    assert torch.allclose(first[1], alone[1], atol=1e-6)  # sample 1 does not depend on the others' seeds
    assert not torch.allclose(first, other_seeds)


def test_cached_prefix_gives_the_same_actions_as_recomputing_it():
    torch.manual_seed(0)
    head = FlowHead(HeadConfig(**FLOW), dim=24, action_dim=5, chunk=6).eval()
    prefix = torch.randn(2, 11, 24)
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[1, 7:] = False  # padded keys
    noise = torch.randn(2, 6, 5)
    with torch.no_grad():
        cached = head.sample(prefix, key_mask, noise, use_cache=True)
        uncached = head.sample(prefix, key_mask, noise, use_cache=False)
        padded_differently = head.sample(prefix.clone().index_fill_(1, torch.arange(7, 11), 5.0), key_mask, noise)
    assert torch.allclose(cached, uncached, atol=1e-6)
    assert torch.allclose(cached[1], padded_differently[1], atol=1e-5)  # padding keys are never attended


@pytest.mark.parametrize("compressor", COMPRESSORS.names())
def test_every_compressor_trains_and_samples_through_the_flow_head(compressor):
    policy = build_policy(to_plain(load_config([*TINY, *FLOW_OVERRIDES, f"compressor={compressor}", "compressor.k=4"])), 9, 7)
    assert policy.backbone.action_queries is None  # the expert reads the prefix, no queries
    batch = make_batch(policy, 2)
    loss, outputs = policy.loss(batch)
    loss.backward()
    assert loss.isfinite() and outputs["actions"].shape == (2, 8, 7)
    assert policy.head.expert.blocks[0].key_value.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert policy.eval()(batch)["actions"].isfinite().all()


def test_learned_budget_trains_through_the_flow_head():
    # signal=relax: the head learns through the soft slot weights (sensitivity trains it on probed
    # losses in the training step instead, whatever the action head)
    cfg = load_config([*TINY, *FLOW_OVERRIDES, "budget=adaptive", "budget.signal=relax", "budget.k_min=2", "budget.k_max=8"])
    policy = build_policy(to_plain(cfg), 9, 7)
    loss, outputs = policy.loss(make_batch(policy, 2))
    outputs["action_loss"].backward()  # soft slot weights reach the budget head through the expert's cross-attention
    assert policy.budget.head[-1].weight.grad.abs().sum() > 0


def test_flow_head_config_errors_are_one_line():
    with pytest.raises(UserError, match="policy.head.steps must be >= 1"):
        HeadConfig(name="flow", steps=0)
    with pytest.raises(UserError, match=r"policy.head.dim \(30\) must be divisible by policy.head.heads \(4\)"):
        HeadConfig(name="flow", dim=30)


def test_tiny_flow_policy_trains_reloads_and_evaluates_deterministically(tmp_path, lift_demos):
    cfg = tiny_config(tmp_path, lift_demos, *FLOW_OVERRIDES, "trainer.max_epochs=1", "trainer.limit_train_batches=3")
    result = fit(cfg)
    assert result["global_step"] == 3
    policy, _, _ = load_policy(result["last_checkpoint"])
    from gridslab.train.module import VLAModule

    module = VLAModule.load_from_checkpoint(result["last_checkpoint"], map_location="cpu", weights_only=True)
    batch = {**policy.example_batch(2), "noise_seed": torch.tensor([3, 4])}
    with torch.no_grad():
        expected = module.eval_policy.eval()(batch)["actions"]
        assert torch.allclose(expected, policy(batch)["actions"], atol=1e-6)
    assert policy.cfg.head.name == "flow" and policy.cfg.head.steps == 4
    from gridslab.eval.runner import evaluate_policy

    evaluation = ["eval.episodes=2", "eval.workers=1", "eval.max_steps=6", "eval.video_episodes=0"]
    policy, eval_cfg, _ = load_policy(result["last_checkpoint"], evaluation)
    for run in ("a", "b"):  # online episodes from evaluate.py's runner, twice: the same numbers
        evaluate_policy(policy, eval_cfg, tmp_path / run, checkpoint=result["last_checkpoint"], progress=False)
    assert (tmp_path / "a" / "summary.json").read_bytes() == (tmp_path / "b" / "summary.json").read_bytes()


def _pi0_on_meta(*overrides: str):
    cameras = "env.cameras=[agentview,robot0_eye_in_hand,wrist]"
    cfg = load_config(["policy=pi0", "env.image_size=224", cameras, "compressor=grids", "compressor.k=4", *overrides])
    policy = build_on_meta(partial(build_policy, to_plain(cfg), 9, 7))  # 3.7B parameters, no memory for weights
    return policy, flops_by_component(policy, policy.example_batch(1, instruction=" ".join(["word"] * 32)))


def test_pi0_preset_counts_on_the_meta_device_with_every_denoising_step():
    pytest.importorskip("transformers")
    policy, split = _pi0_on_meta()
    assert policy.chunk == 50 and policy.head.steps == 10 and len(policy.head.expert.blocks) == 18
    assert policy.backbone.dim == 2048 and policy.head.expert.action_in.out_features == 1024
    assert split["total"] == sum(split[part] for part in COMPONENTS)
    lm = policy.backbone.model
    lm_params = sum(p.numel() for p in lm.parameters()) - lm.get_input_embeddings().weight.numel()
    tokens = 32 + 3 * 4 + 1  # instruction, K per camera, proprio
    assert 1.0 < split["backbone"] / (2 * lm_params * tokens) < 1.05  # matmuls plus a little attention
    _, one_step = _pi0_on_meta("policy.head.steps=1")
    per_step = (split["head"] - one_step["head"]) / 9
    prefix_kv = 18 * 2 * tokens * 2048 * (2 * 1024)  # every block's prefix keys/values, once per call
    assert one_step["head"] - per_step == prefix_kv
