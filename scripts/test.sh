#!/usr/bin/env bash
# Set up, then run the test suite on the real simulator (CPU, headless). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m pytest -m "not long" -q -rs --durations=15 "$@"
