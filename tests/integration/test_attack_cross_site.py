"""A web page attacking the loopback server: DNS rebinding (a forged Host) and cross-site simple requests.

Before the guard, with the default set-up (loopback, no key) a rebinding page could PATCH the settings to
send every prompt and the stored cloud key to itself, and a bodiless cross-site POST could unload models
or save `.env`. Each attack below must get 403 and change nothing; the SDK (no Origin) is unaffected.
"""

from __future__ import annotations

import httpx
import pytest

from support.checks import assert_openai_error
from support.server import ServerFactory

pytestmark = pytest.mark.integration

EVIL = "http://attacker.example"


def test_a_rebinding_page_gets_403_everywhere(http: httpx.Client, model_id: str) -> None:
    forged = {"host": "attacker.example:8000"}
    assert_openai_error(http.get("/v1/models", headers=forged), 403, code="host_not_allowed")
    attack = {"PENSIEVE_CLOUD_BASE_URL": f"{EVIL}/v1", "PENSIEVE_PRIVACY_MODE": "off"}
    assert_openai_error(http.patch("/api/admin/settings", json=attack, headers=forged), 403, code="host_not_allowed")
    body = {"model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert_openai_error(http.post("/v1/chat/completions", json=body, headers=forged), 403, code="host_not_allowed")
    settings = http.get("/api/admin/settings").json()["settings"]
    assert settings["PENSIEVE_CLOUD_BASE_URL"] is None and settings["PENSIEVE_PRIVACY_MODE"] == "block"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_names_are_answered(http: httpx.Client, host: str) -> None:
    assert http.get("/health", headers={"host": f"{host}:8000"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": EVIL},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"origin": EVIL, "sec-fetch-site": "cross-site"},
    ],
)
def test_cross_site_simple_requests_change_nothing(http: httpx.Client, model_id: str, headers: dict[str, str]) -> None:
    # What a page can send without a preflight: bodiless or text/plain POSTs.
    unload = http.post(f"/api/models/{model_id}/unload", headers=headers)
    assert_openai_error(unload, 403, code="cross_site_request")
    saved = http.post("/api/admin/settings/save", headers=headers)
    assert_openai_error(saved, 403, code="cross_site_request")
    reset = http.post("/api/burst/circuits/reset", headers=headers)
    assert_openai_error(reset, 403, code="cross_site_request")
    assert model_id in http.get("/api/system").json()["loaded_models"]


def test_same_origin_and_non_browser_clients_still_work(http: httpx.Client, model_id: str) -> None:
    own = str(http.base_url).rstrip("/")
    body = {"model": model_id, "prompt": "Hello", "max_tokens": 2}
    assert (
        http.post("/v1/completions", json=body, headers={"origin": own, "sec-fetch-site": "same-origin"}).status_code
        == 200
    )
    assert http.post("/v1/completions", json=body).status_code == 200  # the SDKs send no Origin


def test_allowed_hosts_and_cors_origins_open_what_they_name(server_factory: ServerFactory, model_id: str) -> None:
    env = {"PENSIEVE_ALLOWED_HOSTS": "pensieve.lan", "PENSIEVE_CORS_ORIGINS": "http://dashboard.lan:3000"}
    with server_factory("guard", env) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert client.get("/health", headers={"host": "pensieve.lan:8000"}).status_code == 200
        assert_openai_error(client.get("/health", headers={"host": "other.lan"}), 403, code="host_not_allowed")
        body = {"model": model_id, "prompt": "Hello", "max_tokens": 2}
        allowed = client.post("/v1/completions", json=body, headers={"origin": "http://dashboard.lan:3000"})
        assert allowed.status_code == 200
        refused = client.post("/v1/completions", json=body, headers={"origin": "http://dashboard.lan:3001"})
        assert_openai_error(refused, 403, code="cross_site_request")
