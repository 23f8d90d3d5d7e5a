"""Who may call what (api/access.py): keys, the loopback rule for admin calls, the simple-request rule.

The dependencies run in a small FastAPI app driven by Starlette's TestClient, whose `client=` sets the
peer address a real socket would give: that is how a request from another machine is made here.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from pensieve.api.access import AdminDep, CallerDep, exposure_problem, key_fingerprint
from pensieve.api.deps import get_settings
from pensieve.api.errors import install_error_handlers
from pensieve.config import Settings
from pensieve.settings_sections import ServerSettings

LOCAL = ("127.0.0.1", 50000)
REMOTE = ("192.0.2.7", 50000)


def _app(**server: Any) -> FastAPI:
    settings = Settings.from_values(**server)
    app = FastAPI()
    install_error_handlers(app)
    app.dependency_overrides[get_settings] = lambda: settings

    @app.get("/v1/who")
    def who(caller: CallerDep) -> dict[str, Any]:
        return {"id": caller.id, "admin": caller.admin}

    @app.get("/admin")
    def admin_view(caller: AdminDep) -> dict[str, Any]:
        return {"id": caller.id}

    @app.post("/admin")
    def admin_change(caller: AdminDep) -> dict[str, Any]:
        return {"id": caller.id}

    return app


def _call(app: FastAPI, method: str, path: str, *, peer: tuple[str, int] = LOCAL, **options: Any) -> Any:
    with TestClient(app, client=peer) as client:
        return client.request(method, path, **options)


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_without_keys_inference_is_open_and_each_address_is_its_own_caller() -> None:
    app = _app()
    assert _call(app, "GET", "/v1/who").json() == {"id": "ip:127.0.0.1", "admin": False}
    # An SDK always sends some key; without configured keys any key is fine.
    assert _call(app, "GET", "/v1/who", peer=REMOTE, headers=_bearer("sk-anything")).json()["id"] == "ip:192.0.2.7"


def test_inference_keys_from_api_key_and_api_keys() -> None:
    app = _app(api_key="alpha", api_keys="beta, gamma")
    for key in ("alpha", "beta", "gamma"):
        assert _call(app, "GET", "/v1/who", headers=_bearer(key)).json() == {"id": key_fingerprint(key), "admin": False}
    for headers in ({}, _bearer("delta"), {"authorization": "Basic alpha"}):
        response = _call(app, "GET", "/v1/who", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert "alpha" not in _call(app, "GET", "/v1/who").text


def test_the_admin_key_opens_everything_and_an_inference_key_no_admin_call() -> None:
    app = _app(api_key="alpha", admin_key="root-key")
    assert _call(app, "GET", "/v1/who", headers=_bearer("root-key")).json()["admin"] is True
    assert _call(app, "GET", "/admin", peer=REMOTE, headers=_bearer("root-key")).status_code == 200
    refused = _call(app, "GET", "/admin", headers=_bearer("alpha"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"
    missing = _call(app, "GET", "/admin")
    assert missing.status_code == 401
    assert _call(app, "GET", "/admin", headers=_bearer("wrong")).status_code == 401


def test_an_admin_key_with_open_inference_still_guards_admin() -> None:
    app = _app(admin_key="root-key")
    assert _call(app, "GET", "/v1/who", headers=_bearer("sk-dummy")).status_code == 200
    assert _call(app, "GET", "/admin", headers=_bearer("sk-dummy")).status_code == 401
    assert _call(app, "GET", "/admin", headers=_bearer("root-key")).status_code == 200


@pytest.mark.parametrize(
    ("peer", "headers"),
    [
        (REMOTE, {}),
        (LOCAL, {"x-forwarded-for": "203.0.113.9"}),  # a reverse proxy on this machine
        (LOCAL, {"forwarded": "for=203.0.113.9"}),
        (LOCAL, {"origin": "http://attacker.example"}),
        (LOCAL, {"sec-fetch-site": "cross-site"}),
    ],
)
def test_without_an_admin_key_admin_is_same_origin_loopback_only(
    peer: tuple[str, int], headers: dict[str, str]
) -> None:
    response = _call(_app(), "GET", "/admin", peer=peer, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_local_only"


def test_without_an_admin_key_local_same_origin_admin_works_with_the_inference_key_if_set() -> None:
    assert _call(_app(), "GET", "/admin", headers={"origin": "http://testserver"}).status_code == 200
    assert _call(_app(), "GET", "/admin", headers={"sec-fetch-site": "same-origin"}).status_code == 200
    keyed = _app(api_key="alpha")
    assert _call(keyed, "GET", "/admin").status_code == 401
    assert _call(keyed, "GET", "/admin", headers=_bearer("alpha")).status_code == 200


def test_a_state_changing_admin_call_cannot_be_a_simple_request() -> None:
    app = _app()
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        response = _call(app, "POST", "/admin", headers=headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "admin_header_required"
    for headers in (
        {"content-type": "application/json"},
        {"x-requested-with": "anything"},
        {"authorization": "Bearer sk-any"},
    ):
        assert _call(app, "POST", "/admin", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("values", "exposed"),
    [
        ({}, False),
        ({"host": "localhost"}, False),
        ({"host": "::1"}, False),
        ({"host": "0.0.0.0"}, True),
        ({"host": "192.0.2.2"}, True),
        ({"host": "::"}, True),
        ({"host": "0.0.0.0", "api_key": "alpha"}, False),
        ({"host": "0.0.0.0", "api_keys": "a,b"}, False),
        ({"host": "0.0.0.0", "admin_key": "root-key"}, True),  # /v1 would still be open to the network
        ({"host": "0.0.0.0", "insecure_no_auth": True}, False),
    ],
)
def test_exposure_problem(values: dict[str, Any], exposed: bool) -> None:
    problem = exposure_problem(ServerSettings(**values))
    assert (problem is not None) is exposed
    if problem:
        assert "PENSIEVE_API_KEY" in problem and "--insecure-no-auth" in problem
