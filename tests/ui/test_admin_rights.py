"""The UI and a server with an admin key: without the key the Settings page says plainly that it needs admin
rights (and how to get them); with it, the page works. Streamlit's AppTest runs the real page against a
real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_support import APP_PATH, point_ui_at

from support.models import ModelsFolder
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration

API_KEY = "ui-inference-key"
ADMIN_KEY = "ui-admin-key-0123456789"


@pytest.fixture(scope="module")
def guarded_server(ui_models: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server with separate inference and admin keys."""
    env = {"PENSIEVE_API_KEY": API_KEY, "PENSIEVE_ADMIN_KEY": ADMIN_KEY}
    with running_server("ui-guarded", ui_models, tmp_path_factory.mktemp("guarded"), env) as handle:
        yield handle


def _settings_page(server: ServerHandle, env_lines: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    point_ui_at(server.base_url, tmp_path / "ui.env", monkeypatch, env_lines)
    app = AppTest.from_file(str(APP_PATH), default_timeout=90.0).run()
    return app.switch_page("views/settings.py").run()


def test_without_the_admin_key_the_settings_page_says_it_needs_admin_rights(
    guarded_server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _settings_page(guarded_server, f"PENSIEVE_API_KEY={API_KEY}\n", tmp_path, monkeypatch)
    assert not app.exception
    errors = [str(element.value) for element in app.error]
    assert any("needs admin rights" in text and "PENSIEVE_ADMIN_KEY" in text for text in errors), errors


def test_with_the_admin_key_the_settings_page_works(
    guarded_server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _settings_page(guarded_server, f"PENSIEVE_ADMIN_KEY={ADMIN_KEY}\n", tmp_path, monkeypatch)
    assert not app.exception
    assert not [str(element.value) for element in app.error]
    keys = {str(widget.key) for widget in [*app.number_input, *app.toggle, *app.text_input]}
    assert any(key.endswith("PENSIEVE_BURST_COMPLEXITY_THRESHOLD") for key in keys), sorted(keys)[:10]
