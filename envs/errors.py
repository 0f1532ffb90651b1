"""The one error type envs raise for bad user input (a single clear line).

`envs` must import without torch, so it has its own copy of the idea; gridslab's
``UserError`` subclasses this one so a CLI catches both with one ``except``.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class EnvUserError(ValueError):
    """Bad input to an environment (unknown name, camera, resolution...)."""


def nearest(value: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` choices closest to ``value``: only those scoring near the best match,
    so a shared prefix ("robosuite/...") does not drag in every name."""
    scored = sorted(((difflib.SequenceMatcher(None, value, c).ratio(), c) for c in choices), reverse=True)
    if not scored or scored[0][0] < 0.6:
        return []
    best = scored[0][0]
    return [c for score, c in scored[:n] if score >= best - 0.05]


def unknown_name(kind: str, value: str, choices: Iterable[str]) -> EnvUserError:
    """An ``EnvUserError`` for an unknown ``kind`` name, with near matches and the valid list."""
    choices = sorted(choices)
    close = nearest(value, choices)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return EnvUserError(f"unknown {kind} {value!r}{hint}; valid: {', '.join(choices)}")
