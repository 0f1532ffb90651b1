"""Imported once by the forkserver that env workers fork from (``workers.EnvPool``).

What every worker would otherwise pay on its own before building its env is paid here once,
while the main process loads the policy: the GL backend probe (a subprocess), the env
modules and robosuite, and numba's compiled robosuite transforms (loading numba and its
cached machine code: about 2.5 s per process). Nothing here opens a GL context or builds an
env (a forked GL context hangs). A failure is left for the worker to report when it builds
its env, with the usual one-line error.
"""

from __future__ import annotations

import numpy as np


def warm_up() -> None:
    from envs.sim_base import import_robosuite

    import_robosuite()
    from robosuite.utils import control_utils, transform_utils

    import envs  # noqa: F401 - registers every env
    import envs.ood  # noqa: F401

    eye3, eye7, zeros7 = np.eye(3), np.eye(7), np.zeros(7)
    transform_utils.mat2quat(eye3)
    transform_utils.quat2mat(np.array([0.0, 0.0, 0.0, 1.0]))
    transform_utils.matrix_inverse(eye7)
    control_utils.orientation_error(eye3, eye3)
    control_utils.opspace_matrices(eye7, np.zeros((6, 7)), np.zeros((3, 7)), np.zeros((3, 7)))
    control_utils.nullspace_torques(eye7, eye7, zeros7, zeros7, zeros7)


try:
    warm_up()
except Exception:  # noqa: BLE001, S110 - the worker reports it when it builds its env (see the docstring)
    pass
