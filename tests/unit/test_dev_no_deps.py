"""The set-up's `--no-deps` dev libraries (`[tool.pensieve] dev-no-deps`): read right, and installed.

instructor's declared pins conflict with Pensieve's although it runs on them, so scripts/bootstrap.py
installs it with `pip install --no-deps` next to the dev extra; its live test would otherwise be skipped
without anyone noticing.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import bootstrap  # noqa: E402


def test_the_pins_are_read_from_pyproject() -> None:
    pins = bootstrap.no_deps_pins()
    assert "instructor==1.17.0" in pins
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9.]*", pin) for pin in pins), pins


def test_the_set_up_installed_them() -> None:
    for pin in bootstrap.no_deps_pins():
        name, version = pin.split("==")
        assert importlib.metadata.version(name) == version, f"{pin} is not installed: run the set-up again"
