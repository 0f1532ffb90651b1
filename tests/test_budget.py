"""Token-budget schedules: fixed, per-task, adaptive (head and saliency rule), anneal."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gridslab.compress.base import Tokens
from gridslab.config import load_config
from gridslab.config.run_layout import last_checkpoint
from gridslab.errors import UserError
from gridslab.eval.checkpoint import load_policy
from gridslab.policy.backbone import Backbone
from gridslab.policy.budget import build_budget
from gridslab.policy.config import BackboneConfig, PolicyConfig, VisionConfig
from gridslab.policy.flops import flops_by_tokens, gflops_at
from gridslab.policy.vla import VLA
from gridslab.train.fit import fit
from tests.helpers import ACTION_DIM, CAMERAS, INSTRUCTIONS, PROPRIO_DIM, QUICK_FIT, first_row, make_batch, tiny_config

GRIDS16 = {"name": "grids", "k": 16}


def make_policy(budget: dict, compressor: dict = GRIDS16, seed: int = 0) -> VLA:
    torch.manual_seed(seed)
    return VLA(PolicyConfig(), compressor, CAMERAS, PROPRIO_DIM, ACTION_DIM, budget)


def slot_counts(outputs) -> list[int]:
    return next(iter(outputs["tokens"].values())).mask.sum(1).tolist()


def test_fixed_budget_gives_every_sample_all_slots():
    policy = make_policy({"name": "fixed"}).eval()
    with torch.no_grad():
        outputs = policy(make_batch(policy, batch=3))
    assert outputs["budget"].k is None and slot_counts(outputs) == [16, 16, 16]


def test_per_task_budget_looks_up_instructions_and_rejects_bad_entries():
    policy = make_policy({"name": "per_task", "k_by_task": {INSTRUCTIONS[0]: 2}, "default_k": 5}).eval()
    batch = {**make_batch(policy, batch=2), "instruction": INSTRUCTIONS}
    with torch.no_grad():
        outputs = policy(batch)
    assert slot_counts(outputs) == [2, 5]
    assert next(iter(outputs["tokens"].values())).tokens.shape[1] == 5  # trimmed to the batch's largest k
    with pytest.raises(UserError, match="out of range; valid: 1..16"):
        make_policy({"name": "per_task", "k_by_task": {"lift": 17}})
    with pytest.raises(UserError, match="unknown task 'stack the cubes'"):
        make_policy({"name": "per_task", "k_by_task": {"stack the cubes": 2}}).budget.check_tasks(["lift the red cube"])


def test_non_fixed_budget_needs_a_compressor_that_honours_k():
    with pytest.raises(UserError, match="compressor=identity keeps every patch"):
        make_policy({"name": "per_task", "default_k": 2}, compressor={"name": "identity"})
    with pytest.raises(UserError, match="compressor=identity keeps every patch"):
        load_config(["compressor=identity", "budget=adaptive", "budget.k_max=8"])


def test_adaptive_k_max_sets_the_compressor_slots():
    cfg = load_config(["budget=adaptive", "budget.k_min=2", "budget.k_max=32"])
    assert cfg.compressor.k == 32 and cfg.budget.k_min == 2
    with pytest.raises(UserError, match="budget.rule='mass'; valid: head, saliency"):
        make_policy({"name": "adaptive", "rule": "mass"})


def test_adaptive_head_soft_in_training_hard_at_inference():
    policy = make_policy({"name": "adaptive", "signal": "relax", "k_min": 2, "k_max": 16, "temperature": 0.5})
    batch = make_batch(policy, batch=3)
    loss, outputs = policy.loss(batch)
    choice = outputs["budget"]
    assert choice.k is None and choice.weight.shape == (3, 16)
    assert ((choice.soft_k >= 2) & (choice.soft_k <= 16)).all()
    assert (choice.weight[:, :2] == 1).all() and (choice.weight[:, 1:] <= choice.weight[:, :-1] + 1e-6).all()
    assert loss > outputs["action_loss"]  # the compute penalty is on
    outputs["action_loss"].backward()  # the action loss alone reaches the head through the slot weights
    assert policy.budget.head[-1].weight.grad.abs().sum() > 0
    policy.eval()
    with torch.no_grad():
        hard = policy(batch)
    soft_k = hard["budget"].soft_k
    assert slot_counts(hard) == soft_k.round().long().tolist()
    # slot j is kept at inference exactly when its training weight is above 0.5
    weights = policy.budget.slot_weights(soft_k)
    assert ((weights > 0.5).sum(1) == soft_k.round().long()).all()


def _train_budget_head(penalty: float, steps: int = 15) -> float:
    policy = make_policy({"name": "adaptive", "signal": "relax", "k_min": 1, "k_max": 16, "penalty": penalty}, seed=3)
    batch = make_batch(policy, batch=4, seed=5)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        loss, outputs = policy.loss(batch)
        loss.backward()
        optimizer.step()
    return float(outputs["budget"].soft_k.detach().mean())


def test_larger_compute_penalty_gives_smaller_mean_k():
    no_penalty, small, large = (_train_budget_head(p) for p in (0.0, 0.5, 5.0))
    assert large < small < no_penalty + 1e-6
    assert large < 8.5 - 1.0  # moved well below the middle of the range it started at


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads beside a busy process run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_on_constructed_sensitivity(signal: str, scale: float, steps: int = 20) -> list[int]:
    """Train only the budget head of a small frozen policy on 8 samples whose targets are its
    own actions at K=1 (even rows: one token suffices) or at K=16 (odd rows: they need all);
    the action head's weights are scaled by ``scale``, so every loss difference between Ks is
    ``scale`` times as large. Returns the inference K per sample."""
    torch.manual_seed(1)
    cfg = PolicyConfig(vision=VisionConfig(dim=32, depth=1, heads=2), backbone=BackboneConfig(dim=32, heads=2))
    budget = {"name": "adaptive", "signal": signal, "k_min": 1, "k_max": 16, "probe_ks": [1, 16]}
    policy = VLA(cfg, GRIDS16, CAMERAS, PROPRIO_DIM, ACTION_DIM, budget)
    batch = make_batch(policy, batch=8, seed=4)
    with torch.no_grad():
        policy.head.proj.weight.mul_(scale)
        for k, rows in ((1, slice(0, None, 2)), (16, slice(1, None, 2))):
            features, _, _, _ = policy.encode({**batch, "k": torch.full((8,), k)})
            batch["actions"][rows] = policy.head(features)[rows]
    for name, parameter in policy.named_parameters():
        parameter.requires_grad_(name.startswith("budget."))
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-2)
    for step in range(steps):
        policy.budget.step = step
        optimizer.zero_grad()
        loss, outputs = policy.loss(batch)
        signal_loss = policy.budget.signal_loss(policy, batch, outputs["budget"])
        (loss if signal_loss is None else loss + signal_loss).backward()
        optimizer.step()
    with torch.no_grad():
        return policy.eval()(batch)["budget"].k.tolist()


def test_sensitivity_signal_gives_many_tokens_only_to_samples_that_need_them(one_thread):
    ks = _train_on_constructed_sensitivity("sensitivity", scale=0.01)
    assert ks[0::2] == [1] * 4 and ks[1::2] == [16] * 4
    # the old relaxation sees loss differences 100x smaller than its compute penalty: one K for all
    relaxed = _train_on_constructed_sensitivity("relax", scale=0.01)
    assert len(set(relaxed)) == 1


def test_sensitivity_target_is_the_smallest_probe_k_within_tolerance_of_k_max():
    budget = build_budget({"name": "adaptive", "k_min": 2, "k_max": 16, "tolerance": 0.1}, 16, 8, 8)
    assert budget.probe_ks == [2, 6, 16]  # k_min, round(sqrt(2 * 16)), k_max
    losses = torch.tensor([[1.0, 1.0, 1.0], [1.3, 1.05, 1.0], [2.0, 1.5, 1.0], [0.5, 0.9, 1.0]])
    assert budget.sensitivity_target(losses).tolist() == [2, 6, 16, 2]
    budget.train()
    torch.manual_seed(0)
    choice = budget({"cam": torch.randn(512, 7, 7, 8)}, torch.randn(512, 2, 8), torch.ones(512, 2, dtype=torch.bool))
    assert choice.weight is None and choice.soft_k.requires_grad  # trained at hard Ks, the head by its target
    assert set(choice.k.tolist()) == set(range(2, 17))  # the action loss sees every K in [k_min, k_max]
    with pytest.raises(UserError, match="budget.signal='loss'; valid: sensitivity, relax"):
        build_budget({"name": "adaptive", "signal": "loss"}, 16, 8, 8)
    with pytest.raises(UserError, match="budget.probe_ks holds 20, out of range; valid: 2..16"):
        build_budget({"name": "adaptive", "k_min": 2, "probe_ks": [20]}, 16, 8, 8)


def test_sensitivity_budget_trains_through_the_training_step(tmp_path, lift_demos):
    cfg = tiny_config(tmp_path, lift_demos, *QUICK_FIT, "budget=adaptive", "budget.k_min=2", "budget.k_max=8")
    fit(cfg)
    events = EventAccumulator(str(Path(cfg.output_dir) / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/budget_loss", "train/action_loss"} <= tags
    ckpt = last_checkpoint(cfg.output_dir)
    learned, _, _ = load_policy(ckpt)
    assert any(name.startswith("budget.") for name in learned.state_dict())
    for overrides, slots in ((["budget=fixed"], [8, 8]), (["budget=per_task", "budget.default_k=3"], [3, 3])):
        replaced, replaced_cfg, _ = load_policy(ckpt, overrides)  # the learned head swapped for a parameter-free budget
        assert replaced_cfg.budget.name == overrides[0].split("=")[1]
        with torch.no_grad():
            batch = {**make_batch(replaced, batch=2), "instruction": INSTRUCTIONS[:2]}  # per_task reads the strings
            assert slot_counts(replaced(batch)) == slots
        shared = {name: tensor for name, tensor in learned.state_dict().items() if not name.startswith("budget.")}
        assert all(torch.equal(replaced.state_dict()[name], tensor) for name, tensor in shared.items())


def test_saliency_rule_spends_tokens_where_saliency_is_spread():
    budget = build_budget({"name": "adaptive", "rule": "saliency", "k_min": 2, "k_max": 16, "mass": 0.5}, 16, 8, 8)
    text, text_mask = torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    feats = torch.zeros(2, 7, 7, 8)
    feats[0, 3, 3] = 10.0  # one salient patch
    feats[1] = torch.randn(7, 7, 8, generator=torch.Generator().manual_seed(0))  # saliency everywhere
    k = budget({"cam": feats}, text, text_mask).k
    assert k[0] == 2 and k[1] > 8
    uniform = torch.zeros(1, 7, 7, 8)
    uniform[0, :, :, 0] = torch.tensor([[1.0, -1.0] * 25][0][:49]).view(7, 7)  # equal saliency on every patch
    assert budget({"cam": uniform}, text[:1], text_mask[:1]).k.item() == 16


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_anneal_caps_k_from_start_to_end(shape):
    budget = build_budget(
        {"name": "anneal", "k_start": 16, "k_end": 4, "anneal_start": 10, "anneal_end": 110, "anneal_shape": shape}, 16, 8, 8
    ).train()
    text, text_mask = torch.zeros(1, 2, 8), torch.ones(1, 2, dtype=torch.bool)
    ks = {}
    for step in (0, 10, 35, 60, 110, 500):
        budget.step = step
        ks[step] = int(budget({"cam": torch.zeros(1, 7, 7, 8)}, text, text_mask).k)
    progress = 0.25 if shape == "linear" else 0.5 * (1 - math.cos(math.pi * 0.25))
    assert ks[0] == ks[10] == 16 and ks[110] == ks[500] == 4 and ks[60] == 10
    assert ks[35] == round(16 - 12 * progress)
    assert int(budget.eval()({"cam": torch.zeros(1, 7, 7, 8)}, text, text_mask).k) == 4  # inference: k_end
    with pytest.raises(UserError, match="budget.k_end=0 is out of range"):
        build_budget({"name": "fixed", "anneal_end": 10}, 16, 8, 8)
    with pytest.raises(UserError, match="needs budget.anneal_end > 0"):
        build_budget({"name": "anneal", "anneal_end": 0}, 16, 8, 8)


def test_anneal_caps_a_learned_budget_softly():
    budget = build_budget(
        {"name": "adaptive", "signal": "relax", "k_min": 1, "k_max": 16, "k_end": 3, "anneal_end": 100}, 16, 8, 8
    ).train()
    budget.step = 100
    choice = budget({"cam": torch.randn(2, 7, 7, 8)}, torch.randn(2, 2, 8), torch.ones(2, 2, dtype=torch.bool))
    assert (choice.soft_k <= 3).all() and (choice.weight[:, 4:] < 0.5).all()


def test_zero_weight_slots_equal_masked_slots_and_unit_weights_change_nothing():
    torch.manual_seed(0)
    backbone = Backbone(BackboneConfig(dim=32, heads=4), 16, 32, 1, PROPRIO_DIM, 4).eval()
    text, text_mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    tokens, coords = torch.randn(2, 6, 32), torch.rand(2, 6, 2)
    proprio = torch.randn(2, PROPRIO_DIM)
    mask = torch.tensor([[True] * 3 + [False] * 3, [True] * 6])
    with torch.no_grad():
        masked = backbone(text, text_mask, [Tokens(tokens, coords, mask)], proprio)
        weighted = backbone(text, text_mask, [Tokens(tokens, coords, torch.ones_like(mask), mask.float())], proprio)
        unit = backbone(text, text_mask, [Tokens(tokens, coords, mask, torch.ones(2, 6))], proprio)
    assert torch.allclose(masked, weighted, atol=1e-5) and torch.allclose(masked, unit, atol=1e-5)


def test_adaptive_sample_alone_equals_sample_in_a_larger_k_batch():
    policy = make_policy({"name": "adaptive", "rule": "saliency", "k_min": 1, "k_max": 16, "mass": 0.3}).eval()
    batch = make_batch(policy, batch=4, seed=2)
    for camera in CAMERAS:  # sample 0: flat images (few salient patches); others: noise
        batch["images"][camera][0] = 128
    with torch.no_grad():
        together = policy(batch)
        alone = policy(first_row(batch))
    counts = slot_counts(together)
    assert counts[0] < max(counts)
    assert torch.allclose(alone["actions"][0], together["actions"][0], atol=1e-5)


def test_sharp_slot_weights_keep_gradients_finite():
    """Weights that underflow to 0 (many slots, low temperature) must not give NaN gradients."""
    policy = make_policy(
        {"name": "adaptive", "signal": "relax", "k_min": 1, "k_max": 49, "temperature": 0.05},
        compressor={"name": "grids", "k": 49},
    )
    torch.nn.init.constant_(policy.budget.head[-1].bias, -8.0)  # soft_k near k_min: most weights are exactly 0
    loss, outputs = policy.loss(make_batch(policy, batch=2))
    assert (outputs["budget"].weight == 0).any()
    loss.backward()
    assert all(p.grad.isfinite().all() for p in policy.parameters() if p.grad is not None)


def test_flops_follow_the_actual_k():
    policy = make_policy({"name": "fixed"})
    table = flops_by_tokens(policy)
    assert sorted(table) == list(range(1, 17)) and policy.training
    assert all(table[k] < table[k + 1] for k in range(1, 16))
    assert gflops_at(table, 2.5) == pytest.approx((table[2] + table[3]) / 2)
    identity = flops_by_tokens(make_policy({"name": "fixed"}, compressor={"name": "identity"}))
    assert list(identity) == [49] and identity[49] > table[16]
