"""End-to-end training on a tiny real dataset: checkpoint, TensorBoard events, reload; torch threads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from gridslab.config import load_config
from gridslab.data.datamodule import random_shift
from gridslab.errors import UserError
from gridslab.eval.checkpoint import load_policy, read_checkpoint
from gridslab.train.fit import fit
from gridslab.train.threads import ThreadTuner, candidate_counts, cores_per_rank, start_threads
from tests.helpers import QUICK_FIT, tiny_config


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


def test_auto_threads_log_the_thread_count_of_each_step(trained):
    cfg, _ = trained
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert cfg.trainer.threads == "auto"  # the default
    events = EventAccumulator(str(Path(cfg.output_dir) / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    logged = {event.value for event in events.Scalars("train/threads")}
    assert logged and logged <= set(candidate_counts(cores_per_rank(1)))


def test_auto_threads_start_at_the_cores_each_local_rank_may_use(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert start_threads("auto", devices=1) == cores
    assert start_threads("auto", devices=2) == max(1, cores // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))  # torchrun's count wins over trainer.devices
    assert start_threads("auto", devices=1) == 1
    assert start_threads(3, devices=2) == 3  # an explicit count is kept
    assert start_threads(0, devices=1) == torch.get_num_threads()  # 0: torch's own default
    assert candidate_counts(2) == [1, 2] and candidate_counts(12) == [1, 3, 6, 12]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_bad_trainer_threads_fail_in_one_line(value):
    with pytest.raises(UserError, match="trainer.threads") as err:
        load_config([f"trainer.threads={value}"])
    assert "\n" not in str(err.value)


def _run_tuner(tuner: ThreadTuner, phases: list[tuple[int, dict[int, float]]]) -> list[int]:
    """Feed ``tuner`` the step seconds of each phase's (steps, {threads: seconds per step}); the count of every step."""
    threads, used = tuner.threads, []
    for steps, seconds in phases:
        for _ in range(steps):
            used.append(threads)
            threads = tuner.observe(seconds[threads], len(used))
    return used


# seconds per step of the default experiment on 2 cores (benchmarks/results/train_threads.md)
IDLE, BESIDE_A_BUSY_PROCESS = {2: 0.159, 1: 0.263}, {2: 2.07, 1: 0.256}


def test_thread_tuner_drops_to_one_thread_beside_a_busy_process_and_comes_back():
    used = _run_tuner(ThreadTuner(2), [(600, BESIDE_A_BUSY_PROCESS), (600, IDLE), (300, BESIDE_A_BUSY_PROCESS)])
    loaded, idle, again = used[:600], used[600:1200], used[1200:]
    assert loaded[:6] == [2, 2, 2, 2, 2, 1] and loaded[6:].count(2) <= 3  # each probe of 2 threads costs one step
    seconds = sum(BESIDE_A_BUSY_PROCESS[n] for n in loaded[6:])
    assert seconds <= 1.03 * len(loaded[6:]) * BESIDE_A_BUSY_PROCESS[1]  # losing probes cost under ~2% (+ rounding)
    assert idle.index(2) <= 400 and idle[-100:].count(2) >= 94  # back within (probe loss / budget) steps;
    # probes of 1 thread then cost 3 steps in 100 or more
    assert again[5:].count(2) <= 3  # the slowdown itself triggers the probe of 1 thread


def test_thread_tuner_finds_the_fastest_count_among_many_cores():
    seconds = {1: 1.0, 2: 0.6, 4: 0.4, 8: 0.9}  # e.g. 4 of 8 cores busy
    used = _run_tuner(ThreadTuner(8), [(400, seconds)])
    assert used[-100:].count(4) >= 90  # the rest: probes of 2 and 8
    assert _run_tuner(ThreadTuner(1), [(100, {1: 1.0})]) == [1] * 100  # one core: nothing to choose


class ThreadsPerRank(L.Callback):
    """Writes each rank's torch thread count while it trains to ``<out_dir>/threads<rank>.json``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        Path(self.out_dir, f"threads{trainer.global_rank}.json").write_text(json.dumps(torch.get_num_threads()))


def test_ddp_ranks_split_the_cores(tmp_path, lift_demos):
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.devices=2",
        "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu",
        "data.batch_size=8",
    )
    fit(cfg, extra_callbacks=[ThreadsPerRank(str(tmp_path))])
    per_rank = [json.loads((tmp_path / f"threads{rank}.json").read_text()) for rank in (0, 1)]
    assert per_rank == [max(1, len(os.sched_getaffinity(0)) // 2)] * 2


def test_random_shift_is_an_edge_padded_crop_at_the_drawn_offsets():
    images = torch.randint(0, 256, (5, 9, 11, 3), dtype=torch.uint8)
    shifted = random_shift(images, 3, torch.Generator().manual_seed(7))
    offsets = torch.randint(0, 7, (5, 2), generator=torch.Generator().manual_seed(7)).tolist()
    padded = np.pad(images.numpy(), ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
    expected = np.stack([padded[b, dy : dy + 9, dx : dx + 11] for b, (dy, dx) in enumerate(offsets)])
    assert shifted.dtype == torch.uint8 and np.array_equal(shifted.numpy(), expected)
    assert torch.equal(random_shift(images, 0), images)


def test_deterministic_runs_keep_the_thread_count(tmp_path, lift_demos):
    cfg = tiny_config(tmp_path, lift_demos, *QUICK_FIT, "trainer.deterministic=true")
    fit(cfg)
    assert cfg.trainer.threads == "auto" and "train/threads" not in _event_tags(Path(cfg.output_dir))["scalars"]
