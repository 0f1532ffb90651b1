"""Sharded evaluation: 2 CPU ranks over gloo write the summary of one process, and resume per shard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridslab.errors import UserError
from gridslab.eval.shard import Shard
from gridslab.train.fit import fit
from tests.helpers import QUICK_FIT, ROOT, run_python, tiny_config

# 2 conditions x 2 seeds: each rank gets one episode of each condition
ARGS = ["--episodes", "2", "--workers", "1", "--video-episodes", "0", "--ood", "lighting", "eval.max_steps=8"]
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def checkpoint(quick_checkpoint):
    return quick_checkpoint


def evaluate(launcher: list[str], checkpoint: str, out) -> None:
    result = run_python([*launcher, str(ROOT / "evaluate.py"), "--ckpt", checkpoint, "--out", str(out), *ARGS], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


def test_two_ranks_write_the_summary_of_one_process_and_resume_per_shard(checkpoint, tmp_path):
    evaluate([], checkpoint, tmp_path / "alone")
    evaluate(TORCHRUN, checkpoint, tmp_path / "ranks")
    alone, ranks = tmp_path / "alone", tmp_path / "ranks"
    assert (ranks / "summary.json").read_bytes() == (alone / "summary.json").read_bytes()
    assert (ranks / "summary.csv").read_bytes() == (alone / "summary.csv").read_bytes()
    shards = [ranks / f"results.rank{r}-of-2.jsonl" for r in range(2)]
    lines = [path.read_text().splitlines() for path in shards]
    seeds = [[(json.loads(line)["perturbation"], json.loads(line)["seed"]) for line in shard] for shard in lines]
    assert sorted(seeds[0]) == [("clean", 100000), ("lighting", 100000)]  # episode i on rank i mod 2
    assert sorted(seeds[1]) == [("clean", 100001), ("lighting", 100001)]
    assert len((ranks / "results.jsonl").read_text().splitlines()) == 4  # merged by rank 0

    # rank 1 died after its first episode, before the merge: only its unfinished episode runs again
    for name in ("results.jsonl", "summary.json", "summary.csv"):
        (ranks / name).unlink()
    shards[1].write_text(lines[1][0] + "\n")
    evaluate(TORCHRUN, checkpoint, tmp_path / "ranks")
    assert shards[0].read_text().splitlines() == lines[0]
    resumed = shards[1].read_text().splitlines()
    assert len(resumed) == 2 and resumed[0] == lines[1][0]
    assert (ranks / "summary.json").read_bytes() == (alone / "summary.json").read_bytes()


def test_ranks_come_from_torchrun_or_slurm(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    assert Shard.from_environment() == Shard(0, 1, 0, 1)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert Shard.from_environment() == Shard(5, 8, 1, 1)
    for name, value in (("RANK", "3"), ("WORLD_SIZE", "4"), ("LOCAL_RANK", "1"), ("LOCAL_WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    shard = Shard.from_environment()  # torchrun's variables win over SLURM's (torchrun launched by srun)
    assert shard == Shard(3, 4, 1, 2) and shard.results_file == "results.rank3-of-4.jsonl"
    assert shard.take(list(range(10))) == [3, 7]
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UserError, match=r"rank 4 is out of range for world size 4"):
        Shard.from_environment()


def test_online_eval_in_ddp_training_shards_its_episodes(tmp_path, lift_demos):
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        *QUICK_FIT,
        "trainer.devices=2",
        "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.threads=1",
        "data.batch_size=8",
        "eval.every_n_epochs=1",
        "eval.callback_episodes=2",
        "eval.workers=1",
        "eval.max_steps=5",
    )
    fit(cfg)
    out = Path(cfg.output_dir) / "eval" / "online_epoch001"
    shards = [
        [json.loads(line)["seed"] for line in (out / f"results.rank{r}-of-2.jsonl").read_text().splitlines()] for r in (0, 1)
    ]
    assert shards == [[cfg.eval.seed], [cfg.eval.seed + 1]]
    assert json.loads((out / "summary.json").read_text())["conditions"][0]["episodes"] == 2
