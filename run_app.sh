#!/usr/bin/env bash
# Pensieve: set everything up (first run: a few minutes; afterwards: seconds) and start the app.
# Usage: ./run_app.sh [pensieve up options: the serve options, e.g. --port 8080, and --ui-port 8501]
# The set-up itself lives in scripts/bootstrap.py; this file only finds a Python to run it with.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# First Python >= 3.10 that actually runs (a pyenv shim can exist without its version).
# The same finder is in run_local_api.sh and run_tests.sh: keep them in step.
find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3.10 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1; then
            PYTHON=$candidate
            return 0
        fi
    done
    echo "error: Pensieve needs Python 3.10 or newer, and none was found on PATH." >&2
    if command -v python3 >/dev/null 2>&1; then
        echo "       python3 is $(python3 --version 2>&1 || true) ($(command -v python3))." >&2
    fi
    echo "       Install one (macOS: brew install python@3.12; Debian/Ubuntu: sudo apt-get install python3 python3-venv;" >&2
    echo "       or https://www.python.org/downloads/), then run this again." >&2
    exit 1
}
find_python

"$PYTHON" scripts/bootstrap.py

# Server and Streamlit UI together: `pensieve up` starts the UI as a child process (its output goes to
# logs/ui.log), prints both URLs, then runs the server here; when the server stops (Ctrl+C, SIGTERM)
# it stops the UI. UI alone: ./run_streamlit.sh; server alone: ./run_local_api.sh.
exec .venv/bin/python -m pensieve up "$@"
