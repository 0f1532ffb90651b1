"""Gymnasium environments for gridslab; importable without torch.

``envs.make("robosuite/Lift", image_size=84)``; ``envs.register(name, factory)`` adds
your own wrapper; ``envs.names()`` lists what is registered.
"""

import warnings

from envs.errors import EnvUserError
from envs.libero_env import register_all as _register_libero
from envs.libero_experts import register_all as _register_libero_experts
from envs.registry import make, names, register
from envs.robosuite_env import register_all as _register_robosuite
from envs.tabletop import register_all as _register_tabletop

# ``python -m envs.libero_env`` / ``-m envs.tabletop`` run modules this package already
# imported (to register their envs); their CLIs keep no state, so runpy's warning is noise.
warnings.filterwarnings("ignore", message=r"'envs\.(libero_env|tabletop)' found in sys.modules", category=RuntimeWarning)

_register_robosuite()
_register_tabletop()
_register_libero()
_register_libero_experts()

__all__ = ["EnvUserError", "make", "names", "register"]
