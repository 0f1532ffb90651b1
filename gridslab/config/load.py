"""Experiment configs: ``conf/<name>.yaml`` + ``defaults:`` groups + CLI overrides, validated.

    python train.py conf=robosuite_lift compressor=grids compressor.k=4 trainer.max_epochs=20

* ``conf=NAME`` picks the experiment file ``conf/NAME.yaml``.
* ``GROUP=OPTION`` (policy, compressor, budget, data, trainer, optim, eval) swaps in
  ``conf/GROUP/OPTION.yaml``.
* ``a.b=value`` is an OmegaConf dotlist override.

The composed config is validated against the typed schemas of ``gridslab.config.schema``
(and ``gridslab.policy.config``); compressor and budget nodes are validated against the
schema their registry entry names; ``typed`` turns it into those dataclasses. Every mistake is one ``UserError`` line naming the key
or value and the nearest valid choices. Plain OmegaConf: no interpolation resolvers, no
``_target_`` imports, so a config can never run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from gridslab.config.run_layout import CONFIG_FILE
from gridslab.config.schema import DEFAULT_EXPERIMENT, ExperimentConfig
from gridslab.errors import UserError, nearest, unknown
from gridslab.policy.config import as_policy_config

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("policy", "compressor", "budget", "data", "trainer", "optim", "eval")


def _options(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def _parse_value(key: str, value: str) -> Any:
    """A dotlist value as YAML data (safe loader: no tags that build objects)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise UserError(f"bad value for {key}: {value!r} ({str(err).splitlines()[0]})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path} must hold a mapping of keys, not {type(loaded).__name__}")
    return loaded


def _group_node(group: str, option: str) -> dict[str, Any]:
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.exists():
        raise unknown(f"{group} option", option, _options(CONF_DIR / group))
    return _read_yaml(path)


def split_overrides(args: list[str]) -> tuple[str | None, dict[str, str], list[str]]:
    """Sort CLI words into (experiment name, {group: option}, dotlist overrides)."""
    experiment, groups, dotlist = None, {}, []
    for arg in args:
        if "=" not in arg:
            raise UserError(f"cannot parse {arg!r}: overrides look like key=value (e.g. compressor.k=8)")
        key, value = arg.split("=", 1)
        if key == "conf":
            experiment = value
        elif key in GROUPS:
            groups[key] = value
        else:
            dotlist.append(arg)
    return experiment, groups, dotlist


def compose(experiment: str, groups: dict[str, str] | None = None) -> DictConfig:
    """Load ``conf/<experiment>.yaml`` and its ``defaults:`` groups (CLI group choices win)."""
    path = CONF_DIR / f"{experiment}.yaml"
    if not path.exists():
        raise unknown("conf", experiment, _options(CONF_DIR))
    raw = _read_yaml(path)
    chosen: dict[str, str] = {}
    for entry in raw.pop("defaults", []) or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            raise UserError(f"{path}: each defaults entry is one 'group: option' pair, got {entry!r}")
        ((group, option),) = entry.items()
        if group not in GROUPS:
            raise unknown("config group", group, GROUPS)
        chosen[group] = str(option)
    chosen.update(groups or {})
    composed = OmegaConf.create({"experiment": experiment})
    for group, option in chosen.items():
        composed = OmegaConf.merge(composed, {group: _group_node(group, option)})
    return OmegaConf.merge(composed, raw)


def _schema_fields(node: Any) -> list[str]:
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _explain(err: OmegaConfBaseException, cfg: DictConfig | None) -> UserError:
    """Turn an OmegaConf key/type error into one line with the key and the valid choices."""
    full_key = str(getattr(err, "full_key", "") or getattr(err, "key", "") or "")
    parent_key, _, leaf = full_key.rpartition(".")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parent = OmegaConf.select(cfg, parent_key) if (cfg is not None and parent_key) else cfg
        valid = _schema_fields(parent)
        close = nearest(leaf, valid)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return UserError(
            f"unknown config key {full_key!r}{hint}; valid keys{' of ' + parent_key if parent_key else ''}: {', '.join(valid)}"
        )
    message = str(err).splitlines()[0]
    return UserError(f"wrong type for {full_key}: {message}")


def _validate_registered(cfg: DictConfig) -> None:
    """Validate the compressor and budget nodes against their registered schemas; an
    adaptive budget's ``k_max`` becomes ``compressor.k`` (the slots it chooses among), which
    must fit the policy's patch grid (``gridslab.compress.check_k``)."""
    from gridslab.compress import COMPRESSORS, check_k
    from gridslab.policy.budget import BUDGETS

    for key, registry in (("compressor", COMPRESSORS), ("budget", BUDGETS)):
        node = OmegaConf.create(OmegaConf.to_container(cfg[key]))
        typed = registry.config(node, where=key)
        with _unlocked(cfg):
            cfg[key] = OmegaConf.to_container(typed)
    if cfg.budget.name == "adaptive" and cfg.budget.k_max > 0:  # the adaptive range sets the slot count
        if cfg.compressor.name == "identity":
            raise UserError(
                "budget=adaptive needs a compressor that honours a per-sample k; "
                "compressor=identity keeps every patch (use budget=fixed)"
            )
        with _unlocked(cfg):
            cfg.compressor.k = int(cfg.budget.k_max)
    side = as_policy_config(cfg.policy).vision.patch_grid_side()
    if side is not None:  # a k the patch grid cannot give fails here, before anything is built or loaded
        check_k(cfg.compressor, side, side)


