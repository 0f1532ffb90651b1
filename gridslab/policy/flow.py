"""Flow matching for action chunks (pi0-style): the action expert, the loss and Euler sampling.

Conventions follow openpi's ``pi0.py``: a noisy chunk ``x_t = t * noise + (1 - t) * actions``
at flow time ``t ~ Beta(1.5, 1) * 0.999 + 0.001``, the target velocity ``u = noise - actions``,
an MSE loss on the predicted velocity, and sampling from ``x_1 = noise`` with ``steps`` Euler
steps of ``dt = -1 / steps`` down to ``t = 0``.

The action expert is a transformer of its own width and depth over the H noisy action tokens.
Each block has self-attention over the chunk, then cross-attention to the prefix (the
backbone's final states over [instruction, visual tokens, proprio], key-masked like the
backbone), then an MLP. The prefix's keys and values of every block depend on the prefix
only, so ``prefix_cache`` computes them once per policy call and every Euler step reuses them.
Unlike pi0, whose expert layer l attends jointly to the VLM's own layer-l keys/values, this
expert reads the backbone's last states through its own projections (GR00T-style), so one
head serves the built-in transformer and every pretrained LM alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridslab.policy.config import HeadConfig
from gridslab.policy.layers import SelfAttention

PrefixCache = list[tuple[Tensor, Tensor]]


def attention_bias(key_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """An additive attention mask ``[B, 1, 1, N]`` from keys ``[B, N]``: bool (True = valid)
    or float weights in [0, 1] (log-weights; 0 masks). A row with no valid key keeps all."""
    weights = key_mask.to(dtype)
    weights = torch.where(~(weights > 0).any(dim=1, keepdim=True), torch.ones_like(weights), weights)
    bias = torch.where(weights > 0, weights.clamp_min(1e-30).log(), torch.full_like(weights, float("-inf")))
    return bias[:, None, None, :]


def time_embedding(t: Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    """Sine-cosine embedding ``[B, dim]`` of flow times ``t`` ``[B]`` (openpi's periods)."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=t.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = t.float()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1).to(t.dtype)


class ExpertBlock(nn.Module):
    """Pre-LN block on action tokens ``[B, H, C]``: self-attention, cross-attention to the
    prefix (keys/values from ``prefix_kv``), MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, prefix_dim: int):
        super().__init__()
        self.heads = heads
        self.self_norm = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, heads)
        self.cross_norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(prefix_dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def prefix_kv(self, prefix: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``[B, heads, N, C / heads]`` of the prefix ``[B, N, prefix_dim]``."""
        batch, length, _ = prefix.shape
        kv = self.key_value(prefix).view(batch, length, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return kv[0], kv[1]

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], bias: Tensor) -> Tensor:
        """x: ``[B, H, C]``; kv: ``prefix_kv`` output; bias: ``attention_bias`` of the prefix keys."""
        x = x + self.self_attn(self.self_norm(x))
        batch, length, dim = x.shape
        query = self.query(self.cross_norm(x)).view(batch, length, self.heads, -1).transpose(1, 2)
        attended = F.scaled_dot_product_attention(query, kv[0], kv[1], attn_mask=bias.to(query.dtype))
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.mlp_norm(x))


class ActionExpert(nn.Module):
    """Velocity field ``v(x_t, t | prefix)``: noisy chunk ``[B, H, A]`` -> velocity ``[B, H, A]``.

    cfg: the head config (``dim``, ``depth``, ``heads``, ``mlp_ratio``); prefix_dim: width of
    the backbone's states; chunk: H; action_dim: A.
    """

    def __init__(self, cfg: HeadConfig, prefix_dim: int, chunk: int, action_dim: int):
        super().__init__()
        dim = cfg.dim
        self.action_in = nn.Linear(action_dim, dim)
        self.time_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))  # pi0's action_time_mlp
        self.positions = nn.Parameter(torch.zeros(1, chunk, dim))
        nn.init.trunc_normal_(self.positions, std=0.02)
        self.prefix_norm = nn.LayerNorm(prefix_dim)
        self.blocks = nn.ModuleList(ExpertBlock(dim, cfg.heads, cfg.mlp_ratio, prefix_dim) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim)
        self.action_out = nn.Linear(dim, action_dim)

    def prefix_cache(self, prefix: Tensor) -> PrefixCache:
        """Every block's prefix keys and values (``ExpertBlock.prefix_kv``) of ``prefix [B, N, D]``."""
        normed = self.prefix_norm(prefix)
        return [block.prefix_kv(normed) for block in self.blocks]

    def forward(self, noisy: Tensor, t: Tensor, cache: PrefixCache, key_mask: Tensor) -> Tensor:
        """Velocity ``[B, H, A]`` at ``noisy [B, H, A]``, times ``t [B]``, with the prefix's
        ``cache`` and its keys ``key_mask [B, N]``."""
        tokens = self.action_in(noisy)
        times = time_embedding(t, tokens.shape[-1])[:, None, :].expand_as(tokens)
        x = self.time_mlp(torch.cat([tokens, times.to(tokens.dtype)], dim=-1)) + self.positions
        bias = attention_bias(key_mask, x.dtype)
        for block, kv in zip(self.blocks, cache):
            x = block(x, kv, bias)
        return self.action_out(self.norm(x))


def sample_time(batch: int, cfg: HeadConfig, device: torch.device) -> Tensor:
    """Flow times ``[B]`` in [0.001, 1]: ``Beta(time_alpha, time_beta) * 0.999 + 0.001`` (openpi)."""
    beta = torch.distributions.Beta(torch.tensor(cfg.time_alpha), torch.tensor(cfg.time_beta))
    return (beta.sample((batch,)) * 0.999 + 0.001).to(device)


def initial_noise(shape: tuple[int, int, int], noise_seed: Tensor | None, seed: int, device: torch.device) -> Tensor:
    """Standard normal ``[B, H, A]``: sample b from a CPU generator seeded by ``(seed,
    noise_seed[b])`` (mixed by numpy's ``SeedSequence``), so it does not depend on the rest of
    the batch; torch's global RNG when ``noise_seed`` is None."""
    if noise_seed is None:
        return torch.randn(shape, device=device)
    if noise_seed.shape != (shape[0],):
        raise ValueError(f"noise_seed must have shape [{shape[0]}], got {list(noise_seed.shape)}")
    rows = []
    for sample_seed in noise_seed.tolist():
        entropy = [seed % 2**64, sample_seed % 2**64]
        state = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
        rows.append(torch.randn(shape[1:], generator=torch.Generator().manual_seed(state)))
    return torch.stack(rows).to(device)
