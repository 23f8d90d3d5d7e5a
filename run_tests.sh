#!/usr/bin/env bash
# Pensieve: the set-up with the dev extra, then ruff check, ruff format --check, mypy and pytest.
# Every step runs; the exit status is non-zero if any failed. Arguments go to pytest: ./run_tests.sh -x -q
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# First Python >= 3.10 that actually runs (a pyenv shim can exist without its version).
. scripts/find_python.sh
find_python

exec "$PYTHON" scripts/bootstrap.py --extras dev --test -- "$@"
