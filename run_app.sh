#!/usr/bin/env bash
# Pensieve: set everything up (first run: a few minutes; afterwards: seconds) and start the app.
# Usage: ./run_app.sh [pensieve up options: the serve options, e.g. --port 8080, and --ui-port 8501]
# The set-up itself lives in scripts/bootstrap.py; this file only finds a Python to run it with.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# First Python >= 3.10 that actually runs (a pyenv shim can exist without its version).
. scripts/find_python.sh
find_python

"$PYTHON" scripts/bootstrap.py

# Server and Streamlit UI together: `pensieve up` starts the UI as a child process (its output goes to
# logs/ui.log), prints both URLs, then runs the server here; when the server stops (Ctrl+C, SIGTERM)
# it stops the UI. UI alone: ./run_streamlit.sh; server alone: ./run_local_api.sh.
exec .venv/bin/python -m pensieve up "$@"
