"""A script that makes an env and exits without ``close()`` prints nothing at exit.

robosuite terminates the EGL display in an ``atexit`` hook; a renderer freed after that (by the
garbage collector at shutdown) raised an ``EGLError`` traceback. Each script below leaves one env
open at exit (the user's case) and drops another only after robosuite's hook has run (an ``atexit``
hook registered before the env, so it runs after robosuite's, then a collection): without
``envs.rendering.close_at_exit`` the second printed two EGL tracebacks on this machine.
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import run_python

SCRIPT = """
import atexit, gc, sys
import envs
late = {}
atexit.register(lambda: (late.clear(), gc.collect()))  # runs after robosuite's EGL teardown
late["env"] = envs.make(sys.argv[1], image_size=32)
late["env"].reset(seed=0)
env = envs.make(sys.argv[1], image_size=32)
env.reset(seed=0)
env.step(env.action_space.sample())
print("made")
"""

ENVS = [
    "robosuite/Lift",
    "tabletop_spatial/0",
    pytest.param(
        "libero/libero_spatial/0",
        marks=pytest.mark.skipif(importlib.util.find_spec("libero") is None, reason="the libero package is not installed"),
    ),
]


@pytest.mark.parametrize("name", ENVS)
def test_unclosed_envs_exit_without_a_traceback(name, tmp_path):
    result = run_python(["-c", SCRIPT, name], cwd=tmp_path, timeout=300, env={"LIBERO_CONFIG_PATH": str(tmp_path / "libero")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "made\n"  # robosuite's import notices (the missing-gym line) are silenced too
    alarming = [line for line in result.stderr.splitlines() if "Traceback" in line or "EGL" in line or "Exception" in line]
    assert alarming == [], result.stderr[-2000:]
