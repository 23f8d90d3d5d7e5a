# Sourced by the run_*.sh scripts (the .bat twins have their own finder): sets PYTHON to the first
# Python >= 3.10 on PATH that actually runs, newest first, or explains how to install one and exits.
# shellcheck shell=bash
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
