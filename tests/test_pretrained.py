"""Pretrained towers through transformers, built from tiny random configs (never downloaded):
GridS and every compressor on their patch grids, training, save/reload, local-path loading,
freezing, gradient checkpointing and the errors around them."""

from __future__ import annotations

import pytest
import torch

from gridslab.compress import COMPRESSORS
from gridslab.config import load_config, to_plain
from gridslab.errors import UserError
from gridslab.eval.checkpoint import load_policy
from gridslab.policy.factory import build_policy
from gridslab.train.fit import fit
from tests.helpers import QUICK_FIT, tiny_config

TINY_VISION = (
    "{hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, image_size: 32, patch_size: 8}"
)
TINY_LM = {
    "qwen2": "{hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 8}",
    "llama": "{hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 8}",
    "gemma": "{hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 24, vocab_size: 8}",
}
PAIRS = [("siglip", "qwen2"), ("dinov2", "llama"), ("siglip", "gemma")]


def pretrained(vision: str = "siglip", lm: str = "qwen2") -> list[str]:
    return [
        f"policy.vision.backbone={vision}",
        f"policy.vision.hf_config={TINY_VISION}",
        f"policy.lm.backbone={lm}",
        f"policy.lm.hf_config={TINY_LM[lm]}",
    ]


def policy_from(overrides: list[str], seed: int = 0):
    torch.manual_seed(seed)
    return build_policy(to_plain(load_config(overrides)), 9, 7)


def with_targets(batch: dict, chunk: int = 8) -> dict:
    size = batch["proprio"].shape[0]
    generator = torch.Generator().manual_seed(1)
    return {
        **batch,
        "actions": torch.randn(size, chunk, 7, generator=generator),
        "action_mask": torch.ones(size, chunk, dtype=torch.bool),
    }


@pytest.mark.parametrize("compressor", COMPRESSORS.names())
def test_every_compressor_runs_on_a_pretrained_patch_grid(compressor):
    policy = policy_from([*pretrained(), f"compressor={compressor}", "compressor.k=4"]).eval()
    assert policy.patch_grid == (4, 4) and policy.backbone.dim == 48
    with torch.no_grad():
        outputs = policy(policy.example_batch(2))
    expected = 16 if compressor == "identity" else 4
    for tokens in outputs["tokens"].values():
        assert tokens.tokens.shape == (2, expected, 32) and tokens.coords.shape == (2, expected, 2)
    assert outputs["actions"].shape == (2, 8, 7) and outputs["actions"].isfinite().all()


def test_grids_samples_the_towers_patch_grid():
    policy = policy_from(pretrained()).eval()
    encoder = policy.vision["agentview"]
    images = policy.example_batch(1)["images"]["agentview"]
    grid = encoder.patch_features(images)  # [1, 4, 4, 32] from the SigLIP tower
    from gridslab.compress.grids import sample_at

    centre = torch.tensor([[[(2 + 0.5) / 4, (1 + 0.5) / 4]]])  # patch (row 1, column 2)
    assert torch.allclose(sample_at(grid, centre)[0, 0], grid[0, 1, 2], atol=1e-6)


@pytest.mark.parametrize("vision, lm", PAIRS)
def test_pretrained_pair_trains_saves_and_reloads(tmp_path, lift_demos, vision, lm):
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        *pretrained(vision, lm),
        *QUICK_FIT,
        "optim.ema_decay=0",
    )
    result = fit(cfg)
    assert result["global_step"] == 2
    policy, _, _ = load_policy(result["last_checkpoint"])
    from gridslab.train.module import VLAModule

    module = VLAModule.load_from_checkpoint(result["last_checkpoint"], map_location="cpu", weights_only=True)
    batch = policy.example_batch(2)
    with torch.no_grad():
        assert torch.allclose(module.eval_policy.eval()(batch)["actions"], policy(batch)["actions"], atol=1e-6)


