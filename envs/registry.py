"""Name -> env factory map: ``make(name, **kwargs)`` and ``register(name, factory)``.

Names look like ``robosuite/Lift``. A user's own wrapper registers with
``envs.register("mylab/Task", factory)`` where ``factory(**kwargs) -> gymnasium.Env``.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from envs.errors import unknown_name

_FACTORIES: dict[str, Callable[..., gym.Env]] = {}


def register(name: str, factory: Callable[..., gym.Env], overwrite: bool = False) -> None:
    """Register ``factory`` under ``name``; re-registering needs ``overwrite=True``."""
    if name in _FACTORIES and not overwrite:
        raise ValueError(f"env {name!r} is already registered")
    _FACTORIES[name] = factory


def names() -> list[str]:
    """All registered env names, sorted."""
    return sorted(_FACTORIES)


def make(name: str, **kwargs: Any) -> gym.Env:
    """Build the env registered as ``name``; unknown names fail with the valid list."""
    if name not in _FACTORIES:
        raise unknown_name("env", name, _FACTORIES)
    return _FACTORIES[name](**kwargs)
