"""Constants shared by the UI suite's fixtures and tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.models import REPO_ROOT

CLOUD_KEY = "sk-ui-test-cloud-key-7781"
CLOUD_MODEL = "fake/big-model"
APP_PATH = REPO_ROOT / "src" / "pensieve" / "ui" / "app.py"
OUTPUT_DIR = REPO_ROOT / "test-output" / "ui"


def point_ui_at(server_url: str, env_file: Path, monkeypatch: pytest.MonkeyPatch, env_lines: str = "") -> None:
    """Make the UI run in this process (AppTest) talk to `server_url`, reading only `env_lines` as its .env:
    the developer's own PENSIEVE_* variables and .env are kept out."""
    for key in [key for key in os.environ if key.startswith("PENSIEVE_")]:
        monkeypatch.delenv(key)
    env_file.write_text(env_lines, encoding="utf-8")
    monkeypatch.setenv("PENSIEVE_ENV_FILE", str(env_file))
    monkeypatch.setenv("PENSIEVE_SERVER_URL", server_url)
