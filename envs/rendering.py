"""Pick a headless OpenGL backend for MuJoCo before robosuite/mujoco are imported.

MuJoCo reads ``MUJOCO_GL`` once, at import. Unless the user set it, we probe
``egl`` then ``osmesa`` in a short subprocess (creating a 16x16 GL context) and keep
the first that works; the choice is exported so vector-env workers inherit it. When
neither works, the error names the system libraries to install.
"""

from __future__ import annotations

import os
import subprocess
import sys

from envs.errors import EnvUserError

BACKENDS = ("egl", "osmesa")
SYSTEM_PACKAGES = {
    "egl": "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri (Debian/Ubuntu)",
    "osmesa": "libosmesa6 (Debian/Ubuntu)",
}
USER_BACKENDS = ("egl", "osmesa", "glfw")  # the values MuJoCo's Python bindings accept
_checked: set[str] = set()  # user-set backends already probed in this process
_PROBE = "import mujoco; ctx = mujoco.GLContext(16, 16); ctx.make_current(); ctx.free()"


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
    if chosen in BACKENDS:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen
