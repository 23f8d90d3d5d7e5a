"""Constants shared by the UI suite's fixtures and tests."""

from __future__ import annotations

from support.models import REPO_ROOT

CLOUD_KEY = "sk-ui-test-cloud-key-7781"
CLOUD_MODEL = "fake/big-model"
APP_PATH = REPO_ROOT / "src" / "pensieve" / "ui" / "app.py"
OUTPUT_DIR = REPO_ROOT / "test-output" / "ui"
