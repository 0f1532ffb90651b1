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
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

from envs.errors import EnvUserError, nearest

_FACTORIES: dict[str, Callable[..., gym.Env]] = {}


@dataclass(frozen=True)
class DatasetWriter:
    """How the collector writes a suite's missing files in the suite's own layout.

    write(path, demos, env_name, collector) -> path: ``demos`` an iterable of dicts
    (``envs.collect.read_shard``), ``collector`` a JSON-able dict of how they were made;
    env_kwargs: what the collecting env is built with (the layout's own conventions), over the
    experiment's; notice: said once before collecting, ``{folder}`` the files' folder."""

    write: Callable[..., Path]
    env_kwargs: dict[str, Any]
    notice: str = ""


@dataclass(frozen=True)
class Suite:
    """tasks() -> env names, in task-id order; ready() raises ``EnvUserError`` naming what is
    missing (assets, packages) or returns None. A suite whose demonstrations come as files
    of its own (LIBERO) has ``datasets(root) -> [Path]`` (one per task, task order), and either
    ``check_datasets(root, tasks)`` (``EnvUserError`` naming the missing files of ``tasks``, env
    names of the suite, that the scripted experts cannot collect) or a ``writer`` (``DatasetWriter``) the collector writes missing ones with,
    in the suite's own layout; ``offline``: a config that runs without downloads instead."""

    tasks: Callable[[], list[str]]
    ready: Callable[[], None] | None = None
    datasets: Callable[[str], list[Path]] | None = None
    check_datasets: Callable[[str, list[str]], None] | None = None
    offline: str = ""
    writer: DatasetWriter | None = None


_SUITES: dict[str, Suite] = {}


def register(name: str, factory: Callable[..., gym.Env], overwrite: bool = False) -> None:
    """Register ``factory`` under ``name``; re-registering needs ``overwrite=True``."""
    if name in _FACTORIES and not overwrite:
        raise ValueError(f"env {name!r} is already registered")
    _FACTORIES[name] = factory


def register_suite(
    name: str, tasks: Callable[[], list[str]], ready: Callable[[], None] | None = None, overwrite: bool = False, **files: Any
) -> None:
    """Register suite ``name``: ``tasks()`` lists its env names (each also ``register``-ed);
    ``files``: the ``Suite`` fields ``datasets``, ``check_datasets``, ``offline``, ``writer``."""
    if name in _SUITES and not overwrite:
        raise ValueError(f"suite {name!r} is already registered")
    _SUITES[name] = Suite(tasks, ready, **files)


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


def _unknown(kind: str, name: str, suites_too: bool) -> EnvUserError:
    """One line for an unknown name: near matches among every name, and the valid names with
    each suite's tasks folded into one pattern (``tabletop_spatial/<0-9>``)."""
    in_suites = {task: suite for suite, spec in _SUITES.items() for task in spec.tasks()}
    close = nearest(name, [*_FACTORIES, *(_SUITES if suites_too else ())])
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    patterns = [
        f"{tasks[0].rsplit('/', 1)[0]}/<0-{len(tasks) - 1}>" for tasks in (spec.tasks() for spec in _SUITES.values()) if tasks
    ]
    valid = sorted(n for n in _FACTORIES if n not in in_suites) + patterns + (sorted(_SUITES) if suites_too else [])
    return EnvUserError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}")


def expand(name: str) -> list[str]:
    """Env names that ``name`` stands for: a suite's tasks, or ``[name]`` for one env."""
    if name in _SUITES:
        return list(_SUITES[name].tasks())
    if name not in _FACTORIES:
        raise _unknown("env", name, suites_too=True)
    return [name]


def check_ready(name: str) -> None:
    """Raise ``EnvUserError`` if the suite ``name`` (or the suite of env ``name``) cannot run
    here, naming the suite's offline alternative when it has one."""
    expand(name)
    suite = _suite_of(name)
    if suite is None or suite.ready is None:
        return
    try:
        suite.ready()
    except EnvUserError as err:
        if suite.offline:
            raise EnvUserError(f"{err}; or run offline with conf={suite.offline}") from None
        raise


def dataset_paths(name: str, root: str, image_size: int) -> list[Path]:
    """Default demonstration files of env or suite ``name``, one per task in task order: the
    suite's own files (``Suite.datasets``), else ``<root>/<env name>_<size>px.hdf5``."""
    tasks = expand(name)
    suite = _suite_of(name)
    if suite is not None and suite.datasets is not None:
        files = dict(zip(suite.tasks(), suite.datasets(root)))
        return [files[task] for task in tasks]
    return [Path(root) / f"{task.replace('/', '_')}_{image_size}px.hdf5" for task in tasks]


def check_datasets(name: str, root: str) -> bool:
    """For a suite with files of its own and no ``writer``: raise ``EnvUserError`` naming missing
    ones and return False (nothing to collect). Otherwise True: the scripted experts collect
    what is missing (for a suite with a ``writer``, in its own layout, after its
    ``check_datasets`` raised for missing files they cannot write)."""
    suite = _suite_of(name)
    if suite is None or suite.datasets is None:
        return True
    if suite.check_datasets is not None:
        suite.check_datasets(root, expand(name))
    return suite.writer is not None


def dataset_writer(name: str) -> DatasetWriter | None:
    """The ``DatasetWriter`` of env or suite ``name`` when its demonstration files have a layout
    of their own that the collector writes (LIBERO's), else None."""
    suite = _suite_of(name)
    return None if suite is None else suite.writer


def make(name: str, **kwargs: Any) -> gym.Env:
    """Build the env registered as ``name``; unknown names fail with the valid list."""
    if name not in _FACTORIES:
        if name in _SUITES:
            raise EnvUserError(
                f"{name!r} is a suite of {len(_SUITES[name].tasks())} tasks; make one of them, e.g. {_SUITES[name].tasks()[0]!r}"
            )
        raise _unknown("env", name, suites_too=False)
    return _FACTORIES[name](**kwargs)
