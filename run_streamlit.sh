#!/usr/bin/env bash
# Pensieve: the set-up of run_app.sh without the model, then the Streamlit UI alone (it talks to a server
# started elsewhere: PENSIEVE_SERVER_URL, or PENSIEVE_HOST/PENSIEVE_PORT in .env).
# Usage: ./run_streamlit.sh [pensieve ui options, e.g. --port 8502 --server-url http://127.0.0.1:8000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# First Python >= 3.10 that actually runs; the same finder as in run_app.sh (keep them in step).
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

"$PYTHON" scripts/bootstrap.py --no-model
exec .venv/bin/python -m pensieve ui "$@"
