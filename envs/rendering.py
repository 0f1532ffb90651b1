"""Pick a headless OpenGL backend for MuJoCo before robosuite/mujoco are imported.

MuJoCo reads ``MUJOCO_GL`` once, at import. Unless the user set it, we probe
``egl`` then ``osmesa`` in a short subprocess (creating a 16x16 GL context) and keep
the first that works; the choice is exported so vector-env workers inherit it, and so is
``GL_CHECKED_VAR`` (the backend already probed): child processes do not probe it again (a
probe is a Python subprocess, about 1 s). When neither works, the error names the system
libraries to install.

``close_at_exit`` closes the envs still open when the interpreter exits, before robosuite's own
exit hook terminates the EGL display: a renderer freed after that prints an EGL traceback.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import weakref
from typing import Any

from envs.errors import EnvUserError

BACKENDS = ("egl", "osmesa")
SYSTEM_PACKAGES = {
    "egl": "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri (Debian/Ubuntu)",
    "osmesa": "libosmesa6 (Debian/Ubuntu)",
}
USER_BACKENDS = ("egl", "osmesa", "glfw")  # the values MuJoCo's Python bindings accept
GL_CHECKED_VAR = "GRIDSLAB_GL_CHECKED"  # the backend a parent process already probed
_checked: set[str] = set()  # user-set backends already probed in this process
_PROBE = "import mujoco; ctx = mujoco.GLContext(16, 16); ctx.make_current(); ctx.free()"
_open_envs: weakref.WeakSet = weakref.WeakSet()  # envs ``close_at_exit`` closes at interpreter exit


def _backend_works(backend: str) -> bool:
    """True if a MuJoCo GL context can be created with ``MUJOCO_GL=backend``."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def ensure_gl_backend() -> str:
    """Set ``MUJOCO_GL``/``PYOPENGL_PLATFORM`` to a working headless backend and return it.

    A user-set ``MUJOCO_GL`` is kept when it names a MuJoCo backend that works here; an
    unknown or broken one, or no working backend at all, raises ``EnvUserError``.
    """
    chosen = os.environ.get("MUJOCO_GL")
    if chosen and chosen not in USER_BACKENDS:
        raise EnvUserError(
            f"MUJOCO_GL={chosen!r} is not a MuJoCo rendering backend; valid: {', '.join(USER_BACKENDS)} "
            f"(or unset it and gridslab probes {', '.join(BACKENDS)})"
        )
    if chosen and chosen == os.environ.get(GL_CHECKED_VAR):
        _checked.add(chosen)
    if chosen and chosen not in _checked and not _backend_works(chosen):
        hint = f"apt-get install {SYSTEM_PACKAGES[chosen]}" if chosen in SYSTEM_PACKAGES else "it needs a display"
        raise EnvUserError(
            f"MUJOCO_GL={chosen} cannot create an OpenGL context here ({hint}); "
            f"unset MUJOCO_GL and gridslab probes {', '.join(BACKENDS)}"
        )
    if chosen:
        _checked.add(chosen)
    if not chosen:
        chosen = next((b for b in BACKENDS if _backend_works(b)), None)
        if chosen is None:
            needs = "; ".join(f"{b}: apt-get install {pkgs}" for b, pkgs in SYSTEM_PACKAGES.items())
            raise EnvUserError(f"no headless MuJoCo rendering backend works (tried {', '.join(BACKENDS)}); install one: {needs}")
        os.environ["MUJOCO_GL"] = chosen
    os.environ[GL_CHECKED_VAR] = chosen
    if chosen in BACKENDS:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def close_at_exit(env: Any) -> None:
    """Close ``env`` (anything with ``close()``, held weakly) at interpreter exit if it is still alive.

    Call it once the env's renderer exists. robosuite registers ``eglTerminate`` with ``atexit``
    when it creates the first EGL context, and ``atexit`` runs hooks last-registered-first, so
    the hook is moved to the end of the list here, after any robosuite registered: the renderers
    are released while the EGL display still works, not by the garbage collector after it is gone.
    """
    _open_envs.add(env)
    atexit.unregister(_close_open_envs)
    atexit.register(_close_open_envs)


def _close_open_envs() -> None:
    for env in list(_open_envs):
        env.close()