class _unlocked:
    """Temporarily lift struct mode on ``cfg``."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self) -> DictConfig:
        OmegaConf.set_struct(self.cfg, False)
        return self.cfg

    def __exit__(self, *exc: Any) -> None:
        OmegaConf.set_struct(self.cfg, True)


def load_config(args: list[str] | None = None, base: DictConfig | dict[str, Any] | None = None) -> DictConfig:
    """Compose, override and validate a config from CLI words.

    ``base``: a resolved config to start from instead of a conf file (e.g. the one stored
    in a checkpoint); group words and dotlist overrides still apply on top.
    """
    experiment, groups, dotlist = split_overrides(list(args or []))
    schema = OmegaConf.structured(ExperimentConfig)
    if base is not None:
        composed = OmegaConf.create(OmegaConf.to_container(base) if isinstance(base, DictConfig) else base)
        for group, option in groups.items():
            composed = OmegaConf.merge(composed, {group: None})
            composed[group] = _group_node(group, option)
    else:
        composed = compose(experiment or DEFAULT_EXPERIMENT, groups)
    try:
        cfg = OmegaConf.merge(schema, composed)
        OmegaConf.set_struct(cfg, True)
        for override in dotlist:
            key, value = override.split("=", 1)
            if key.split(".")[0] in ("compressor", "budget") or ".hf_config" in key:  # free-form nodes
                with _unlocked(cfg):
                    OmegaConf.update(cfg, key, _parse_value(key, value) if value else value, merge=True)
            else:
                cfg.merge_with_dotlist([override])
    except (ConfigKeyError, ConfigAttributeError, ValidationError) as err:
        raise _explain(err, OmegaConf.structured(ExperimentConfig)) from None
    except OmegaConfBaseException as err:
        raise UserError(f"bad config override: {str(err).splitlines()[0]}") from None
    except yaml.YAMLError as err:  # e.g. a tag that would build a Python object
        raise UserError(f"bad config override value: {str(err).splitlines()[0]}") from None
    _validate_registered(cfg)
    typed(cfg)  # every schema's __post_init__ checks its fields, here, once
    return cfg


def typed(cfg: DictConfig | dict[str, Any]) -> ExperimentConfig:
    """A resolved config (a ``load_config`` result or the plain dict a checkpoint stores) as
    ``ExperimentConfig`` objects, each field checked by its schema's ``__post_init__``."""
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.merge(OmegaConf.structured(ExperimentConfig), cfg)
    try:
        return OmegaConf.to_object(node)
    except (ConfigKeyError, ConfigAttributeError, ValidationError) as err:
        raise _explain(err, OmegaConf.structured(ExperimentConfig)) from None


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML text (what is saved with every run and checkpoint)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts/lists/scalars (safe to store in a checkpoint)."""
    return OmegaConf.to_container(cfg, resolve=True)


def _non_default(node: DictConfig, registry: Any, skip: tuple[str, ...] = ("name",)) -> str:
    """``" (key=value, ...)"`` for the keys of a compressor/budget node that differ from its
    registered schema's defaults ("" when none do)."""
    defaults = registry.config({"name": node.name})
    changed = [f"{key}={node[key]}" for key in node if key not in skip and node[key] != defaults.get(key)]
    return f" ({', '.join(changed)})" if changed else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def config_summary(cfg: DictConfig, out_dir: str | Path, job: str) -> list[str]:
    """A few lines naming what a run is: conf, env, policy, tokens, the ``job``'s own settings
    ("train" or "eval") and ``out_dir``, the folder it writes, where the full YAML is (``CONFIG_FILE``)."""
    from gridslab.compress import COMPRESSORS
    from gridslab.policy.budget import BUDGETS

    env, policy, compressor = cfg.env, cfg.policy, cfg.compressor
    vision = (
        f"vision {policy.vision.backbone}{' ' + policy.vision.path if policy.vision.path else ''} ({policy.vision.image_size} px)"
    )
    if policy.lm.backbone != "none":
        backbone = f"lm {policy.lm.backbone}{' ' + policy.lm.path if policy.lm.path else ''} ({policy.lm.finetune})"
    else:
        backbone = f"backbone {policy.backbone.depth} x {policy.backbone.dim}"
    k = " (all patches)" if compressor.name == "identity" else f" K={compressor.k}"
    lines = [
        f"config   {cfg.experiment}",
        f"env      {env.name}: {', '.join(env.cameras)} at {env.image_size} px, render {env.render_quality}",
        f"policy   {vision}, {backbone}, head {policy.head.name}, chunk {policy.chunk}",
        f"tokens   compressor {compressor.name}{k}{_non_default(compressor, COMPRESSORS, ('name', 'k'))}, "
        f"budget {cfg.budget.name}{_non_default(cfg.budget, BUDGETS)}",
    ]
    if job == "train":
        trainer = cfg.trainer
        online = f", online eval every {cfg.eval.every_n_epochs} epochs" if cfg.eval.every_n_epochs > 0 else ""
        lines.append(
            f"train    {_count(trainer.max_epochs, 'epoch')}, batch {cfg.data.batch_size}, lr {cfg.optim.lr:g}, "
            f"{trainer.accelerator} x {trainer.devices}, {trainer.precision}{online}"
        )
    else:
        conditions = ", ".join(["clean", *(spec.strip() for spec in str(cfg.eval.ood).split(",") if spec.strip())])
        lines.append(
            f"eval     {_count(cfg.eval.episodes, 'episode')} per condition ({conditions}; severity {cfg.eval.severity:g}), "
            f"{_count(cfg.eval.workers, 'worker') if cfg.eval.workers else 'one worker per CPU core'}"
        )
    return [*lines, f"output   {out_dir} (full config: {Path(out_dir) / CONFIG_FILE})"]


def print_config(cfg: DictConfig, out_dir: str | Path, job: str = "train") -> None:
    """Print ``config_summary`` (a few lines, to stdout) for a ``job`` writing to ``out_dir``."""
    print("\n".join(config_summary(cfg, out_dir, job)))
