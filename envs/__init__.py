"""Gymnasium environments for gridslab; importable without torch.

``envs.make("robosuite/Lift", image_size=84)``; ``envs.register(name, factory)`` adds
your own wrapper; ``envs.names()`` lists what is registered.
"""

from envs.errors import EnvUserError
from envs.registry import make, names, register
from envs.robosuite_env import register_all as _register_robosuite
from envs.tabletop import register_all as _register_tabletop

_register_robosuite()
_register_tabletop()

__all__ = ["EnvUserError", "make", "names", "register"]
