"""The scripted LIBERO experts (``envs.libero_experts``) on real LIBERO scenes, judged by
LIBERO's own success predicates: one episode per expert kind (pick and place, knob turn,
drawer pull, a pull then a pick and place); tasks without an expert refused in one line before
any env is built."""

from __future__ import annotations

import pytest

import envs
from envs.errors import EnvUserError
from envs.experts import PickPlaceExpert, PullExpert, SequenceExpert, TurnExpert, make_expert, rollout_expert
from envs.libero_experts import GOAL_UNCOVERED


@pytest.fixture(autouse=True)
def libero_config(tmp_path, monkeypatch):
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path / "libero_config"))


def _solves(task: str, seed: int) -> tuple[bool, object]:
    """One expert episode from stored initial state ``seed`` with no camera rendering after the
    first reset (the expert reads simulator state); returns (LIBERO's success, the env)."""
    env = envs.make(task, cameras=["agentview"], image_size=32)
    try:
        env.reset(seed=seed)
        env.unwrapped.set_image_rendering(False)
        success, _ = rollout_expert(env, seed)
        return success, env.unwrapped
    finally:
        env.close()


@pytest.mark.parametrize(
    "task, seed, kind",
    [
        ("libero/libero_goal/7", 0, TurnExpert),  # turn on the stove
        ("libero/libero_goal/0", 0, PullExpert),  # open the middle drawer (state 0: turned low, the hand swept the bowl)
        ("libero/libero_goal/1", 0, PickPlaceExpert),  # put the bowl on the stove
        ("libero/libero_goal/3", 0, SequenceExpert),  # open the top drawer and put the bowl inside
    ],
)
def test_expert_kind_solves_a_libero_goal_task(task, seed, kind):
    assert isinstance(make_expert(task), kind)
    success, _ = _solves(task, seed)
    assert success, f"{task} from stored state {seed}"


@pytest.mark.parametrize("seed", [0, 1])
def test_rim_grasped_bowl_lands_on_the_plate(seed):
    """libero_spatial/6 ("... next to the cookie box ..."): state 0's rim sides tie up to
    rounding (the far side's reach stalls the carry), state 1's bowl, let go above the plate,
    rode the opening inner finger 3 cm off its centre on MuJoCo 3.3.2."""
    success, _ = _solves("libero/libero_spatial/6", seed)
    assert success, f"libero_spatial/6 from stored state {seed}"


def test_a_suite_with_uncovered_tasks_is_refused_before_any_collection(tmp_path):
    """``train.py conf=libero_goal`` with no files: the tasks no expert solves are named up
    front (not after hours of collecting the others); with their files in place it collects."""
    from envs.libero_env import libero_dataset_paths
    from envs.registry import check_datasets

    paths = libero_dataset_paths("libero_goal", tmp_path)
    uncovered = [paths[task_id].name for task_id in GOAL_UNCOVERED]
    with pytest.raises(EnvUserError, match="no scripted expert solves") as error:
        check_datasets("libero_goal", str(tmp_path))
    assert all(name in str(error.value) for name in uncovered)
    paths[0].parent.mkdir(parents=True)
    for task_id in GOAL_UNCOVERED:
        paths[task_id].write_bytes(b"")  # LIBERO's own files stand there
    assert check_datasets("libero_goal", str(tmp_path))
