"""Online evaluation of a tiny trained checkpoint: files, resume, errors, determinism."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from envs.errors import EnvUserError
from gridslab.eval.checkpoint import load_policy
from gridslab.eval.execution import Execution
from gridslab.eval.rollout import Condition, Job, PolicyRunner, SafeEnv, run_condition, run_episodes
from gridslab.eval.runner import RESULTS_FILE, ConditionProbe, evaluate_policy, read_records
from gridslab.eval.workers import EnvPool, make_safe_env
from gridslab.train.fit import fit
from tests.helpers import ONLINE_EVAL, tiny_config

EVAL = ["eval.episodes=2", "eval.workers=2", "eval.max_steps=12", "eval.video_episodes=1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, lift_demos):
    tmp_path = tmp_path_factory.mktemp("ckpt")
    cfg = tiny_config(tmp_path, lift_demos, "trainer.max_epochs=1")
    return fit(cfg)["last_checkpoint"]


def test_evaluation_writes_every_result_file(checkpoint, tmp_path):
    policy, cfg, _ = load_policy(checkpoint, [*EVAL, "eval.ood=lighting"])
    rows = evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    assert [r["perturbation"] for r in rows] == ["clean", "lighting"]
    records = read_records(tmp_path / RESULTS_FILE)
    assert len(records) == 4
    assert {r["seed"] for r in records} == {cfg.eval.seed, cfg.eval.seed + 1}
    for record in records:
        assert record["steps"] <= 12 and record["tokens_per_image"] == 4.0
        assert record["versions"]["mujoco"] == mujoco.__version__ and record["error"] == ""
        for key in ("points_to_object", "object_to_points", "grid_points_to_object", "grid_object_to_points"):
            assert 0 < record[key] < 1.5  # where the points land, in image widths
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["conditions"][0]["episodes"] == 2 and summary["versions"]["robosuite"] == "1.4.0"
    assert (tmp_path / "summary.csv").read_text().startswith("task,perturbation,severity")
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_rerun_resumes_and_is_deterministic(checkpoint, tmp_path):
    policy, cfg, _ = load_policy(checkpoint, EVAL)
    evaluate_policy(policy, cfg, tmp_path / "a", checkpoint=checkpoint, progress=False)
    first_summary = (tmp_path / "a" / "summary.json").read_bytes()
    lines = (tmp_path / "a" / RESULTS_FILE).read_text().splitlines()
    # an interrupted run: one episode finished, the second line cut mid-write
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / RESULTS_FILE).write_text(lines[0] + "\n" + lines[1][:20])
    evaluate_policy(policy, cfg, tmp_path / "b", checkpoint=checkpoint, progress=False)
    resumed = read_records(tmp_path / "b" / RESULTS_FILE)
    assert len(resumed) == 2 and resumed[0] == json.loads(lines[0])
    assert (tmp_path / "b" / "summary.json").read_bytes() == first_summary
    # nothing left to run: the same command again changes no record
    before = (tmp_path / "b" / RESULTS_FILE).read_text()
    evaluate_policy(policy, cfg, tmp_path / "b", checkpoint=checkpoint, progress=False)
    assert (tmp_path / "b" / RESULTS_FILE).read_text() == before


def test_point_object_distances():
    from gridslab.eval.rollout import point_object_distances, tracking_sample

    points = np.array([[0.1, 0.1], [0.9, 0.1], [0.5, 0.5]], np.float32)
    objects = np.array([[0.5, 0.6]], np.float32)
    to_object, to_points = point_object_distances(points, objects)
    assert to_points == pytest.approx(0.1) and to_object == pytest.approx((2 * np.hypot(0.4, 0.5) + 0.1) / 3)
    # two valid points; the uniform grid of two points is (0.25, 0.5), (0.75, 0.5)
    sample = tracking_sample(points, np.array([True, True, False]), np.array([[0.5, 0.5]], np.float32))
    assert sample[1] == pytest.approx(np.hypot(0.4, 0.4)) and sample[3] == pytest.approx(0.25)


class ExplodingEnv(gym.Wrapper):
    """Raises on the third step of every episode (a simulator blowing up)."""

    def reset(self, **kwargs):
        self.count = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.count += 1
        if self.count == 3:
            raise RuntimeError("simulated MuJoCo instability")
        return self.env.step(action)


def make_exploding():
    import envs

    return ExplodingEnv(envs.make("robosuite/Lift", cameras=["agentview", "robot0_eye_in_hand"], image_size=32))


def exploding_safe_env(condition):
    """Worker-side factory for run_condition (importable by forkserver workers)."""
    return SafeEnv(make_exploding)


def test_safe_env_records_a_raising_env_as_failed():
    env = SafeEnv(make_exploding)
    obs, info = env.reset(seed=0)
    assert info["error"] == ""
    for _ in range(2):
        env.step(np.zeros(7, np.float32))
    _, _, terminated, _, info = env.step(np.zeros(7, np.float32))
    assert terminated and info["error"] == "RuntimeError: simulated MuJoCo instability"
    obs, info = env.reset(seed=1)  # rebuilt, usable again
    assert info["error"] == "" and obs["proprio"].any()
    env.close()


def test_raising_env_does_not_stop_the_run(checkpoint):
    policy, cfg, _ = load_policy(checkpoint, EVAL)
    records = []
    condition = Condition("robosuite/Lift", {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 32})
    run_condition(PolicyRunner(policy), condition, [1, 2, 3], 10, 8, 1, records.append, env_factory=exploding_safe_env)
    assert [r.seed for r in records] == [1, 2, 3]
    assert all(not r.success and r.error.startswith("RuntimeError") and r.steps == 3 for r in records)


def test_the_probe_builds_each_workers_env_once_for_its_episodes(tmp_path):
    condition = Condition("robosuite/Lift", {"cameras": ["agentview"], "image_size": 32})
    with EnvPool(2, functools.partial(counting_safe_env, str(tmp_path))) as pool:
        assert ConditionProbe(pool, [condition], seed=0).max_steps() == 300
        for index in range(2):
            pool.send(index, "reset", (condition, 7 + index))
            assert pool.recv(index).error == ""
    builds = sorted(path.name.split("-", 2)[2] for path in tmp_path.iterdir())
    assert builds == ["clean", "clean"]  # the probe's envs, kept for the episodes


def test_a_condition_the_env_cannot_take_fails_in_one_line():
    kwargs = {"cameras": ["robot0_eye_in_hand"], "image_size": 32}
    conditions = [Condition("robosuite/Lift", kwargs), Condition("robosuite/Lift", kwargs, "camera", 0.5)]
    with EnvPool(1) as pool, pytest.raises(EnvUserError, match="moves world-mounted cameras, but this env renders only"):
        ConditionProbe(pool, conditions, seed=0).max_steps()


class CrashOnceEnv(gym.Wrapper):
    """Kills its worker process on the 2nd step of seed 2's first attempt (a segfaulting simulator)."""

    marker = None

    def reset(self, *, seed=None, options=None):
        self.seed_now, self.count = seed, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.count += 1
        if self.seed_now == 2 and self.count == 2 and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return self.env.step(action)


