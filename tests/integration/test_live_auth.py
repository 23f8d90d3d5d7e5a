"""PENSIEVE_API_KEY: the /v1 and /api routes demand the key; the health probes do not."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from support.checks import assert_openai_error, make_client
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

KEY = "sekrit"


@pytest.fixture(scope="module")
def keyed_server(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """A server started with PENSIEVE_API_KEY=sekrit."""
    with server_factory("api-key", {"PENSIEVE_API_KEY": KEY}) as handle:
        yield handle


@pytest.fixture(scope="module")
def raw(keyed_server: ServerHandle) -> Iterator[httpx.Client]:
    """httpx on the keyed server, sending no key."""
    with httpx.Client(base_url=keyed_server.base_url, timeout=60) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/models"), ("GET", "/api/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions")],
)
def test_no_key_is_401(raw: httpx.Client, method: str, path: str) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "prompt": "Hi", "max_tokens": 2}
    response = raw.request(method, path, json=body if method == "POST" else None)
    error = assert_openai_error(response, 401, code="invalid_api_key")
    assert KEY not in error["message"]


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer sekrit2", "Basic sekrit", "sekrit", "Bearer"])
def test_wrong_key_is_401(raw: httpx.Client, header: str) -> None:
    response = raw.get("/v1/models", headers={"Authorization": header})
    assert_openai_error(response, 401, code="invalid_api_key")


def test_sdk_with_wrong_key_raises_authentication_error(keyed_server: ServerHandle) -> None:
    sdk = make_client(keyed_server.base_url, api_key="wrong")
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.models.list()
        assert caught.value.status_code == 401
        assert caught.value.code == "invalid_api_key"
    finally:
        sdk.close()


def test_right_key_is_served(keyed_server: ServerHandle) -> None:
    sdk = make_client(keyed_server.base_url, api_key=KEY)
    try:
        assert [model.id for model in sdk.models.list().data][:2] == [keyed_server.model_id, "auto"]
        completion = sdk.chat.completions.create(
            model=keyed_server.model_id,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=12,
        )
        assert "Paris" in (completion.choices[0].message.content or "")
    finally:
        sdk.close()


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_probes_need_no_key(raw: httpx.Client, path: str) -> None:
    assert raw.get(path).status_code == 200
