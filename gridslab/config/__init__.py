"""Experiment configuration: ``schema`` (the typed dataclasses, light) and ``load``
(compose ``conf/`` files, apply CLI overrides, validate once)."""

from gridslab.config.load import CONF_DIR, GROUPS, load_config, print_config, split_overrides, to_plain, to_yaml, typed
from gridslab.config.schema import DataConfig, EnvConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainerConfig, env_kwargs

__all__ = [
    "CONF_DIR",
    "GROUPS",
    "DataConfig",
    "EnvConfig",
    "EvalConfig",
    "ExperimentConfig",
    "OptimConfig",
    "TrainerConfig",
    "env_kwargs",
    "load_config",
    "print_config",
    "split_overrides",
    "to_plain",
    "to_yaml",
    "typed",
]
