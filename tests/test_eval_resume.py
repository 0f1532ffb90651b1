"""An evaluation folder is tied to the weights and the simulator it evaluated, and an episode is written once.

Re-training into the same ``output_dir`` and evaluating again must not read the old weights'
episodes back as new ones; a video that cannot be saved must not re-run (and re-write) the
episode whose record is already on disk.
"""

from __future__ import annotations

import json
import shutil

import mujoco
import pytest
import torch

from gridslab.errors import UserError
from gridslab.eval.checkpoint import load_policy, weights_fingerprint
from gridslab.eval.rollout import EpisodeRecord
from gridslab.eval.runner import (
    RESULTS_FILE,
    SETTINGS_FILE,
    ResultsWriter,
    evaluate_policy,
    read_records,
)

# one worker, short episodes, no videos: each evaluation that runs episodes takes a few seconds
EVAL = ["eval.episodes=2", "eval.workers=1", "eval.max_steps=4", "eval.video_episodes=0"]


@pytest.fixture(scope="module")
def checkpoint(quick_checkpoint):
    return quick_checkpoint


def test_fingerprint_follows_the_weights_not_the_object(checkpoint):
    first, _, _ = load_policy(checkpoint)
    second, _, _ = load_policy(checkpoint)
    assert weights_fingerprint(first) == weights_fingerprint(second)
    saved = second.state_dict()
    buffer = next(b for name, b in second.named_buffers() if name in saved and b.is_floating_point())
    with torch.no_grad():
        buffer.add_(1e-3)  # a saved buffer (e.g. normalisation stats) counts as much as a parameter
    assert weights_fingerprint(first) != weights_fingerprint(second)
    half = torch.nn.Linear(3, 2).to(torch.bfloat16)
    assert len(weights_fingerprint(half)) == 64  # any dtype hashes (bf16 has no numpy view)


def test_other_weights_are_refused_and_the_same_weights_resume(checkpoint, tmp_path):
    policy, cfg, _ = load_policy(checkpoint, EVAL)
    evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    before = (tmp_path / RESULTS_FILE).read_text()
    assert len(read_records(tmp_path / RESULTS_FILE)) == 2
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["weights"] == weights_fingerprint(policy)

    # the same weights under another file name (content, not name): resumes, runs nothing
    renamed = tmp_path / "renamed.ckpt"
    shutil.copy(checkpoint, renamed)
    same, cfg, _ = load_policy(renamed, EVAL)
    rows = evaluate_policy(same, cfg, tmp_path, checkpoint=str(renamed), progress=False)
    assert rows[0]["episodes"] == 2 and (tmp_path / RESULTS_FILE).read_text() == before

    # episodes simulated by another MuJoCo: refused, never read back as this one's
    settings_path = tmp_path / SETTINGS_FILE
    recorded = settings_path.read_text()
    settings = json.loads(recorded)
    assert settings["simulator"]["mujoco"] == mujoco.__version__
    settings["simulator"]["mujoco"] = "3.3.2" if mujoco.__version__ != "3.3.2" else "3.9.0"
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(UserError, match=r"holds episodes made with other settings \(simulator\)"):
        evaluate_policy(same, cfg, tmp_path, checkpoint=str(renamed), progress=False)
    settings_path.write_text(recorded)

    # re-trained weights behind the same checkpoint name: refused, nothing written
    with torch.no_grad():
        next(policy.parameters()).add_(0.01)
    with pytest.raises(UserError, match=r"holds episodes made with other settings \(weights\)"):
        evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    assert (tmp_path / RESULTS_FILE).read_text() == before


def _record(seed: int, error: str = "") -> EpisodeRecord:
    return EpisodeRecord(
        task="robosuite/Lift",
        env="robosuite/Lift",
        perturbation="clean",
        severity=0.0,
        seed=seed,
        success=False,
        steps=4,
        wall_s=0.1,
        policy_ms_per_step=1.0,
        tokens_per_image=4.0,
        instruction="lift the red cube",
        error=error,
    )


def test_results_writer_writes_an_episode_once(tmp_path):
    path = tmp_path / RESULTS_FILE
    writer = ResultsWriter(path, {})
    assert writer.write(_record(1)) and writer.write(_record(2))
    assert not writer.write(_record(1, error="worker crashed 2 times (OSError)"))  # a re-run of a written episode
    writer.close()
    reopened = ResultsWriter(path, {})  # a resumed evaluation knows what the file holds
    assert not reopened.write(_record(2))
    reopened.close()
    assert [(r["seed"], r["error"]) for r in read_records(path)] == [(1, ""), (2, "")]


def test_video_failure_neither_reruns_nor_duplicates_episodes(checkpoint, tmp_path, monkeypatch, capfd):
    import imageio.v2 as imageio

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio, "mimwrite", full_disk)
    policy, cfg, _ = load_policy(checkpoint, [*EVAL, "eval.video_episodes=2"])
    evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    records = read_records(tmp_path / RESULTS_FILE)
    assert sorted(r["seed"] for r in records) == [cfg.eval.seed, cfg.eval.seed + 1]  # each seed exactly once
    assert all(r["error"] == "" for r in records)
    assert not list((tmp_path / "videos").glob("*.mp4"))
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning: video")]
    assert len(warnings) == 1 and "OSError: [Errno 28] No space left on device" in warnings[0]


class FullDisk:
    """A results.jsonl handle on a full disk: every write fails."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, text):
        raise OSError(28, "No space left on device")

    def flush(self):
        self.handle.flush()

    def fileno(self):
        return self.handle.fileno()

    def close(self):
        self.handle.close()


def test_disk_error_stops_the_evaluation_and_a_rerun_writes_each_episode_once(checkpoint, tmp_path, monkeypatch):
    import builtins

    from gridslab.eval import runner as online_eval

    monkeypatch.setattr(online_eval, "open", lambda *args, **kwargs: FullDisk(builtins.open(*args, **kwargs)), raising=False)
    policy, cfg, _ = load_policy(checkpoint, EVAL)
    with pytest.raises(UserError, match=r"cannot write .*results.jsonl \(OSError: \[Errno 28\] No space left on device\)"):
        evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)  # not re-run as a crashed worker
    monkeypatch.undo()
    evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    records = read_records(tmp_path / RESULTS_FILE)
    assert sorted(r["seed"] for r in records) == [cfg.eval.seed, cfg.eval.seed + 1] and all(r["error"] == "" for r in records)
