#!/usr/bin/env bash
# Pensieve: start an install that run_app.sh has already set up (no pip, no network).
# Usage: ./quick_start.sh [pensieve up options: the serve options, e.g. --port 8080, and --ui-port 8501]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -x .venv/bin/python ]; then
    echo "error: Pensieve is not set up yet: run ./run_app.sh first (it creates .venv and installs everything)." >&2
    exit 1
fi
# Checks the set-up finished, creates .env and the folders if missing, and the model (instant when present).
.venv/bin/python scripts/bootstrap.py --no-install

# Server and UI together, as in run_app.sh: stopping the server stops the UI.
exec .venv/bin/python -m pensieve up "$@"
