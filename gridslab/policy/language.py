"""Instruction tokenizer and encoder; no downloads, same ids on every machine.

Tokenizer: lowercase, split on non-alphanumerics, hash each word with ``zlib.crc32`` into
ids ``1 .. vocab_size - 1`` (0 is padding), pad or truncate to ``max_len``.
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


def tokenize(
    texts: list[str], max_len: int = LanguageConfig.max_len, vocab_size: int = LanguageConfig.vocab_size
) -> tuple[Tensor, Tensor]:
    """Hashed word ids ``[B, max_len]`` long and mask ``[B, max_len]`` bool (True = word)."""
    ids = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    for row, text in enumerate(texts):
        hashed = [1 + zlib.crc32(word.encode("utf-8")) % (vocab_size - 1) for word in words(text)[:max_len]]
        ids[row, : len(hashed)] = torch.tensor(hashed, dtype=torch.long)
    return ids, ids != PAD_ID


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
