"""Whole chunks in one worker call, rendering only the observations the policy reads, change no
result: the same records and summary as one env step per call with every frame rendered."""

from __future__ import annotations

import numpy as np
import pytest

from envs.registry import make
from gridslab.config.schema import env_kwargs
from gridslab.eval.checkpoint import load_policy
from gridslab.eval.rollout import Condition, PolicyRunner, record_to_json, run_condition
from gridslab.eval.runner import evaluate_policy
from gridslab.train.fit import fit
from tests.helpers import tiny_config

EVAL = ["eval.episodes=2", "eval.workers=2", "eval.max_steps=20", "eval.video_episodes=0"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, lift_demos):
    tmp_path = tmp_path_factory.mktemp("ckpt")
    return fit(tiny_config(tmp_path, lift_demos, "trainer.max_epochs=1"))["last_checkpoint"]


@pytest.mark.parametrize("env_name", ["robosuite/Lift", "tabletop_spatial/0"])
def test_chunk_rendering_gives_the_same_summary(checkpoint, tmp_path, env_name):
    policy, cfg, _ = load_policy(checkpoint, [*EVAL, f"env.name={env_name}", "policy.replan_every=4"])
    summaries = []
    for every_step in (True, False):
        out = tmp_path / f"every_step_{every_step}"
        evaluate_policy(policy, cfg, out, checkpoint=checkpoint, progress=False, render_every_step=every_step)
        summaries.append((out / "summary.json").read_bytes())
    assert summaries[0] == summaries[1]


def test_chunk_calls_record_what_per_step_calls_record_and_videos_keep_every_frame(checkpoint):
    policy, cfg, _ = load_policy(checkpoint, ["env.image_size=32"])
    condition = Condition("robosuite/Lift", env_kwargs(cfg.env))
    # wall clocks vary; the tracking distances (3 decimals) follow frames that differ in the last bit across processes
    varying = (
        "wall_s",
        "policy_ms_per_step",
        "points_to_object",
        "object_to_points",
        "grid_points_to_object",
        "grid_object_to_points",
    )
    runs, tracking = [], []
    for every_step in (True, False):
        records, videos = [], {}
        run_condition(
            PolicyRunner(policy),
            condition,
            [5, 6, 7],
            18,
            4,
            2,
            records.append,
            video_seeds={6},
            on_video=videos.__setitem__,
            render_every_step=every_step,
        )
        lines = sorted((record_to_json(r) for r in records), key=lambda r: r["seed"])
        runs.append([{k: v for k, v in line.items() if k not in varying} for line in lines])
        tracking.append([line["points_to_object"] for line in lines])
        steps = {line["seed"]: line["steps"] for line in lines}
        assert list(videos) == [6] and len(videos[6]) == steps[6] == 18  # every step's frame, not one per chunk
        assert not any(np.array_equal(a, b) for a, b in zip(videos[6], videos[6][1:]))  # none stale
    assert runs[0] == runs[1]
    np.testing.assert_allclose(tracking[0], tracking[1], atol=0.01)
    assert [len(line["tokens_per_plan"]) for line in runs[1]] == [5, 5, 5]  # ceil(18 / 4) policy calls


def test_frame_after_skipped_renders_is_the_per_step_frame():
    """Pixels at a chunk's end are those of rendering every step (one process, one scene)."""

    def chunk_end_frames(skip: bool) -> list[np.ndarray]:
        env = make("tabletop_spatial/0", image_size=32, max_steps=40, render_quality="fast")
        env.reset(seed=3)
        rng, frames = np.random.default_rng(0), []
        for step in range(16):
            last = step % 8 == 7
            if skip:
                env.unwrapped.set_image_rendering(last)
            obs, *_ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            if last:
                frames += [image.copy() for image in obs["images"].values()]
        env.unwrapped.set_image_rendering(True)
        env.close()
        return frames

    for per_step, chunked in zip(chunk_end_frames(False), chunk_end_frames(True)):
        np.testing.assert_array_equal(per_step, chunked)
