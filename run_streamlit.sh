#!/usr/bin/env bash
# Pensieve: the set-up of run_app.sh without the model, then the Streamlit UI alone (it talks to a server
# started elsewhere: PENSIEVE_SERVER_URL, or PENSIEVE_HOST/PENSIEVE_PORT in .env).
# Usage: ./run_streamlit.sh [pensieve ui options, e.g. --port 8502 --server-url http://127.0.0.1:8000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# First Python >= 3.10 that actually runs (a pyenv shim can exist without its version).
. scripts/find_python.sh
find_python

"$PYTHON" scripts/bootstrap.py --no-model
exec .venv/bin/python -m pensieve ui "$@"
