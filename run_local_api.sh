#!/usr/bin/env bash
# Pensieve: the same fast set-up as run_app.sh, then the API server alone (no UI).
# Usage: ./run_local_api.sh [pensieve serve options, e.g. --port 8080 --host 0.0.0.0]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# First Python >= 3.10 that actually runs (a pyenv shim can exist without its version).
. scripts/find_python.sh
find_python

"$PYTHON" scripts/bootstrap.py
exec .venv/bin/python -m pensieve serve "$@"
