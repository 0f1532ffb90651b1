#!/usr/bin/env bash
# The main job on the embedded default (robosuite Lift, GridS K=4), from a fresh machine:
# set up, collect demos if missing, train, then evaluate clean + lighting + distractors.
# Extra args go to train.py (e.g. trainer.max_epochs=5).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-python3}"
"$PY" train.py "$@"
"$PY" evaluate.py --ood lighting,distractors $(printf '%s\n' "$@" | grep -E '^(conf|output_dir)=' || true)