def crash_once_safe_env(marker: str, condition):
    """Worker-side factory: a Lift env whose worker dies once (``marker`` file records it)."""
    import envs

    def build():
        env = CrashOnceEnv(envs.make("robosuite/Lift", cameras=["agentview", "robot0_eye_in_hand"], image_size=32))
        env.marker = Path(marker)
        return env

    return SafeEnv(build)


def test_crashed_worker_is_restarted_and_its_episode_rerun(checkpoint, tmp_path):
    policy, cfg, _ = load_policy(checkpoint, EVAL)
    records = []
    condition = Condition("robosuite/Lift", {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 32})
    run_condition(
        PolicyRunner(policy),
        condition,
        [1, 2, 3],
        6,
        8,
        2,
        records.append,
        env_factory=functools.partial(crash_once_safe_env, str(tmp_path / "crashed")),
    )
    assert (tmp_path / "crashed").exists()
    assert sorted(r.seed for r in records) == [1, 2, 3]
    assert all(r.error == "" and r.steps == 6 for r in records)


def counting_safe_env(folder: str, condition):
    """Worker-side factory: ``make_safe_env``, leaving one file in ``folder`` per env built."""
    Path(folder, f"{os.getpid()}-{len(os.listdir(folder))}-{condition.label}").touch()
    return make_safe_env(condition)


def test_one_pool_runs_every_condition_and_rebuilds_only_when_the_condition_changes(checkpoint, tmp_path):
    policy, cfg, _ = load_policy(checkpoint, EVAL)
    kwargs = {"cameras": ["agentview", "robot0_eye_in_hand"], "image_size": 32}
    clean, lighting = Condition("robosuite/Lift", kwargs), Condition("robosuite/Lift", kwargs, "lighting", 0.5)
    jobs = [Job(clean, 1), Job(clean, 2), Job(lighting, 1), Job(lighting, 2)]
    records = []
    with EnvPool(1, functools.partial(counting_safe_env, str(tmp_path))) as pool:
        run_episodes(PolicyRunner(policy), pool, jobs, 4, Execution("chunk", 8), records.append)
    assert [(r.perturbation, r.seed, r.steps, r.error) for r in records] == [
        ("clean", 1, 4, ""),
        ("clean", 2, 4, ""),
        ("lighting", 1, 4, ""),
        ("lighting", 2, 4, ""),
    ]
    builds = sorted(path.name.split("-", 2)[2] for path in tmp_path.iterdir())
    assert builds == ["clean", "lighting@0.5"]  # one worker process, one env per condition


def test_online_eval_callback_logs_success_rate(tmp_path, lift_demos):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(
        tmp_path,
        lift_demos,
        *ONLINE_EVAL,
    )
    fit(cfg)
    events = EventAccumulator(str(Path(cfg.output_dir) / "tb"))
    events.Reload()
    assert "online/success_rate" in events.Tags()["scalars"]
    assert (Path(cfg.output_dir) / "eval" / "online_epoch001" / "results.jsonl").exists()


def test_resume_refuses_results_made_with_other_settings(checkpoint, tmp_path):
    from gridslab.errors import UserError

    policy, cfg, _ = load_policy(checkpoint, [*EVAL, "eval.episodes=1", "eval.video_episodes=0"])
    evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    before = (tmp_path / RESULTS_FILE).read_text()
    policy, cfg, _ = load_policy(checkpoint, [*EVAL, "eval.episodes=1", "eval.max_steps=20"])
    with pytest.raises(UserError, match="other settings \\(max_steps\\)"):
        evaluate_policy(policy, cfg, tmp_path, checkpoint=checkpoint, progress=False)
    assert (tmp_path / RESULTS_FILE).read_text() == before
