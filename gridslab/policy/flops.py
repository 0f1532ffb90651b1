"""FLOPs of one policy forward, per component, with ``torch.utils.flop_counter``.

FLOPs here count a multiply-add as 2 (torch's convention), for one forward pass.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def build_on_meta(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` on the meta device (shapes only, no memory for weights), in eval mode, so a
    full-size policy's FLOPs can be counted. transformers' sdpa mask builder reads tensor values
    (``.item()``), which meta tensors lack, so its models are switched to eager attention."""
    with torch.device("meta"):
        model = build().eval()
    for module in model.modules():
        if hasattr(getattr(module, "config", None), "_attn_implementation"):
            module.config._attn_implementation = "eager"
    return model


def count_flops(fn: Callable[[], Any], depth: int = 2) -> dict[str, int]:
    """Run ``fn()`` under a FLOP counter; returns {"total": n, "<module path>": n, ...}.

    Module paths go ``depth`` levels deep (e.g. ``VLA.vision``); ``fn`` runs without grad.
    """
    counter = FlopCounterMode(display=False, depth=depth)
    with counter, torch.no_grad():
        fn()
    per_module: dict[str, int] = defaultdict(int)
    for module, counts in counter.get_flop_counts().items():
        per_module[module] = int(sum(counts.values()))
    per_module["total"] = int(counter.get_total_flops())
    return dict(per_module)


def flops_by_tokens(policy: torch.nn.Module) -> dict[int, float]:
    """GFLOPs of one batch-1 policy forward (budget module excluded: K is given) at token
    counts the policy can run at: ``{K: GFLOPs}`` for K in ``table_ks(K_max)`` (budget
    honoured: the forward runs on exactly K tokens; ``gflops_at`` interpolates between them),
    or the one entry ``{K_max: GFLOPs}`` for compressors that keep every patch.
    The policy's train/eval mode is restored afterwards."""
    was_training = policy.training
    policy.eval()
    k_max = policy.max_tokens_per_image()
    honours = all(encoder.compressor.honours_budget for encoder in policy.vision.values())
    batch = policy.example_batch(1)
    table = {}
    for k in table_ks(k_max) if honours else [k_max]:
        k_batch = {**batch, "k": torch.tensor([k], device=batch["proprio"].device)} if honours else batch
        table[k] = count_flops(lambda k_batch=k_batch: policy(k_batch), depth=0)["total"] / 1e9
    policy.train(was_training)
    return table


def table_ks(k_max: int) -> list[int]:
    """Token counts a FLOPs table measures: every K up to 16, then powers of two and K_max
    (FLOPs grow almost linearly in K, so interpolation between them is close)."""
    if k_max <= 16:
        return list(range(1, k_max + 1))
    return sorted({*range(1, 17), *(2**i for i in range(5, k_max.bit_length())), k_max})


def gflops_at(table: dict[int, float], tokens: float) -> float:
    """GFLOPs per sample at a (possibly fractional, e.g. mean or soft) token count, linearly
    interpolated in ``table`` (``flops_by_tokens``) and clamped to its range."""
    ks = sorted(table)
    tokens = min(max(tokens, ks[0]), ks[-1])
    lower = max(k for k in ks if k <= tokens)
    upper = min(k for k in ks if k >= tokens)
    if lower == upper:
        return table[lower]
    return table[lower] + (table[upper] - table[lower]) * (tokens - lower) / (upper - lower)


COMPONENTS = ("language", "vision_before", "compressor", "vision_after", "budget", "backbone", "head")


def flops_by_component(policy: torch.nn.Module, batch: dict[str, Any]) -> dict[str, int]:
    """FLOPs of one ``policy(batch)`` forward split by component (summed over cameras):
    language, vision_before (stem + blocks on the full patch grid, or a pretrained tower's
    embeddings and blocks up to its ``compress_after``, the whole tower by default),
    compressor (with the instruction projection it reads), vision_after (blocks on the K
    tokens + norm), budget, backbone, head; plus "total" (equal to the sum of the components).
    Module paths are counted at every depth; each encoder's ``flop_component`` picks the ones
    that do not overlap."""
    counts = count_flops(lambda: policy(batch), depth=5)
    split = dict.fromkeys(COMPONENTS, 0)
    for path, flops in counts.items():
        parts = path.split(".")
        if len(parts) == 2 and parts[1] in ("language", "budget", "backbone", "head"):
            split[parts[1]] += flops
        elif len(parts) == 2 and parts[1] == "text_to_vision":
            split["compressor"] += flops
        elif len(parts) >= 4 and parts[1] == "vision" and parts[2] in policy.vision:
            # each encoder names the modules it calls directly (stem, blocks, tower parts, compressor, norm)
            part = policy.vision[parts[2]].flop_component(".".join(parts[3:]))
            if part is not None:
                split[part] += flops
    split["total"] = counts["total"]
    return split
