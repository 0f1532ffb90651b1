"""A pretrained LM's own tokenizer and token embeddings for the instruction, from a tiny
tokenizer and LM the tests build and save locally: the ids reach the LM's embedding table,
a directory without a tokenizer keeps gridslab's hashed words, and a checkpoint records the
tokenizer it was trained with (same actions after a round trip, one-line errors when gone)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from gridslab.errors import UserError
from gridslab.eval.checkpoint import load_policy
from gridslab.policy.language import HashedWords, LMTokenizer
from gridslab.train.fit import fit
from tests.helpers import QUICK_FIT, tiny_config
from tests.test_pretrained import policy_from, pretrained

WORDS = ["<pad>", "<unk>", "<bos>", "lift", "the", "red", "cube", "pick", "up", "and", "hold", "it", "high", "word"]
LM_CONFIGS = {
    "qwen2": ("Qwen2Config", "Qwen2Model", {}),
    "gemma": ("GemmaConfig", "GemmaModel", {"head_dim": 24}),
}


def save_tiny_lm(directory: Path, lm: str = "qwen2", tokenizer: bool = True, vocab_size: int = len(WORDS)) -> Path:
    """A randomly initialised tiny ``lm`` saved in ``directory``, with (``tokenizer``) a word-level
    tokenizer over ``WORDS`` that lowercases, splits on whitespace and punctuation and puts
    ``<bos>`` first, saved beside it as a transformers fast tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    config_class, model_class, extra = LM_CONFIGS[lm]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=vocab_size,
        **extra,
    )
    getattr(transformers, model_class)(config).save_pretrained(directory)
    if tokenizer:
        words = Tokenizer(models.WordLevel({word: index for index, word in enumerate(WORDS)}, unk_token="<unk>"))
        words.normalizer = normalizers.Lowercase()
        words.pre_tokenizer = pre_tokenizers.Whitespace()
        words.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=words, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>"
        )
        fast.save_pretrained(directory)
    return directory


def with_lm(directory: Path, lm: str = "qwen2", *extra: str) -> list[str]:
    return [*pretrained("siglip", lm), f"policy.lm.path={directory}", *extra]


@pytest.mark.parametrize("lm", sorted(LM_CONFIGS))
def test_the_lm_reads_its_own_tokenizers_ids_through_its_own_embeddings(tmp_path, lm):
    directory = save_tiny_lm(tmp_path / lm, lm)
    policy = policy_from(with_lm(directory, lm)).eval()
    tokenizer = policy.processor.tokenizer
    assert isinstance(tokenizer, LMTokenizer) and policy.language is None and policy.backbone.text_proj is None
    texts = ["Lift the red cube!", "pick up the cube and hold it high"]
    expected = [tokenizer.tokenizer(text)["input_ids"] for text in texts]
    assert expected[0] == [2, 3, 4, 5, 6, 1]  # <bos> lift the red cube <unk>: the tokenizer's own ids
    batch = policy.example_batch(2)
    batch.update(zip(("instruction_ids", "instruction_mask"), policy.processor.tokenize(texts)), instruction=texts)
    for row, ids in enumerate(expected):
        assert batch["instruction_ids"][row, : len(ids)].tolist() == ids and batch["instruction_mask"][row].sum() == len(ids)
    seen = {}
    embeddings = policy.backbone.model.get_input_embeddings()
    embeddings.register_forward_hook(lambda module, args, output: seen.update(ids=args[0], rows=output))
    policy.backbone.model.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    with torch.no_grad():
        policy(batch)
    assert torch.equal(seen["ids"], batch["instruction_ids"])  # the ids fed to the LM are the tokenizer's
    length = batch["instruction_ids"].shape[1]
    # its own embedding rows enter the LM as they are (Gemma scales them by sqrt(width) itself, as for ids)
    assert torch.equal(seen["inputs_embeds"][:, :length], seen["rows"])


@pytest.mark.parametrize("choice", ["no tokenizer in the LM directory", "policy.lm.tokenizer=hashed"])
def test_hashed_words_without_an_lm_tokenizer(tmp_path, choice):
    hashed_choice = choice.startswith("policy")
    directory = save_tiny_lm(tmp_path / "lm", tokenizer=hashed_choice)
    overrides = with_lm(directory, "qwen2", *([choice] if hashed_choice else []))
    if hashed_choice:
        policy = policy_from(overrides)
    else:
        with pytest.warns(UserWarning, match=r"holds no tokenizer .* gridslab's hashed words"):
            policy = policy_from(overrides)
    assert isinstance(policy.processor.tokenizer, HashedWords) and policy.language is not None
    assert policy.backbone.text_proj is not None


def test_a_tokenizer_larger_than_the_lms_embedding_table_is_one_line(tmp_path):
    directory = save_tiny_lm(tmp_path / "lm", vocab_size=4)
    with pytest.raises(UserError, match=r"has 14 tokens, more than the LM's 4 embedding rows"):
        policy_from(with_lm(directory))


def test_checkpoint_records_the_tokenizer_and_reproduces_actions(tmp_path, lift_demos):
    directory = save_tiny_lm(tmp_path / "lm")
    cfg = tiny_config(
        tmp_path,
        lift_demos,
        *with_lm(directory),
        *QUICK_FIT,
        "optim.ema_decay=0",
    )
    result = fit(cfg)
    from gridslab.train.module import VLAModule

    module = VLAModule.load_from_checkpoint(result["last_checkpoint"], map_location="cpu", weights_only=True)
    for name in ("model.safetensors", "config.json"):  # the weights are in the checkpoint; the tokenizer stays
        (directory / name).unlink()
    policy, stored, _ = load_policy(result["last_checkpoint"])
    assert stored.policy.lm.path == "" and stored.policy.lm.tokenizer == str(directory.resolve())
    assert len(stored.policy.lm.tokenizer_sha256) == 64 and isinstance(policy.processor.tokenizer, LMTokenizer)
    batch = policy.example_batch(2, instruction="lift the red cube")
    assert batch["instruction_ids"][0, :5].tolist() == [2, 3, 4, 5, 6]
    with torch.no_grad():
        assert torch.allclose(module.eval_policy.eval()(batch)["actions"], policy(batch)["actions"], atol=1e-6)
    config = directory / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"<unk>"', '"<pad>"'))
    with pytest.raises(UserError, match=r"is not the tokenizer the policy was trained with"):
        load_policy(result["last_checkpoint"])
    shutil.rmtree(directory)
    with pytest.raises(UserError, match=r"policy.lm.tokenizer=.*lm holds no tokenizer .*restore it"):
        load_policy(result["last_checkpoint"])
