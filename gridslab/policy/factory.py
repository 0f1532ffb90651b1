"""Build the policy an experiment config describes (the one place that maps config -> VLA)."""

from __future__ import annotations

from typing import Any

from gridslab.policy.config import as_policy_config
from gridslab.policy.vla import VLA


def build_policy(config: dict[str, Any], proprio_dim: int, action_dim: int) -> VLA:
    """The VLA described by a resolved experiment config (plain dict)."""
    return VLA(
        as_policy_config(config["policy"]),
        config["compressor"],
        list(config["env"]["cameras"]),
        proprio_dim,
        action_dim,
        config["budget"],
    )
