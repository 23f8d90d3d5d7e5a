"""Each page of the UI, run by Streamlit's AppTest in this process, against a real running server.

The app is the real entry point (`src/pensieve/ui/app.py`) with its navigation; AppTest switches
pages the way the sidebar does. The chat and Files pages are in test_sessions_files_pages.py.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest
from ui_support import APP_PATH, APP_TIMEOUT, CLOUD_KEY, page_texts, run_app

from support.server import ServerHandle

pytestmark = pytest.mark.integration


def test_models_page_shows_the_models_and_loads_and_unloads(ui_environment: ServerHandle) -> None:
    app = run_app().switch_page("views/models.py").run()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Installed"] == "1" and metrics["Unusable files"] == "1", metrics
    details = page_texts(app)
    assert "**253.1 MB**" in details and "**Q4_K_M**" in details and "**gemma3**" in details, details
    assert "not-gguf.gguf" in str(app.dataframe[0].value), "the unusable file is listed with its reason"

    app.button(key=f"unload_{ui_environment.model_id}").click().run()
    assert not app.exception
    assert any(metric.label == "Loaded" and metric.value == "0" for metric in app.metric)
    app.button(key=f"load_{ui_environment.model_id}").click().run()
    assert not app.exception
    assert any(metric.label == "Loaded" and metric.value == "1" for metric in app.metric)

    verify = next(button for button in app.button if button.label == "Verify default model")
    verify.click().run()
    assert not app.exception
    assert "The default model is ready" in page_texts(app)


def test_models_page_shows_a_crashed_worker_plainly_and_load_restarts_it(ui_environment: ServerHandle) -> None:
    """A worker killed by SIGILL (what a llama.cpp build this CPU cannot run does) is an error naming the signal,
    its cause and `pensieve doctor`; after Load starts a new worker, the crash stays as a warning."""
    model_id, base_url = ui_environment.model_id, ui_environment.base_url
    [running] = httpx.get(f"{base_url}/api/ps", timeout=10).json()["models"]
    os.kill(running["pid"], signal.SIGILL)
    deadline = time.monotonic() + 10
    while not httpx.get(f"{base_url}/api/ps", timeout=10).json()["failures"] and time.monotonic() < deadline:
        time.sleep(0.1)

    app = run_app().switch_page("views/models.py").run()
    assert not app.exception
    errors = [str(error.value) for error in app.error]
    assert any(
        model_id in error and "killed by SIGILL (illegal instruction" in error and "pensieve doctor" in error
        for error in errors
    ), errors
    assert any(metric.label == "Loaded" and metric.value == "0" for metric in app.metric)

    app.button(key=f"load_{model_id}").click().run()
    assert not app.exception and not app.error, [error.value for error in app.error]
    assert any(metric.label == "Loaded" and metric.value == "1" for metric in app.metric)
    warnings = [str(warning.value) for warning in app.warning]
    assert any("a new worker has run it since" in warning and "SIGILL" in warning for warning in warnings), warnings


def test_settings_page_masks_keys_applies_live_and_saves(ui_environment: ServerHandle) -> None:
    app = run_app().switch_page("views/settings.py").run()
    assert not app.exception
    key_input = app.text_input(key="setting::PENSIEVE_CLOUD_API_KEY")
    assert key_input.value == "sk-…7781"
    assert CLOUD_KEY not in str(app), "the key is never shown in clear"

    app.number_input(key="setting::PENSIEVE_BURST_MAX_LOCAL_WAIT_MS").set_value(12345.0)
    next(button for button in app.button if button.label == "Apply to the running server").click().run()
    assert not app.exception
    assert "Applied 1 change" in page_texts(app)
    live = httpx.get(f"{ui_environment.base_url}/api/admin/settings", timeout=10).json()["settings"]
    assert live["PENSIEVE_BURST_MAX_LOCAL_WAIT_MS"] == 12345.0
    assert live["PENSIEVE_CLOUD_API_KEY"] == "sk-…7781", "sending the masked key back left the key unchanged"

    env_file = Path(httpx.get(f"{ui_environment.base_url}/api/admin/settings", timeout=10).json()["env_file"])
    assert not env_file.exists() or "12345" not in env_file.read_text(), "nothing is written before Save"
    app.button(key="settings_save").click().run()
    assert not app.exception
    assert "PENSIEVE_BURST_MAX_LOCAL_WAIT_MS=12345" in env_file.read_text()


def test_monitoring_page_counts_requests_and_draws_charts(ui_environment: ServerHandle) -> None:
    httpx.post(
        f"{ui_environment.base_url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
        timeout=60,
    ).raise_for_status()
    app = run_app().switch_page("views/monitoring.py").run()
    assert not app.exception
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Server v0.1.0"] == "Ready" and metrics["Queue depth"] == "0", metrics
    texts = page_texts(app)
    assert "answered locally" in texts and "Recent decisions" in texts, texts
    assert len(app.get("arrow_vega_lite_chart")) + len(app.get("vega_lite_chart")) >= 3, "charts, not just numbers"
    assert len(app.dataframe) == 1 and len(app.dataframe[0].value) >= 1, "the recent decisions table has rows"


PAGES = ["views/chat.py", "views/files.py", "views/models.py", "views/settings.py", "views/monitoring.py"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_so_when_the_server_is_down(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "ui.env").write_text("", encoding="utf-8")
    monkeypatch.setenv("PENSIEVE_ENV_FILE", str(tmp_path / "ui.env"))
    monkeypatch.setenv("PENSIEVE_SERVER_URL", f"http://127.0.0.1:{port}")
    app = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT).run()
    app.switch_page(page).run()
    assert not app.exception
    assert any("Cannot reach the Pensieve server" in error.value for error in app.error), page_texts(app)
    assert "Server offline" in page_texts(app)
