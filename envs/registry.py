"""Name -> env factory map: ``make(name, **kwargs)`` and ``register(name, factory)``.

Names look like ``robosuite/Lift`` or ``tabletop_spatial/3``. A user's own wrapper
registers with ``envs.register("mylab/Task", factory)`` where
``factory(**kwargs) -> gymnasium.Env``.

A *suite* is a named list of env names (``tabletop_spatial`` -> ``tabletop_spatial/0`` ...
``/9``), registered with ``register_suite``; ``expand(name)`` turns a suite or a single
env name into the env names it stands for, and ``check_ready(name)`` runs the suite's own
readiness check (e.g. LIBERO's assets are present) so a run fails before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym

from envs.errors import EnvUserError, unknown_name

_FACTORIES: dict[str, Callable[..., gym.Env]] = {}


@dataclass(frozen=True)
class Suite:
    """tasks() -> env names, in task-id order; ready() raises ``EnvUserError`` naming what is
    missing (assets, packages) or returns None."""

    tasks: Callable[[], list[str]]
    ready: Callable[[], None] | None = None


_SUITES: dict[str, Suite] = {}


def register(name: str, factory: Callable[..., gym.Env], overwrite: bool = False) -> None:
    """Register ``factory`` under ``name``; re-registering needs ``overwrite=True``."""
    if name in _FACTORIES and not overwrite:
        raise ValueError(f"env {name!r} is already registered")
    _FACTORIES[name] = factory


def register_suite(name: str, tasks: Callable[[], list[str]], ready: Callable[[], None] | None = None,
                   overwrite: bool = False) -> None:
    """Register suite ``name``: ``tasks()`` lists its env names (each also ``register``-ed)."""
    if name in _SUITES and not overwrite:
        raise ValueError(f"suite {name!r} is already registered")
    _SUITES[name] = Suite(tasks, ready)


def names() -> list[str]:
    """All registered env names, sorted."""
    return sorted(_FACTORIES)


def suite_names() -> list[str]:
    """All registered suite names, sorted."""
    return sorted(_SUITES)


def _suite_of(name: str) -> Suite | None:
    """The suite ``name`` is, or holds: ``tabletop_spatial/3`` -> ``tabletop_spatial``,
    ``libero/libero_spatial/3`` -> ``libero_spatial``."""
    parts = name.split("/")
    for candidate in (name, "/".join(parts[:-1]), "/".join(parts[1:-1])):
        if candidate in _SUITES:
            return _SUITES[candidate]
    return None


def expand(name: str) -> list[str]:
    """Env names that ``name`` stands for: a suite's tasks, or ``[name]`` for one env."""
    if name in _SUITES:
        return list(_SUITES[name].tasks())
    if name not in _FACTORIES:
        raise unknown_name("env or suite", name, {**_FACTORIES, **_SUITES})
    return [name]


def check_ready(name: str) -> None:
    """Raise ``EnvUserError`` if the suite ``name`` (or the suite of env ``name``) cannot run here."""
    expand(name)
    suite = _suite_of(name)
    if suite is not None and suite.ready is not None:
        suite.ready()


def make(name: str, **kwargs: Any) -> gym.Env:
    """Build the env registered as ``name``; unknown names fail with the valid list."""
    if name not in _FACTORIES:
        if name in _SUITES:
            raise EnvUserError(f"{name!r} is a suite of {len(_SUITES[name].tasks())} tasks; make one of them, "
                               f"e.g. {_SUITES[name].tasks()[0]!r}")
        raise unknown_name("env", name, _FACTORIES)
    return _FACTORIES[name](**kwargs)
