"""Attacks on access: admin calls with an inference key, from another machine, or as browser simple requests;
a key that floods the server; a server exposed to the network without keys.

Servers listen on 0.0.0.0 here so that requests can come from this machine's non-loopback address too,
the way a colleague's laptop would reach them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from support.checks import ADMIN_HEADERS, assert_openai_error, make_client, model_entry
from support.models import ModelsFolder
from support.server import ServerHandle, running_server, server_env

pytestmark = pytest.mark.integration

ADMIN_KEY = "admin-key-0123456789"
KEYS = ("key-admin-tests", "key-flood", "key-calm", "key-tokens", "key-victim", "key-prober")
RPM = 4


def _non_loopback_address() -> str | None:
    """An address of this machine other than loopback (where a request from the network arrives)."""
    for target in ("10.255.255.255", "192.0.2.1", "198.51.100.1"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((target, 9))  # no packet is sent: this only picks the outgoing interface
            except OSError:
                continue
            address = str(probe.getsockname()[0])
        if not address.startswith("127."):
            return address
    return None


@pytest.fixture(scope="module")
def keyed(models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """Inference keys, an admin key and a request rate limit, listening on every address."""
    env = {
        "PENSIEVE_API_KEYS": ",".join(KEYS),
        "PENSIEVE_ADMIN_KEY": ADMIN_KEY,
        "PENSIEVE_RATE_LIMIT_REQUESTS_PER_MINUTE": str(RPM),
        "PENSIEVE_RATE_LIMIT_TOKENS_PER_MINUTE": "3000",
    }
    with running_server("keyed", models_folder, tmp_path_factory.mktemp("keyed"), env, host="0.0.0.0") as handle:
        yield handle


def _http(server: ServerHandle, key: str | None, host: str = "127.0.0.1") -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    url = server.base_url.replace("127.0.0.1", host)
    return httpx.Client(base_url=url, headers=headers | ADMIN_HEADERS, timeout=60)


ADMIN_CALLS = [
    (
        "PATCH",
        "/api/admin/settings",
        {"PENSIEVE_PRIVACY_MODE": "off", "PENSIEVE_CLOUD_BASE_URL": "http://evil.example"},
    ),
    ("GET", "/api/admin/settings", None),
    ("POST", "/api/admin/settings/save", None),
    ("POST", "/api/models/{model}/unload", None),
    ("POST", "/api/models/{model}/load", None),
    ("POST", "/api/models/install-default", None),
    ("POST", "/api/burst/circuits/reset", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_an_inference_key_cannot_administer(keyed: ServerHandle, method: str, path: str, body: object) -> None:
    with _http(keyed, KEYS[0]) as http:
        response = http.request(method, path.format(model=keyed.model_id), json=body)
        assert_openai_error(response, 403, code="admin_key_required")
        assert model_entry(http, keyed.model_id)["loaded"] is True
    with _http(keyed, None) as anonymous:
        assert_openai_error(anonymous.request(method, path.format(model=keyed.model_id), json=body), 401)


def test_the_admin_key_administers_and_generates(keyed: ServerHandle) -> None:
    with _http(keyed, ADMIN_KEY) as admin:
        assert admin.get("/api/admin/settings").json()["settings"]["PENSIEVE_ADMIN_KEY"] != ADMIN_KEY
        assert admin.post("/api/burst/circuits/reset").status_code == 200
    sdk = make_client(keyed.base_url, api_key=ADMIN_KEY)
    try:
        answer = sdk.chat.completions.create(
            model=keyed.model_id, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
        )
        assert answer.choices[0].message.content is not None
    finally:
        sdk.close()


def test_the_admin_key_works_from_another_machine(keyed: ServerHandle) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address (tests/unit/test_access.py covers the rule)")
    with _http(keyed, ADMIN_KEY, host=address) as remote:
        assert remote.get("/api/admin/settings").status_code == 200


def test_a_key_over_its_request_rate_gets_429_and_other_keys_are_served(keyed: ServerHandle) -> None:
    flood, calm = make_client(keyed.base_url, api_key=KEYS[1]), make_client(keyed.base_url, api_key=KEYS[2])
    try:
        for _ in range(RPM):
            flood.completions.create(model=keyed.model_id, prompt="Hi", max_tokens=1)
        with pytest.raises(openai.RateLimitError) as refused:
            flood.completions.create(model=keyed.model_id, prompt="Hi", max_tokens=1)
        assert 1 <= int(refused.value.response.headers["retry-after"]) <= 60
        assert refused.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.RateLimitError):
            flood.embeddings.create(model=keyed.model_id, input="embeddings count too")
        assert calm.completions.create(model=keyed.model_id, prompt="Hi", max_tokens=1).choices
    finally:
        flood.close()
        calm.close()


def test_a_request_asking_more_tokens_than_the_key_may_use_gets_429(keyed: ServerHandle) -> None:
    sdk = make_client(keyed.base_url, api_key=KEYS[3])
    try:
        with pytest.raises(openai.RateLimitError, match="3000 tokens per minute"):
            sdk.completions.create(model=keyed.model_id, prompt="Hi", max_tokens=1000, n=4)
        assert sdk.completions.create(model=keyed.model_id, prompt="Hi", max_tokens=8).choices
    finally:
        sdk.close()


def test_one_key_cannot_learn_another_keys_cached_prompt(keyed: ServerHandle) -> None:
    """`cached_tokens` would reveal that someone sent this prompt before: the cache is kept per key."""
    secret = "Internal memo for the board: the merger with Northwind closes on 14 March. " * 6
    victim, prober = make_client(keyed.base_url, api_key=KEYS[4]), make_client(keyed.base_url, api_key=KEYS[5])

    def cached(client: openai.OpenAI) -> int:
        usage = client.completions.create(model=keyed.model_id, prompt=secret, max_tokens=1).usage
        assert usage is not None and usage.prompt_tokens > 50
        return (usage.prompt_tokens_details.cached_tokens or 0) if usage.prompt_tokens_details else 0

    try:
        assert cached(victim) == 0
        assert cached(prober) == 0, "the prober was served from the victim's cached prompt"
        assert cached(victim) > 0  # the victim's own prompt cache still works
    finally:
        victim.close()
        prober.close()


def test_without_an_admin_key_admin_answers_only_on_this_machine(
    models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address (tests/unit/test_access.py covers the rule)")
    env = {"PENSIEVE_API_KEY": KEYS[0]}
    work = tmp_path_factory.mktemp("no-admin-key")
    with running_server("no-admin-key", models_folder, work, env, host="0.0.0.0") as server:
        with _http(server, KEYS[0], host=address) as remote:
            assert_openai_error(remote.get("/api/admin/settings"), 403, code="admin_local_only")
            assert remote.get("/v1/models").status_code == 200  # inference from the network is fine
        with _http(server, KEYS[0]) as local:
            assert local.get("/api/admin/settings").status_code == 200
            proxied = local.get("/api/admin/settings", headers={"x-forwarded-for": "203.0.113.9"})
            assert_openai_error(proxied, 403, code="admin_local_only")


def test_bodiless_admin_posts_need_a_non_simple_request(http: httpx.Client, model_id: str) -> None:
    """A web page can send a bodiless or form POST without preflight; such a request must not unload a model."""
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"}):
        response = http.post(f"/api/models/{model_id}/unload", headers=headers)
        assert_openai_error(response, 400, code="admin_header_required")
    assert model_entry(http, model_id)["loaded"] is True


def test_serving_on_the_network_without_a_key_is_refused(tmp_path: Path) -> None:
    env = server_env(tmp_path, {})
    command = [sys.executable, "-m", "pensieve", "serve", "--host", "0.0.0.0", "--no-preload"]
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert "without an API key" in refused.stderr and "--insecure-no-auth" in refused.stderr
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


def test_insecure_no_auth_is_the_explicit_way_to_serve_openly(
    models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {"PENSIEVE_INSECURE_NO_AUTH": "true"}
    work = tmp_path_factory.mktemp("open")
    with running_server("open", models_folder, work, env, host="0.0.0.0") as server:
        assert httpx.get(f"{server.base_url}/v1/models", timeout=30).status_code == 200
