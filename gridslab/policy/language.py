"""Instruction tokenizers and encoder; no downloads, same ids on every machine.

Two tokenizers, one interface (``encode(text) -> ids``, ``pad_id``, ``max_len``, and
``source`` / ``sha256`` naming which one a checkpoint was trained with):

* ``HashedWords`` (gridslab's own): lowercase, split on non-alphanumerics, hash each word
  with ``zlib.crc32`` into ids ``1 .. vocab_size - 1`` (0 is padding), truncate to ``max_len``;
  its ids feed ``LanguageEncoder``.
* ``LMTokenizer``: a pretrained LM's own tokenizer (loaded by ``gridslab.policy.pretrained``
  from the LM's local directory); its ids feed that LM's own token embeddings.

Encoder: word embedding + learned positions + ``depth`` pre-LN transformer blocks with
the padding mask, then LayerNorm: ``ids [B, T] -> features [B, T, D]``.
"""

from __future__ import annotations

import re
import zlib

import torch
from torch import Tensor, nn

from gridslab.policy.config import LanguageConfig
from gridslab.policy.layers import TransformerBlock

PAD_ID = 0
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lowercased alphanumeric words of ``text`` (punctuation and underscores split)."""
    return _WORD.findall(text.lower())


class HashedWords:
    """gridslab's word hashing (module docstring): ``encode(text) -> at most max_len ids``."""

    source = "hashed"  # what a checkpoint records as policy.lm.tokenizer
    sha256 = ""
    pad_id = PAD_ID

    def __init__(self, max_len: int = LanguageConfig.max_len, vocab_size: int = LanguageConfig.vocab_size):
        self.max_len = max_len
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        """Word ids in ``1 .. vocab_size - 1``, one per word, the first ``max_len`` words."""
        return [1 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 1) for word in words(text)[: self.max_len]]


class LMTokenizer:
    """A pretrained LM's tokenizer (a transformers tokenizer, special tokens included as the
    model adds them), truncated to ``max_len`` ids and padded with its pad token (else 0).

    source: the tokenizer's local directory; sha256: fingerprint of its files
    (``gridslab.policy.pretrained.tokenizer_fingerprint``).
    """

    def __init__(self, tokenizer, max_len: int, source: str, sha256: str):
        self.tokenizer = tokenizer
        self.max_len = max_len
        self.source = source
        self.sha256 = sha256
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        """The tokenizer's ids of ``text`` (with its special tokens), the first ``max_len``."""
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"][: self.max_len])


InstructionTokenizer = HashedWords | LMTokenizer


def pad_ids(rows: list[list[int]], max_len: int, pad_id: int) -> tuple[Tensor, Tensor]:
    """Id lists (each at most ``max_len``) -> ids ``[B, max_len]`` long padded with ``pad_id``
    and mask ``[B, max_len]`` bool (True = a real token)."""
    ids = torch.full((len(rows), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), max_len, dtype=torch.bool)
    for row, row_ids in enumerate(rows):
        ids[row, : len(row_ids)] = torch.tensor(row_ids, dtype=torch.long)
        mask[row, : len(row_ids)] = True
    return ids, mask


def tokenize(
    texts: list[str], max_len: int = LanguageConfig.max_len, vocab_size: int = LanguageConfig.vocab_size
) -> tuple[Tensor, Tensor]:
    """Hashed word ids ``[B, max_len]`` long and mask ``[B, max_len]`` bool (True = word)."""
    words_of = HashedWords(max_len, vocab_size)
    return pad_ids([words_of.encode(text) for text in texts], max_len, PAD_ID)


class LanguageEncoder(nn.Module):
    """Instruction encoder: ``(ids [B, T], mask [B, T]) -> features [B, T, D]``."""

    def __init__(self, cfg: LanguageConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=PAD_ID)
        self.positions = nn.Parameter(torch.zeros(1, cfg.max_len, cfg.dim))
        nn.init.trunc_normal_(self.embed.weight, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)
        with torch.no_grad():
            self.embed.weight[PAD_ID].zero_()
        self.blocks = nn.ModuleList(TransformerBlock(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids: ``[B, T]`` long (``T <= max_len``), mask: ``[B, T]`` bool -> ``[B, T, D]``."""
        features = self.embed(ids) + self.positions[:, : ids.shape[1]]
        for block in self.blocks:
            features = block(features, mask)
        return self.norm(features)
