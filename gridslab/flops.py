"""FLOPs of one policy forward, per component, with ``torch.utils.flop_counter``.

FLOPs here count a multiply-add as 2 (torch's convention), for one forward pass.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


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
