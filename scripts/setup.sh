#!/usr/bin/env bash
# Install everything gridslab needs into the active Python, idempotently:
#   * as root: Debian/Ubuntu packages for headless MuJoCo rendering (EGL + OSMesa)
#   * torch first (the CPU build when none is installed: GPU users install their CUDA
#     build beforehand and it is kept), then gridslab with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

GL_PACKAGES="libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libglfw3"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in $GL_PACKAGES; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "[setup] apt-get install$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
elif ! ldconfig -p 2>/dev/null | grep -qE "libEGL.so|libOSMesa.so"; then
    echo "[setup] warning: no EGL/OSMesa library found; install: $GL_PACKAGES" >&2
fi

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "[setup] pip install torch==2.13.0 (CPU build)"
    "$PYTHON" -m pip install -q "torch==2.13.0"
fi
if ! "$PYTHON" -c "import gridslab, envs, pytest" 2>/dev/null || [ pyproject.toml -nt .setup-stamp ]; then
    echo "[setup] pip install -e '.[dev]'"
    "$PYTHON" -m pip install -q -e ".[dev]"
    touch .setup-stamp
fi
# LIBERO (envs/libero_env.py): libero and bddl without their declared dependencies, which the
# envs never import (robomimic with torchvision and egl_probe built from source, wandb, hydra,
# jupytext...); then what their imports do need. LIBERO's 3D assets are not installed.
if ! "$PYTHON" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('libero', 'bddl', 'easydict', 'future', 'matplotlib'))))"; then
    echo "[setup] pip install --no-deps libero==0.1.1 bddl==1.0.1; pip install easydict future matplotlib"
    "$PYTHON" -m pip install -q --no-deps "libero==0.1.1" "bddl==1.0.1"
    "$PYTHON" -m pip install -q easydict future matplotlib
fi
