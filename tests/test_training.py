"""End-to-end training on a tiny real dataset: checkpoint, TensorBoard events, reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gridslab.eval.checkpoint import load_policy, read_checkpoint
from gridslab.train.fit import fit
from tests.helpers import tiny_config


def _event_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events.Tags()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, lift_demos):
    tmp_path = tmp_path_factory.mktemp("train")
    cfg = tiny_config(tmp_path, lift_demos)
    return cfg, fit(cfg)


def test_two_epochs_write_checkpoint_and_tensorboard(trained):
    cfg, result = trained
    run_dir = Path(cfg.output_dir)
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "config.yaml").read_text().count("compressor:") == 1
    assert result["global_step"] > 0
    tags = _event_tags(run_dir)
    assert "train/loss" in tags["scalars"] and "val/loss" in tags["scalars"] and "val/action_l1" in tags["scalars"]
    assert any(t.startswith("lr-") for t in tags["scalars"])
    assert {
        "train/tokens_per_image/mean",
        "train/tokens_per_image/min",
        "train/tokens_per_image/max",
        "train/gflops_per_sample",
        "val/tokens_per_image/mean",
    } <= set(tags["scalars"])
    assert "val/coords/agentview" in tags["images"]


def test_checkpoint_is_weights_only_and_holds_config_and_stats(trained):
    cfg, result = trained
    checkpoint = read_checkpoint(result["last_checkpoint"])
    hparams = checkpoint["hyper_parameters"]
    assert hparams["config"]["compressor"]["name"] == "grids"
    assert hparams["config"]["compressor"]["k"] == 4
    assert any(k.endswith("action_mean") for k in checkpoint["state_dict"])


def test_checkpoint_rebuilds_the_same_policy(trained, lift_demos):
    cfg, result = trained
    from gridslab.train.fit import build_datamodule
    from gridslab.train.module import VLAModule

    module = VLAModule.load_from_checkpoint(result["last_checkpoint"], map_location="cpu", weights_only=True)
    policy, _, _ = load_policy(result["last_checkpoint"])
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    raw = next(iter(datamodule.val_dataloader()))
    module.eval_policy.eval()
    with torch.no_grad():
        expected = module.eval_policy(module.eval_policy.processor.training_batch(raw))["actions"]
        actual = policy(policy.processor.training_batch(raw))["actions"]
    assert torch.allclose(expected, actual, atol=1e-6)


@pytest.mark.parametrize(
    "budget",
    [
        ["budget=adaptive", "budget.k_min=2", "budget.k_max=8"],
        ["budget=per_task", "budget.default_k=2", "budget.k_by_task={lift the red cube: 3}"],
    ],
)
def test_budgets_train_log_k_and_reload(tmp_path, lift_demos, budget):
    cfg = tiny_config(tmp_path, lift_demos, "trainer.max_epochs=1", *budget)
    result = fit(cfg)
    tags = set(_event_tags(Path(cfg.output_dir))["scalars"])
    assert {"train/tokens_per_image/mean", "train/gflops_per_sample", "val/tokens_per_image/max"} <= tags
    assert ("train/action_loss" in tags) == (cfg.budget.name == "adaptive")  # only a learned budget adds a penalty
    policy, _, _ = load_policy(result["last_checkpoint"])
    batch = policy.example_batch(2, instruction="lift the red cube")
    with torch.no_grad():
        counts = next(iter(policy(batch)["tokens"].values())).mask.sum(1)
    assert ((counts >= 2) & (counts <= 8)).all()
    if cfg.budget.name == "per_task":
        assert counts.tolist() == [3, 3]
        assert not any(k.startswith("policy.budget") for k in read_checkpoint(result["last_checkpoint"])["state_dict"])
    else:
        assert any(k.startswith("policy.budget.head") for k in read_checkpoint(result["last_checkpoint"])["state_dict"])
