"""Real DDP (2 CPU processes, gloo), and SIGKILL at a known step then resume: the same final weights."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from gridslab.config import load_config
from gridslab.data.sampling import EpochSampler
from gridslab.train.fit import fit
from tests.helpers import TINY, run_python, tiny_config


class RankProbe(L.Callback):
    """Records, per rank, a fingerprint of every training batch and the final weights."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.extend(batch["proprio"].sum(dim=1).tolist())

    def on_train_end(self, trainer, module):
        weights = torch.cat([p.detach().flatten() for p in module.policy.parameters()])
        report = {
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "seen": self.seen,
            "weights": weights[:64].tolist(),
            "weights_sum": float(weights.double().sum()),
        }
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def test_ddp_two_cpu_processes(tmp_path, lift_demos):
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        "trainer.max_epochs=1",
        "trainer.devices=2",
        "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.threads=1",
        "data.batch_size=8",
    )
    fit(cfg, extra_callbacks=[RankProbe(str(tmp_path))])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["seen"] and ranks[1]["seen"]
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"]), "both ranks trained on the same samples"
    assert ranks[0]["weights"] == ranks[1]["weights"], "weights diverged between ranks"
    assert abs(ranks[0]["weights_sum"] - ranks[1]["weights_sum"]) < 1e-9
    run_dir = Path(cfg.output_dir)
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 1
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} >= {"last.ckpt"}


EPOCHS = 2  # of the kill tests' runs


def _config(run_dir: Path, demos: Path, *extra: str):
    return load_config(
        [
            *TINY,
            f"output_dir={run_dir}",
            f"data.paths=[{demos}]",
            "data.episodes=3",
            "data.batch_size=8",
            f"trainer.max_epochs={EPOCHS}",
            "trainer.threads=1",
            *extra,
        ]
    )


class SigkillAt(L.Callback):
    """SIGKILLs its own process (no cleanup) as the batch after optimiser step ``step`` starts,
    i.e. once every checkpoint of step ``step`` is written."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def train_until_killed(run_dir: str, demos: str, step: int, *extra: str) -> None:
    """Subprocess entry point: fit the kill tests' config, checkpoint at ``step`` into ``run_dir/steps``, die."""
    at_step = ModelCheckpoint(
        dirpath=Path(run_dir, "steps"),
        filename="step{step}",
        every_n_train_steps=step,
        save_top_k=-1,
        auto_insert_metric_name=False,
    )
    fit(_config(Path(run_dir), Path(demos), *extra), extra_callbacks=[at_step, SigkillAt(step)])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, lift_demos):
    """The kill tests' run, never interrupted: (its last.ckpt, optimiser steps per epoch)."""
    result = fit(_config(tmp_path_factory.mktemp("uninterrupted") / "run", lift_demos))
    return torch.load(result["last_checkpoint"], map_location="cpu", weights_only=True), result["global_step"] // EPOCHS


# (kill after optimiser step f(steps per epoch), resume from, extra overrides of the killed and resumed runs)
KILLS = {
    "mid-epoch, 1 worker": (lambda n: n + n // 2, "step", ["data.num_workers=1"]),
    "after an epoch's last batch": (lambda n: n, "step", []),
    "after the epoch's checkpoint": (lambda n: n + 2, "auto", []),
}


@pytest.mark.parametrize("kill", sorted(KILLS))
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tmp_path, lift_demos, uninterrupted, kill):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reference, steps_per_epoch = uninterrupted
    kill_step, resume_from, extra = KILLS[kill]
    step = kill_step(steps_per_epoch)
    run_dir = tmp_path / "run"
    entry = f"train_until_killed({str(run_dir)!r}, {str(lift_demos)!r}, {step}, *{extra!r})"
    killed = run_python(["-c", f"from tests.test_scale import train_until_killed; {entry}"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoint = run_dir / "steps" / f"step{step}.ckpt" if resume_from == "step" else run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] == (
        step if resume_from == "step" else steps_per_epoch
    )
    resumed = fit(_config(run_dir, lift_demos, f"resume={checkpoint if resume_from == 'step' else 'auto'}", *extra))
    final = torch.load(resumed["last_checkpoint"], map_location="cpu", weights_only=True)
    assert (final["epoch"], final["global_step"]) == (EPOCHS - 1, EPOCHS * steps_per_epoch)
    assert final["state_dict"].keys() == reference["state_dict"].keys()
    differ = [key for key, value in reference["state_dict"].items() if not torch.equal(value, final["state_dict"][key])]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    assert final["lr_schedulers"] == reference["lr_schedulers"]
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss")]
    assert sorted(steps) == list(range(EPOCHS * steps_per_epoch)), sorted(steps)  # each step once, none lost
    assert max(steps) == final["global_step"] - 1


def test_last_checkpoint_holds_the_last_epoch_when_val_loss_stalls(tmp_path, lift_demos):
    """lr=0: val/loss is the same every epoch, so no epoch after the first is a new best."""
    result = fit(_config(tmp_path / "run", lift_demos, "optim.lr=0"))
    last = torch.load(result["last_checkpoint"], map_location="cpu", weights_only=True)
    assert Path(result["last_checkpoint"]).name == "last.ckpt"
    assert (last["epoch"], last["global_step"]) == (EPOCHS - 1, result["global_step"])


def test_epoch_sampler_order_depends_only_on_seed_and_epoch():
    """A sampler built at (epoch 1, 2 batches in) yields what an uninterrupted one yields from
    there on; the ranks split each epoch; the length stays the whole epoch."""
    data = list(range(20))
    uninterrupted = EpochSampler(data, batch_size=4, seed=3)
    orders = []
    for epoch in range(3):
        uninterrupted.set_epoch(epoch)
        orders.append(list(uninterrupted))
    assert sorted(orders[0]) == data and orders[0] != orders[1] != orders[2]
    resumed = EpochSampler(data, batch_size=4, seed=3, epoch=1, skip_batches=2)
    resumed.set_epoch(1)  # Lightning does this at the start of the resumed epoch
    assert list(resumed) == orders[1][8:] and len(resumed) == 20
    resumed.set_epoch(2)
    assert list(resumed) == orders[2]
    ranks = [EpochSampler(data, batch_size=4, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    assert sorted(list(ranks[0]) + list(ranks[1])) == data and not set(ranks[0]) & set(ranks[1])
