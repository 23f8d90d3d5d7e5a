"""Admin API on a live server: settings view and live changes, `.env` saving, process figures, load/unload/install."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.checks import ADMIN_HEADERS
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

SECRET = "sk-admin-test-secret-0042"


@pytest.fixture(scope="module")
def admin_server(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """A server of its own: these tests change its settings."""
    env = {
        "PENSIEVE_CLOUD_BASE_URL": "http://127.0.0.1:9/v1",
        "PENSIEVE_CLOUD_MODEL": "m",
        "PENSIEVE_CLOUD_API_KEY": SECRET,
    }
    with server_factory("admin", env) as handle:
        yield handle


@pytest.fixture
def api(admin_server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=admin_server.base_url, timeout=60, headers=ADMIN_HEADERS) as client:
        yield client


def test_settings_view_masks_the_cloud_key(api: httpx.Client) -> None:
    response = api.get("/api/admin/settings")
    assert response.status_code == 200
    view = response.json()
    assert SECRET not in response.text
    assert view["settings"]["PENSIEVE_CLOUD_API_KEY"] == "sk-…0042"
    assert view["settings"]["PENSIEVE_PRIVACY_MODE"] == "block"
    assert "PENSIEVE_BURST_COMPLEXITY_THRESHOLD" in view["groups"]["Burst"]


def test_live_change_applies_to_routing_and_bad_values_are_refused(api: httpx.Client) -> None:
    question = {"messages": [{"role": "user", "content": "Say hi."}]}

    def complexity_vote() -> str:
        explained = api.post("/api/route/explain", json=question).json()
        return str(next(c["vote"] for c in explained["criteria"] if c["criterion"] == "complexity"))

    assert complexity_vote() == "abstain"
    changed = api.patch("/api/admin/settings", json={"PENSIEVE_BURST_COMPLEXITY_THRESHOLD": 0.0})
    assert changed.status_code == 200
    assert changed.json()["settings"]["PENSIEVE_BURST_COMPLEXITY_THRESHOLD"] == 0.0
    assert complexity_vote() == "cloud"
    api.patch("/api/admin/settings", json={"PENSIEVE_BURST_COMPLEXITY_THRESHOLD": 0.6})

    refused = api.patch("/api/admin/settings", json={"PENSIEVE_PRIVACY_MODE": "sometimes"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_setting" and "PENSIEVE_PRIVACY_MODE" in error["message"]
    # The masked key sent back unchanged keeps the real one.
    same = api.patch("/api/admin/settings", json={"PENSIEVE_CLOUD_API_KEY": "sk-…0042"})
    assert same.status_code == 200 and same.json()["settings"]["PENSIEVE_CLOUD_API_KEY"] == "sk-…0042"


def test_save_writes_the_running_values_to_env(api: httpx.Client, admin_server: ServerHandle) -> None:
    api.patch("/api/admin/settings", json={"PENSIEVE_BUDGET_DAILY_USD": 2.5})
    saved = api.post("/api/admin/settings/save")
    assert saved.status_code == 200
    text = Path(saved.json()["saved"]).read_text(encoding="utf-8")
    assert "PENSIEVE_BUDGET_DAILY_USD=2.5" in text
    # This server got its cloud key from its environment: it stays there, never copied into .env (#14).
    assert SECRET not in text
    typed = "sk-typed-into-the-ui-0099"
    assert api.patch("/api/admin/settings", json={"PENSIEVE_CLOUD_API_KEY": typed}).status_code == 200
    text = Path(api.post("/api/admin/settings/save").json()["saved"]).read_text(encoding="utf-8")
    assert f"PENSIEVE_CLOUD_API_KEY={typed}" in text  # a key set through the API is the user's to keep
    assert api.patch("/api/admin/settings", json={"PENSIEVE_CLOUD_API_KEY": SECRET}).status_code == 200


def test_system_figures(api: httpx.Client, admin_server: ServerHandle) -> None:
    data = api.get("/api/system").json()
    assert data["rss_bytes"] > 100_000_000  # the model is mapped in
    assert data["uptime_seconds"] > 0
    assert data["loaded_models"] == [admin_server.model_id]


def test_unload_then_load(api: httpx.Client, admin_server: ServerHandle) -> None:
    assert api.post(f"/api/models/{admin_server.model_id}/unload").json()["unloaded"] is True
    assert api.get("/api/system").json()["loaded_models"] == []
    assert api.post(f"/api/models/{admin_server.model_id}/unload").json()["unloaded"] is False
    loaded = api.post(f"/api/models/{admin_server.model_id}/load")
    assert loaded.status_code == 200 and loaded.json()["loaded"] is True
    assert api.post("/api/models/nope/load").status_code == 404
    broken = api.post("/api/models/truncated/load")
    assert broken.status_code == 500 and broken.json()["error"]["code"] == "model_load_failed"


def test_install_default_streams_progress(api: httpx.Client) -> None:
    events = []
    with api.stream("POST", "/api/models/install-default") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    assert final["status"] == "installed" and final["path"].endswith(".gguf")
