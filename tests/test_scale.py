"""Real DDP (2 CPU processes, gloo) and SIGKILL-then-resume of train.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch

from gridslab.training import fit
from tests.conftest import ROOT
from tests.test_training import TINY, tiny_config


class RankProbe(L.Callback):
    """Records, per rank, a fingerprint of every training batch and the final weights."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.extend(batch["proprio"].sum(dim=1).tolist())

    def on_train_end(self, trainer, module):
        weights = torch.cat([p.detach().flatten() for p in module.policy.parameters()])
        report = {"rank": trainer.global_rank, "world": trainer.world_size, "seen": self.seen,
                  "weights": weights[:64].tolist(), "weights_sum": float(weights.double().sum())}
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


def test_ddp_two_cpu_processes(tmp_path, lift_demos):
    cfg = tiny_config(tmp_path, lift_demos, "trainer.max_epochs=1", "trainer.devices=2", "trainer.strategy=ddp_spawn",
                      "trainer.accelerator=cpu", "trainer.threads=1", "data.batch_size=8")
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


def _train_cmd(run_dir: Path, lift_demos: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *TINY, f"output_dir={run_dir}", f"data.paths=[{lift_demos}]",
            "data.episodes=3", "data.batch_size=4", "trainer.max_epochs=5", "trainer.threads=1", *extra]


def test_sigkill_then_resume_reaches_the_same_step(tmp_path, lift_demos):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(run_dir, lift_demos), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and not last.exists() and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.5)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), proc.stderr.read().decode()[-2000:]
    killed_at = torch.load(last, map_location="cpu", weights_only=True)
    assert killed_at["epoch"] < 4  # 0-based: the epoch whose end the checkpoint saved
    resumed = subprocess.run(_train_cmd(run_dir, lift_demos, "resume=auto"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(last, map_location="cpu", weights_only=True)
    steps_per_epoch = killed_at["global_step"] // (killed_at["epoch"] + 1)
    assert final["epoch"] == 4 and final["global_step"] == 5 * steps_per_epoch
    assert "rng_state" in final and "optimizer_states" in final and final["lr_schedulers"]
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss")]
    assert len(steps) == len(set(steps)), "a step was logged twice after the resume"
    assert max(steps) >= final["global_step"] - 1
