"""Constants shared by the UI suite's fixtures and tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from support.models import REPO_ROOT

CLOUD_KEY = "sk-ui-test-cloud-key-7781"
CLOUD_MODEL = "fake/big-model"
APP_PATH = REPO_ROOT / "src" / "pensieve" / "ui" / "app.py"
OUTPUT_DIR = REPO_ROOT / "test-output" / "ui"
# AppTest waits this long for a page run: the pages call a real server, on a machine that may be busy.
APP_TIMEOUT = 90.0


def point_ui_at(server_url: str, env_file: Path, monkeypatch: pytest.MonkeyPatch, env_lines: str = "") -> None:
    """Make the UI run in this process (AppTest) talk to `server_url`, reading only `env_lines` as its .env:
    the developer's own PENSIEVE_* variables and .env are kept out."""
    for key in [key for key in os.environ if key.startswith("PENSIEVE_")]:
        monkeypatch.delenv(key)
    env_file.write_text(env_lines, encoding="utf-8")
    monkeypatch.setenv("PENSIEVE_ENV_FILE", str(env_file))
    monkeypatch.setenv("PENSIEVE_SERVER_URL", server_url)


def run_app() -> AppTest:
    """The UI run once by Streamlit's AppTest, with short local answers (so chat tests stay quick)."""
    app = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT)
    app.session_state["chat_max_tokens"] = 24
    return app.run()


def page_texts(app: AppTest) -> str:
    """Every markdown, caption, info, success, error and warning text of the page, joined."""
    parts = [element.value for kind in ("markdown", "caption", "info", "success", "error", "warning")
             for element in app.get(kind)]  # fmt: skip
    return "\n".join(str(part) for part in parts)
