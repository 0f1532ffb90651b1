"""Chunk execution modes in real rollouts: the actions the env receives and the policy calls
made, for the whole chunk, replanning every N steps, and ACT-style temporal ensembling."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from gridslab.config import load_config
from gridslab.eval.execution import Execution
from gridslab.eval.rollout import Condition, Job, PolicyRunner, run_episodes
from gridslab.eval.workers import EnvPool, SafeEnv, build_env
from gridslab.policy.config import PolicyConfig
from gridslab.policy.vla import VLA
from tests.helpers import SMALL_ENV

CHUNK, STEPS, ACTION_DIM = 4, 10, 7


def scripted(call: int, row: int) -> np.ndarray:
    """The action ``[A]`` that the scripted policy's chunk of call ``call`` holds at ``row``."""
    return 0.02 * call + 0.005 * row + 0.001 * np.arange(ACTION_DIM)


class ScriptedVLA(VLA):
    """A real VLA (vision, compressor, backbone run as usual) whose chunk at its c-th call is
    ``scripted(c, 0..H-1)`` (identity action statistics: normalised == env units)."""

    calls = 0

    def forward(self, batch):
        outputs = super().forward(batch)
        chunk = torch.tensor(np.stack([scripted(self.calls, row) for row in range(self.chunk)]), dtype=torch.float32)
        outputs["actions"] = chunk.expand(len(batch["proprio"]), -1, -1)
        self.calls += 1
        return outputs


class ActionLog(gym.Wrapper):
    """Appends every action the env receives to a JSON-lines file (in the worker process)."""

    def __init__(self, env: gym.Env, path: str):
        super().__init__(env)
        self.path = path

    def step(self, action):
        with open(self.path, "a") as log:
            log.write(json.dumps(np.asarray(action, dtype=np.float64).tolist()) + "\n")
        return self.env.step(action)


def logged_env(path: str, condition: Condition) -> gym.Env:
    """Worker-side factory: the condition's env, logging its actions to ``path``."""
    return SafeEnv(lambda: ActionLog(build_env(condition), path))


def rollout(tmp_path: Path, *overrides: str) -> tuple[np.ndarray, int, int]:
    """One Lift episode of STEPS steps under the execution the config overrides choose:
    (executed actions [STEPS, A], policy calls, policy calls the episode record counts)."""
    cfg = load_config([f"policy.chunk={CHUNK}", *overrides])
    torch.manual_seed(0)
    policy = ScriptedVLA(
        PolicyConfig(vision={"image_size": 32, "patch_size": 8, "dim": 32, "heads": 2}, chunk=CHUNK),
        {"name": "grids", "k": 4},
        SMALL_ENV["cameras"],
        9,
        ACTION_DIM,
    )
    log, records = tmp_path / "actions.jsonl", []
    condition = Condition("robosuite/Lift", dict(SMALL_ENV))
    runner = PolicyRunner(policy)
    policy.calls = 0  # the runner's FLOPs count ran the policy
    with EnvPool(1, functools.partial(logged_env, str(log))) as pool:
        run_episodes(runner, pool, [Job(condition, 3)], STEPS, Execution.from_config(cfg), records.append)
    actions = np.array([json.loads(line) for line in log.read_text().splitlines()])
    assert records[0].steps == STEPS and records[0].error == ""
    return actions, policy.calls, len(records[0].tokens_per_plan)


@pytest.mark.parametrize("replan_every", [0, 3])
def test_chunks_run_for_replan_every_steps_or_whole(tmp_path, replan_every):
    actions, calls, recorded = rollout(tmp_path, f"policy.replan_every={replan_every}")
    executed = replan_every or CHUNK
    assert calls == recorded == math.ceil(STEPS / executed)  # 0: whole chunks, ceil(T / H) calls
    expected = [scripted(step // executed, step % executed) for step in range(STEPS)]
    np.testing.assert_allclose(actions, expected, atol=1e-6)


def test_temporal_ensembling_averages_overlapping_chunks(tmp_path):
    decay = 0.5  # far from the default 0.01, so the weights matter
    actions, calls, recorded = rollout(tmp_path, "eval.execution=ensemble", f"eval.ensemble_decay={decay}")
    assert calls == recorded == STEPS  # a prediction at every step
    for step in range(STEPS):
        covering = range(max(0, step - CHUNK + 1), step + 1)  # calls whose chunk reaches this step, oldest first
        weights = [math.exp(-decay * i) for i in range(len(covering))]
        expected = sum(w * scripted(call, step - call) for w, call in zip(weights, covering)) / sum(weights)
        np.testing.assert_allclose(actions[step], expected, atol=1e-6)


def test_an_unknown_execution_mode_names_the_valid_ones():
    from gridslab.errors import UserError

    with pytest.raises(UserError, match=r"^unknown eval.execution 'ensembel'; valid: chunk, ensemble$"):
        load_config(["eval.execution=ensembel"])
