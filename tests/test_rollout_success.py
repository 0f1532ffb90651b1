"""Success seen end to end: a policy that succeeds goes through the real rollout machinery
(vector env workers, batched policy calls through the processor, chunk execution,
records, summary) and its successes are recorded as successes.

No policy trainable within a test's time solves Lift, so the scripted expert stands
behind the policy interface: the worker's env appends the expert's action (computed
from privileged state) to the proprio, and a real VLA whose head output is replaced by
those numbers reads it back out. Everything between env and policy is the production path.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from gridslab.eval.rollout import Condition, PolicyRunner, SafeEnv, record_to_json, run_condition
from gridslab.eval.summary import summarize
from gridslab.policy.config import PolicyConfig
from gridslab.policy.vla import VLA

CAMERAS = ["agentview", "robot0_eye_in_hand"]
ENV_KWARGS = {"cameras": CAMERAS, "image_size": 32}
PROPRIO_DIM, ACTION_DIM = 9, 7
MAX_STEPS = 200


class ExpertActionInProprio(gym.Wrapper):
    """Appends the scripted expert's action for the current state to ``obs["proprio"]``
    (``[P + A]``), so a policy reading only observations can act as the expert."""

    def __init__(self, env: gym.Env):
        from envs.experts import make_expert

        super().__init__(env)
        self.expert = make_expert(env.unwrapped.task)
        proprio = env.observation_space["proprio"]
        self.observation_space = gym.spaces.Dict(
            {
                "images": env.observation_space["images"],
                "proprio": gym.spaces.Box(-np.inf, np.inf, (proprio.shape[0] + ACTION_DIM,), np.float32),
            }
        )

    def _with_expert(self, obs: dict) -> dict:
        action = self.expert.act(self.env.unwrapped.privileged_state()).astype(np.float32)
        return {**obs, "proprio": np.concatenate([obs["proprio"], action]).astype(np.float32)}

    def reset(self, **kwargs):
        from envs.experts import make_expert

        self.expert = make_expert(self.env.unwrapped.task)  # a fresh expert per episode
        obs, info = self.env.reset(**kwargs)
        return self._with_expert(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._with_expert(obs), reward, terminated, truncated, info


def expert_env(condition: Condition) -> gym.Env:
    """Worker-side factory (importable by forkserver workers)."""
    import envs

    return SafeEnv(lambda: ExpertActionInProprio(envs.make(condition.env_name, **condition.env_kwargs)))


class ExpertReadoutVLA(VLA):
    """A real VLA (vision, compressor, backbone run as usual) whose action chunk is the
    expert action carried in the last ``A`` proprio numbers, repeated over the chunk."""

    def forward(self, batch):
        outputs = super().forward(batch)
        expert = batch["proprio"][:, -ACTION_DIM:]  # identity statistics: normalised == env units
        outputs["actions"] = expert[:, None, :].expand(-1, self.chunk, -1)
        return outputs


def test_a_succeeding_policy_is_recorded_as_succeeding():
    torch.manual_seed(0)
    policy = ExpertReadoutVLA(
        PolicyConfig(vision={"image_size": 32, "patch_size": 8, "dim": 32, "heads": 2}, chunk=4),
        {"name": "grids", "k": 4},
        CAMERAS,
        PROPRIO_DIM + ACTION_DIM,
        ACTION_DIM,
    )
    records = []
    condition = Condition("robosuite/Lift", ENV_KWARGS)
    run_condition(
        PolicyRunner(policy),
        condition,
        [0, 1],
        MAX_STEPS,
        replan_every=1,
        workers=2,
        on_record=records.append,
        env_factory=expert_env,
    )
    assert sorted(r.seed for r in records) == [0, 1]
    assert all(r.success and r.error == "" and r.steps < MAX_STEPS for r in records), records
    assert all(r.tokens_per_image == 4.0 and len(r.tokens_per_plan) == r.steps for r in records)
    rows = summarize([record_to_json(r) for r in records])
    assert rows[0]["successes"] == 2 and rows[0]["success_rate"] == 1.0