def test_checkpoint_of_a_path_trained_policy_needs_no_path(tmp_path, lift_demos):
    import shutil

    source = policy_from(pretrained("siglip", "qwen2"))
    source.vision["agentview"].model.save_pretrained(tmp_path / "siglip")
    source.backbone.model.save_pretrained(tmp_path / "qwen")
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        *pretrained(),
        f"policy.vision.path={tmp_path / 'siglip'}",
        f"policy.lm.path={tmp_path / 'qwen'}",
        *QUICK_FIT,
    )
    result = fit(cfg)
    shutil.rmtree(tmp_path / "siglip")
    shutil.rmtree(tmp_path / "qwen")
    policy, stored, _ = load_policy(result["last_checkpoint"])  # rebuilt from the stored tower configs
    assert stored.policy.vision.path == "" and stored.policy.vision.hf_config["hidden_size"] == 32
    with torch.no_grad():
        assert policy(policy.example_batch(1))["actions"].isfinite().all()


def test_pretrained_towers_train_every_parameter_they_expose():
    """No parameter that requires grad is left without one (DDP would hang or fail on it)."""
    for vision, lm in PAIRS:
        policy = policy_from(pretrained(vision, lm)).train()
        loss, _ = policy.loss(with_targets(policy.example_batch(2)))
        loss.backward()
        missing = [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, (vision, lm, missing[:5])


def test_towers_load_from_a_local_directory(tmp_path):
    source = policy_from(pretrained("dinov2", "llama"))
    source.vision["agentview"].model.save_pretrained(tmp_path / "dino")
    source.backbone.model.save_pretrained(tmp_path / "llama")
    loaded = policy_from(
        [*pretrained("dinov2", "llama"), f"policy.vision.path={tmp_path / 'dino'}", f"policy.lm.path={tmp_path / 'llama'}"],
        seed=1,
    )
    for name, tensor in source.vision["agentview"].model.state_dict().items():
        assert torch.equal(tensor, loaded.vision["agentview"].model.state_dict()[name])
    for name, tensor in source.backbone.model.state_dict().items():
        assert torch.equal(tensor, loaded.backbone.model.state_dict()[name])
    # from_pretrained hands back eval-mode models; a loaded tower must train with dropout on
    # like a freshly built one (Lightning only switches modes at validation).
    in_eval = [name for name, module in loaded.named_modules() if not module.training]
    assert not in_eval, in_eval[:5]


def test_missing_local_path_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"policy.vision.path=.*nowhere is not a local siglip model directory .*never downloads"):
        policy_from([*pretrained(), f"policy.vision.path={tmp_path / 'nowhere'}"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="cannot load a Qwen2Model"):
        policy_from([*pretrained(), f"policy.lm.path={tmp_path / 'empty'}"])


def test_freeze_and_frozen_lm_keep_weights_fixed():
    policy = policy_from([*pretrained(), "policy.vision.freeze=true", "policy.lm.finetune=frozen"])
    assert not any(p.requires_grad for p in policy.vision["agentview"].model.parameters())
    assert not any(p.requires_grad for p in policy.backbone.model.parameters())
    assert (
        policy.backbone.vision_proj.weight.requires_grad
        and policy.vision["agentview"].compressor.coord_mlp[0].weight.requires_grad
    )


def test_lora_without_peft_is_a_clear_error():
    pytest.importorskip("transformers")
    try:
        import peft  # noqa: F401

        pytest.skip("peft is installed")
    except ImportError:
        pass
    with pytest.raises(UserError, match="policy.lm.finetune=lora needs peft"):
        policy_from([*pretrained(), "policy.lm.finetune=lora"])


@pytest.mark.parametrize("overrides", [[], pretrained()], ids=["built-in", "pretrained"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(overrides):
    results = []
    for checkpointing in (False, True):
        policy = policy_from([*overrides, f"policy.gradient_checkpointing={str(checkpointing).lower()}"]).train()
        loss, _ = policy.loss(with_targets(policy.example_batch(2)))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b) and grads_a.keys() == grads_b.keys()
    assert all(torch.allclose(grads_a[n], grads_b[n], atol=1e-6) for n in grads_a)


def test_learned_budget_head_needs_the_built_in_backbone():
    with pytest.raises(UserError, match="use budget.rule=saliency"):
        policy_from([*pretrained(), "budget=adaptive", "budget.k_max=8"])
    policy_from([*pretrained(), "budget=adaptive", "budget.k_max=8", "budget.rule=saliency"])


def test_bf16_autocast_runs_on_cpu():
    policy = policy_from(pretrained()).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        actions = policy(policy.example_batch(2))["actions"]
    assert actions.isfinite().all()


def test_flops_split_covers_the_pretrained_towers():
    from gridslab.policy.flops import COMPONENTS, flops_by_component

    full = policy_from([*pretrained(), "compressor=identity"]).eval()
    grids = policy_from(pretrained()).eval()
    splits = [flops_by_component(p, p.example_batch(1)) for p in (full, grids)]
    for split in splits:
        assert sum(split[part] for part in COMPONENTS) == split["total"] and split["vision_before"] > 0
    assert splits[0]["vision_before"] == splits[1]["vision_before"]  # the tower runs whole either way
    assert splits[1]["backbone"] < splits[0]["backbone"]  # 4 instead of 16 tokens per image reach the LM


@pytest.mark.parametrize("lm", ["qwen2", "gemma"])
def test_flow_head_runs_as_a_second_smaller_transformer_over_the_lm_prefix(lm):
    overrides = [*pretrained("siglip", lm), "policy.head.name=flow", "policy.head.dim=16", "policy.head.heads=2"]
    policy = policy_from(overrides)
    assert policy.backbone.action_queries is None and policy.head.expert.blocks[0].key_value.in_features == 48
    batch = with_targets(policy.example_batch(2))
    loss, _ = policy.loss(batch)
    loss.backward()
    assert loss.isfinite() and policy.head.expert.action_out.weight.grad.abs().sum() > 0
    policy.eval()
    seeded = {**batch, "noise_seed": torch.tensor([5, 6])}
    with torch.no_grad():
        first, again = policy(seeded)["actions"], policy(seeded)["actions"]
    assert first.shape == (2, 8, 7) and torch.equal(first, again)


def test_lora_trains_only_the_adapters_of_the_lm():
    pytest.importorskip("peft")
    policy = policy_from([*pretrained(), "policy.lm.finetune=lora", "policy.lm.lora_rank=4"])
    lm = policy.backbone.model
    lora = {name: p for name, p in lm.named_parameters() if "lora_" in name}
    base = {name: p for name, p in lm.named_parameters() if "lora_" not in name}
    assert lora and all(p.requires_grad for p in lora.values()) and not any(p.requires_grad for p in base.values())
    assert any(".q_proj.lora_A" in name for name in lora) and any(".down_proj.lora_B" in name for name in lora)
    before_base = {name: p.detach().clone() for name, p in base.items()}
    before_lora = {name: p.detach().clone() for name, p in lora.items()}
    optimiser = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.1)
    batch = with_targets(policy.example_batch(2))
    for _ in range(2):  # LoRA's B starts at zero: A moves only from the second step
        loss, _ = policy.loss(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(torch.equal(p, before_base[name]) for name, p in base.items())
    assert all(not torch.equal(p, before_lora[name]) for name, p in lora.items())
    reloaded = policy_from([*pretrained(), "policy.lm.finetune=lora", "policy.lm.lora_rank=4"], seed=1)
    reloaded.load_state_dict(policy.state_dict())  # adapters are part of the policy's state_dict
    policy.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(policy(batch)["actions"], reloaded(batch)["actions"], atol=1e-6)
