"""One way from observations into the policy: a frame read from a dataset and the same
frame seen by a rollout become the same policy batch, for every policy preset."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from gridslab.config import load_config
from gridslab.eval.rollout import PolicyRunner
from gridslab.policy.config import as_policy_config
from gridslab.policy.language import HashedWords, tokenize
from gridslab.policy.processor import PolicyProcessor
from gridslab.train.fit import build_datamodule

PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "policy").glob("*.yaml"))
INSTRUCTION = "lift the red cube"
STEP = 5  # the frame compared: step 5 of the first training demo


def _datamodule(tmp_path, lift_demos, *overrides: str):
    cfg = load_config(
        [
            f"data.paths=[{lift_demos}]",
            "data.episodes=3",
            "env.image_size=32",
            "data.val_fraction=0",
            f"output_dir={tmp_path}",
            *overrides,
        ]
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    return cfg, datamodule


def _env_frame(lift_demos: Path, datamodule, cameras: list[str]) -> dict:
    """What a rollout sees at the compared step: the env's observation as the collector stored it."""
    demo = datamodule.train_set.demos[0]
    with h5py.File(lift_demos) as f:
        for key in f["data"]:
            obs = f["data"][key]["obs"]
            if np.array_equal(obs["proprio"][:], demo.proprio):
                return {"images": {c: obs[f"{c}_rgb"][STEP][None] for c in cameras}, "proprio": obs["proprio"][STEP][None]}
    raise AssertionError("training demo not found in the file")


def _assert_same_batch(train: dict, rollout: dict) -> None:
    assert set(rollout) <= set(train)
    for camera, frames in rollout["images"].items():
        assert torch.equal(train["images"][camera], frames)
    for key in ("proprio", "instruction_ids", "instruction_mask"):
        assert train[key].dtype == rollout[key].dtype and torch.equal(train[key], rollout[key]), key
    assert train["instruction"] == rollout["instruction"]


@pytest.mark.parametrize("preset", PRESETS)
def test_training_and_rollout_batches_of_one_frame_are_identical(tmp_path, lift_demos, preset):
    cfg, datamodule = _datamodule(tmp_path, lift_demos, f"policy={preset}")
    cameras = list(cfg.env.cameras)
    policy_cfg = as_policy_config(cfg.policy)
    words = HashedWords(policy_cfg.language.max_len, policy_cfg.language.vocab_size)
    processor = PolicyProcessor(cameras, datamodule.proprio_dim, datamodule.action_dim, words)
    processor.set_normalization(datamodule.stats)
    train = processor.training_batch(default_collate([datamodule.train_set[STEP]]))
    frame = _env_frame(lift_demos, datamodule, cameras)
    rollout = processor.observation_batch(frame["images"], frame["proprio"], [INSTRUCTION])
    _assert_same_batch(train, rollout)
    # the ids are the preset's own vocabulary, not the tokenizer's default
    expected_ids, _ = tokenize([INSTRUCTION], policy_cfg.language.max_len, policy_cfg.language.vocab_size)
    assert torch.equal(train["instruction_ids"], expected_ids)
    stats = datamodule.stats
    np.testing.assert_allclose(
        train["proprio"][0].numpy(), (frame["proprio"][0] - stats["proprio_mean"]) / stats["proprio_std"], rtol=1e-5, atol=1e-5
    )
    raw_actions = datamodule.train_set.demos[0].actions[STEP : STEP + policy_cfg.chunk]
    np.testing.assert_allclose(
        processor.env_actions(train["actions"])[0, : len(raw_actions)].numpy(), raw_actions, rtol=1e-5, atol=1e-5
    )


def test_training_step_and_rollout_give_the_same_actions(tmp_path, lift_demos):
    """The small policy end to end: the module's training-batch path and the rollout runner
    predict the same env-unit chunk from the same frame."""
    from gridslab.config import to_plain
    from gridslab.train.module import VLAModule

    cfg, datamodule = _datamodule(tmp_path, lift_demos, "policy.language.vocab_size=32768")
    module = VLAModule(
        to_plain(cfg), datamodule.proprio_dim, datamodule.action_dim, datamodule.instructions, stats=datamodule.stats
    )
    policy = module.eval_policy.eval()
    raw = default_collate([datamodule.train_set[STEP]])
    with torch.no_grad():
        trained_path = policy.processor.env_actions(policy(policy.processor.training_batch(raw))["actions"]).numpy()
    frame = _env_frame(lift_demos, datamodule, list(cfg.env.cameras))
    rollout_path = PolicyRunner(policy).act(frame["images"], frame["proprio"], [INSTRUCTION])["actions"]
    # identical batches; float kernels may differ by memory layout (collated vs sliced frames)
    np.testing.assert_allclose(trained_path, rollout_path, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(policy.predict(frame, [INSTRUCTION]), rollout_path, rtol=1e-5, atol=1e-6)


def test_training_and_rollout_batches_agree_with_the_lms_own_tokenizer(tmp_path, lift_demos):
    from gridslab.policy.config import LMConfig
    from gridslab.policy.pretrained import load_tokenizer
    from tests.test_lm_tokenizer import save_tiny_lm

    cfg, datamodule = _datamodule(tmp_path, lift_demos)
    cameras = list(cfg.env.cameras)
    language = as_policy_config(cfg.policy).language
    tokenizer = load_tokenizer(LMConfig(backbone="qwen2", path=str(save_tiny_lm(tmp_path / "lm"))), language)
    processor = PolicyProcessor(cameras, datamodule.proprio_dim, datamodule.action_dim, tokenizer)
    processor.set_normalization(datamodule.stats)
    train = processor.training_batch(default_collate([datamodule.train_set[STEP]]))
    frame = _env_frame(lift_demos, datamodule, cameras)
    _assert_same_batch(train, processor.observation_batch(frame["images"], frame["proprio"], [INSTRUCTION]))
    assert train["instruction_ids"][0, :5].tolist() == tokenizer.tokenizer(INSTRUCTION)["input_ids"] == [2, 3, 4, 5, 6]


class CountingWords(HashedWords):
    """Hashed words that count how often they tokenize."""

    calls = 0

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        return super().encode(text)


def test_instruction_ids_are_cached_per_string_bounded_and_equal_fresh_ones(monkeypatch):
    import gridslab.policy.processor as processor_module

    monkeypatch.setattr(processor_module, "CACHE_SIZE", 3)
    words = CountingWords(max_len=6, vocab_size=64)
    processor = PolicyProcessor(["agentview"], 2, 2, words)
    texts = ["lift the red cube", "Pick up the RED cube!", "", "one two three four five six seven"]
    first = processor.tokenize(texts[:2] * 2)
    again = processor.tokenize(texts[:2])
    assert words.calls == 2  # one call per distinct string, however often it repeats
    fresh = tokenize(texts[:2] * 2, max_len=6, vocab_size=64)
    assert all(torch.equal(cached, new) for cached, new in zip(first, fresh))
    assert all(torch.equal(cached, new[:2]) for cached, new in zip(again, fresh))
    processor.tokenize(texts)  # four strings through a cache of three: the least recently used goes
    assert list(processor.ids_cache) == texts[1:] and words.calls == 4
    evicted = processor.tokenize(texts[:1])
    assert words.calls == 5 and all(torch.equal(a, b) for a, b in zip(evicted, tokenize(texts[:1], 6, 64)))
