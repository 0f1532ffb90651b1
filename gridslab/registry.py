"""One tiny registry, timm-style: ``@REG.register("name", config=Cfg)`` and ``REG.build``.

A registered entry is a class (or factory) plus an optional typed config dataclass.
``build(node, *args)`` validates the OmegaConf node against that dataclass (unknown key
or wrong type -> one-line ``UserError``) and calls ``factory(config, *args)``.
Used for compressors, budgets, policies' heads, perturbations and experts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from gridslab.errors import UserError, nearest, unknown

T = TypeVar("T")


@dataclasses.dataclass
class Entry(Generic[T]):
    """A registered factory and the dataclass its config must match (or None)."""

    factory: Callable[..., T]
    config: type | None


class Registry(Generic[T]):
    """Name -> factory map for one kind of component (e.g. ``"compressor"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name`` with its config dataclass."""

        def wrap(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(factory, config)
            return factory

        return wrap

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; unknown names raise a one-line ``UserError``."""
        if name not in self._entries:
            raise unknown(self.kind, name, self._entries)
        return self._entries[name]

    def config(self, node: DictConfig | dict, where: str | None = None) -> Any:
        """Validate ``node`` (which holds ``name``) against the entry's dataclass.

        Returns the typed config (an OmegaConf structured node, attribute access).
        ``where`` names the node in error messages (default: the registry kind).
        """
        where = where or self.kind
        node = OmegaConf.create(node) if isinstance(node, dict) else node
        name = node.get("name")
        if name is None:
            raise UserError(f"{where}.name is missing; valid: {', '.join(self.names())}")
        entry = self.entry(str(name))
        if entry.config is None:
            return node
        return validate(node, entry.config, where)

    def build(self, node: DictConfig | dict, *args: Any, **kwargs: Any) -> T:
        """Validate ``node`` and instantiate ``factory(config, *args, **kwargs)``."""
        cfg = self.config(node)
        return self.entry(str(cfg.name)).factory(cfg, *args, **kwargs)


def validate(node: DictConfig, schema: type, where: str) -> DictConfig:
    """Merge ``node`` onto the structured ``schema``; bad keys/types -> one-line error."""
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, node)
    except ConfigKeyError as err:
        key = str(getattr(err, "key", "") or "")
        valid = [f.name for f in dataclasses.fields(schema)]
        close = nearest(key, valid)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown key {where}.{key}{hint}; valid keys: {', '.join(valid)}") from None
    except ValidationError as err:
        key = str(getattr(err, "full_key", "") or getattr(err, "key", ""))
        field = {f.name: f for f in dataclasses.fields(schema)}.get(key.split(".")[-1])
        expected = getattr(field.type, "__name__", str(field.type)) if field else "?"
        value = OmegaConf.select(node, key, default="?") if key else "?"
        raise UserError(f"wrong type for {where}.{key}: {value!r}, expected {expected}") from None
    OmegaConf.set_struct(merged, True)
    return merged
