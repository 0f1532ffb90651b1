#!/usr/bin/env bash
# Set up, lint, then run the test suite on the real simulator (CPU, headless). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-python3}"
echo "[test] ruff check && ruff format --check"
"$PY" -m ruff check --quiet .
"$PY" -m ruff format --check --quiet .
exec "$PY" -m pytest -m "not long" -q -rs --durations=15 "$@"
