"""LIBERO's ``sampled`` start mode: fresh placements, not stored states, and seeded (real LIBERO)."""

from __future__ import annotations

import numpy as np
import pytest

import envs.libero_env as libero_env
from envs.collect import SAMPLED_SCENES
from envs.errors import EnvUserError


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("LIBERO_CONFIG_PATH", str(tmp_path_factory.mktemp("libero_config")))
    made = libero_env.LiberoEnv("libero_spatial", 0, cameras=("agentview",), image_size=32, max_steps=3)
    yield made
    made.close()
    patch.undo()


def object_xy(env: libero_env.LiberoEnv, qpos: np.ndarray) -> np.ndarray:
    """x, y (metres) of every free-jointed object in ``qpos`` (flattened ``[n_free * 2]``)."""
    model = env.sim_env.sim.model
    free = [model.jnt_qposadr[j] for j in range(model.njnt) if model.jnt_type[j] == 0]  # mjJNT_FREE
    return np.concatenate([qpos[adr : adr + 2] for adr in free])


def test_sampled_starts_differ_from_every_stored_state_and_repeat_per_seed(env):
    nq = env.sim_env.sim.model.nq
    stored = np.stack([object_xy(env, state[1 : 1 + nq]) for state in env.initial_states])  # [N, 2 * n_free]

    def start_xy(seed: int, options: dict | None) -> np.ndarray:
        env.reset(seed=seed, options=options)
        return object_xy(env, env.sim_env.sim.data.qpos)

    sampled = start_xy(3, SAMPLED_SCENES)  # the collector's option takes effect
    assert env.episode_init_state is None
    assert np.abs(stored - sampled).max(axis=1).min() > 0.005  # >= 5 mm from every stored state
    assert np.array_equal(start_xy(3, SAMPLED_SCENES), sampled)  # same seed, same placement
    assert np.abs(start_xy(4, SAMPLED_SCENES) - sampled).max() > 0.002  # another seed, another one
    cycled = start_xy(3, None)  # the env's own mode (cycle) is back for the next reset
    assert env.episode_init_state == 3 and np.abs(stored[3] - cycled).max() < 0.001


def test_unknown_start_mode_in_reset_options_fails_in_one_line(env):
    with pytest.raises(EnvUserError, match=r"init_state \(reset option\).*'stored'.*valid: cycle, fixed, random, sampled"):
        env.reset(seed=0, options={"init_state": "stored"})


def test_sampled_drawer_start_is_a_moved_stored_state_with_the_bowl_in_the_drawer(tmp_path, monkeypatch):
    """libero_spatial/4: LIBERO's samplers never put the bowl in the drawer, so its sampled start is
    a stored state with every object moved 1-2 cm: the task's initial conditions hold, the state is
    none of the stored ones, and the seed repeats it."""
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path))
    drawer = libero_env.LiberoEnv("libero_spatial", 4, cameras=("agentview",), image_size=32, max_steps=3)
    try:
        nq = drawer.mj_model.nq
        stored = np.stack([object_xy(drawer, state[1 : 1 + nq]) for state in drawer.initial_states])
        drawer.reset(seed=3, options=SAMPLED_SCENES)
        start = drawer.episode_jittered_from
        assert start is not None and drawer._pick_object_placed_as_specified()
        placed = object_xy(drawer, drawer.mj_data.qpos)
        assert np.abs(stored - placed).max(axis=1).min() > 0.005
        drawer.reset(seed=3, options=SAMPLED_SCENES)
        assert drawer.episode_jittered_from == start and np.array_equal(object_xy(drawer, drawer.mj_data.qpos), placed)
    finally:
        drawer.close()
