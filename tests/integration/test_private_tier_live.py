"""The private tier end to end: a real server, the real local model and TWO fake providers on loopback.

`cluster` is the organisation's own endpoint (`private_ok = true`); `public` is a public provider and the
default one (`default = true`). Both are real HTTP servers that record every request they receive, so the
promise is checked where it matters: a prompt holding private data reaches the trusted fake when the local
model cannot serve it (context overflow, a model that cannot load, an unsure answer, redact mode) and
NOTHING private ever reaches the public fake, even when the trusted provider fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.checks import ADMIN_HEADERS, make_client
from support.fake_cloud import FakeCloud
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

TRUSTED_KEY, PUBLIC_KEY = "sk-cluster-secret-1111", "sk-public-secret-2222"
TRUSTED_MODEL, PUBLIC_MODEL = "cluster/cluster-model", "public/big-model"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PRIVATE_MARKERS = (EMAIL, CARD, "jane.doe")
TRIVIAL = "Say hello."
# ~4,000 tokens: more than the test servers' PENSIEVE_N_CTX=2048.
LONG = "The committee met again to review the budget. " * 400


def providers_toml(trusted: FakeCloud, public: FakeCloud) -> str:
    """The providers file: the public fake is the default, the trusted one is private_ok."""
    return f"""
[[providers]]
name = "public"
base_url = "{public.base_url}"
api_key = "{PUBLIC_KEY}"
default = true
timeout_seconds = 5
first_token_timeout_seconds = 2

[[providers.models]]
id = "big-model"
price_input = 1
price_output = 2

[[providers]]
name = "cluster"
base_url = "{trusted.base_url}"
api_key = "{TRUSTED_KEY}"
private_ok = true
timeout_seconds = 5
first_token_timeout_seconds = 2

[[providers.models]]
id = "cluster-model"
"""


def tier_env(providers_file: Path, **extra: str) -> dict[str, str]:
    """Settings of a server whose only providers are the two fakes (privacy mode block unless `extra` says)."""
    return {
        "PENSIEVE_CLOUD_PROVIDERS_FILE": str(providers_file),
        "PENSIEVE_CLOUD_CIRCUIT_FAILURES": "2",
        "PENSIEVE_CLOUD_CIRCUIT_COOLDOWN_SECONDS": "30",
        "PENSIEVE_BUDGET_DAILY_USD": "1000",
        "PENSIEVE_BUDGET_MONTHLY_USD": "1000",
        **extra,
    }


@pytest.fixture(scope="module")
def trusted() -> Iterator[FakeCloud]:
    """The organisation's own endpoint (private_ok)."""
    # No pause between chunks: the context tests echo a ~4,000-token prompt word by word.
    with FakeCloud(api_key=TRUSTED_KEY, models=("cluster-model",), chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def public() -> Iterator[FakeCloud]:
    """A public provider, the default one."""
    with FakeCloud(api_key=PUBLIC_KEY, chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def providers_file(tmp_path_factory: pytest.TempPathFactory, trusted: FakeCloud, public: FakeCloud) -> Path:
    """The providers TOML file naming both fakes."""
    path = tmp_path_factory.mktemp("private-tier") / "providers.toml"
    path.write_text(providers_toml(trusted, public), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tier_server(server_factory: ServerFactory, providers_file: Path) -> Iterator[ServerHandle]:
    """Privacy mode block (the default), every criterion on, confidence cascade off."""
    with server_factory("private-tier", tier_env(providers_file)) as handle:
        yield handle


@pytest.fixture(scope="module")
def sdk(tier_server: ServerHandle) -> Iterator[openai.OpenAI]:
    """The official SDK on the tier server."""
    client = make_client(tier_server.base_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _fresh(trusted: FakeCloud, public: FakeCloud, tier_server: ServerHandle) -> None:
    """Healthy fakes with empty logs and closed circuits before every test."""
    trusted.reset()
    public.reset()
    response = httpx.post(f"{tier_server.base_url}/api/burst/circuits/reset", timeout=10, headers=ADMIN_HEADERS)
    assert response.status_code == 200 and sorted(response.json()["reset"]) == ["cluster", "public"]


def chat(
    client: openai.OpenAI, content: str, *, model: str = "auto", route: str | None = None
) -> tuple[str, dict[str, str]]:
    """(answer text, response headers) of a non-streamed chat completion."""
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        max_tokens=8,
        temperature=0,
        extra_headers={"x-pensieve-route": route} if route else {},
    )
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def streamed_chat(server: ServerHandle, content: str) -> tuple[str, dict[str, str]]:
    """(answer text, response headers) of a streamed chat completion of model `auto`, read as raw SSE."""
    body = {"model": "auto", "messages": [{"role": "user", "content": content}], "stream": True, "max_tokens": 8}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("error" not in chunk for chunk in chunks), chunks[-1]
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    return text, dict(response.headers)


def where(headers: dict[str, str]) -> tuple[str, str, str]:
    """(x-pensieve-route, x-pensieve-tier, x-pensieve-reason)."""
    return headers["x-pensieve-route"], headers["x-pensieve-tier"], headers["x-pensieve-reason"]


def sent(cloud: FakeCloud) -> str:
    """Every request body (and header) a fake received, as one text."""
    return " ".join(json.dumps(entry) for entry in cloud.requests)


def assert_nothing_private(public: FakeCloud) -> None:
    """The public fake received no private marker in any body or header."""
    everything = sent(public)
    for marker in PRIVATE_MARKERS:
        assert marker not in everything


def explain(server: ServerHandle, content: str, route: str | None = None) -> dict[str, Any]:
    """POST /api/route/explain for one user message."""
    response = httpx.post(
        f"{server.base_url}/api/route/explain",
        json={"messages": [{"role": "user", "content": content}]},
        headers={"x-pensieve-route": route} if route else {},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# --- privacy mode block --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_private_prompt_over_the_local_context_goes_only_to_the_trusted_tier(
    sdk: openai.OpenAI, tier_server: ServerHandle, trusted: FakeCloud, public: FakeCloud, stream: bool
) -> None:
    content = f"Reply to {EMAIL}. " + LONG
    text, headers = streamed_chat(tier_server, content) if stream else chat(sdk, content)
    assert where(headers) == ("cloud", "trusted", "context")
    assert headers["x-pensieve-model"] == TRUSTED_MODEL
    assert EMAIL in text  # the fake echoes the prompt: the trusted tier got it unmasked
    assert len(trusted.requests) == 1 and EMAIL in sent(trusted)
    assert trusted.requests[0]["headers"]["authorization"] == f"Bearer {TRUSTED_KEY}"
    assert public.requests == []


def test_private_prompt_whose_local_model_cannot_load_goes_to_the_trusted_tier(
    sdk: openai.OpenAI, trusted: FakeCloud, public: FakeCloud
) -> None:
    text, headers = chat(sdk, f"My card is {CARD}, is it valid?", model="truncated")
    assert where(headers) == ("cloud", "trusted", "local_failure")
    assert CARD in text and CARD in sent(trusted)
    assert public.requests == []


def test_trusted_tier_failure_falls_back_to_local_never_to_public(
    sdk: openai.OpenAI, tier_server: ServerHandle, trusted: FakeCloud, public: FakeCloud
) -> None:
    trusted.set_fault(status=500, times=1)
    text, headers = chat(sdk, f"Write to {EMAIL} about it.", route="cloud")
    assert where(headers) == ("local", "local", "cloud_failure")
    assert headers["x-pensieve-model"] == tier_server.model_id
    assert text.strip() and len(trusted.requests) == 1
    assert public.requests == []


def test_open_trusted_circuit_refuses_what_local_cannot_serve_and_public_gets_nothing(
    sdk: openai.OpenAI, trusted: FakeCloud, public: FakeCloud
) -> None:
    trusted.set_fault(status=503, times=2)  # PENSIEVE_CLOUD_CIRCUIT_FAILURES=2: the circuit opens
    for _ in range(2):
        assert where(chat(sdk, f"Write to {EMAIL}.", route="cloud")[1]) == ("local", "local", "cloud_failure")
    with pytest.raises(openai.BadRequestError) as caught:
        chat(sdk, f"Reply to {EMAIL}. " + LONG)
    assert "circuit open" in str(caught.value) and EMAIL not in str(caught.value)
    assert len(trusted.requests) == 2
    assert public.requests == []


def test_public_pin_with_private_data_stays_blocked_trusted_pin_is_allowed(
    sdk: openai.OpenAI, trusted: FakeCloud, public: FakeCloud
) -> None:
    _, headers = chat(sdk, f"Write to {EMAIL}.", model=PUBLIC_MODEL)
    assert where(headers) == ("local", "local", "privacy")
    _, headers = chat(sdk, f"Write to {EMAIL}.", model=TRUSTED_MODEL)
    assert where(headers) == ("cloud", "trusted", "explicit")
    assert len(trusted.requests) == 1
    assert public.requests == []


def test_plain_requests_use_the_default_public_provider_and_say_so(
    sdk: openai.OpenAI, tier_server: ServerHandle, trusted: FakeCloud, public: FakeCloud
) -> None:
    text, headers = chat(sdk, TRIVIAL, route="cloud")
    assert where(headers) == ("cloud", "public", "explicit") and headers["x-pensieve-model"] == PUBLIC_MODEL
    assert TRIVIAL in text and len(public.requests) == 1
    assert where(chat(sdk, TRIVIAL)[1]) == ("local", "local", "default")
    assert trusted.requests == []
    # The explanation names the tier and the target, without sending anything anywhere.
    plain = explain(tier_server, TRIVIAL, route="cloud")
    assert (plain["route"], plain["tier"], plain["model"]) == ("cloud", "public", PUBLIC_MODEL)
    private = explain(tier_server, f"Reply to {EMAIL}. " + LONG)
    assert (private["route"], private["tier"], private["model"]) == ("cloud", "trusted", TRUSTED_MODEL)
    assert private["facts"]["cloud_trusted"] is True and EMAIL not in json.dumps(private)
    privacy = next(c for c in private["criteria"] if c["criterion"] == "privacy")
    assert privacy["vote"] == "abstain" and "trusted provider 'cluster'" in privacy["detail"]
    assert len(public.requests) == 1 and len(trusted.requests) == 0
    # The stats show the providers' trust and the tier of each recent decision.
    stats = httpx.get(f"{tier_server.base_url}/api/burst/stats", timeout=10).json()
    assert {p["name"]: p["private_ok"] for p in stats["providers"]} == {"public": False, "cluster": True}
    assert [entry["tier"] for entry in stats["recent"][:2]] == ["local", "public"]


# --- other modes: redact, the confidence cascade ---------------------------------------------------------------


def test_redact_mode_sends_private_text_unmasked_to_the_trusted_tier_only(
    server_factory: ServerFactory, providers_file: Path, trusted: FakeCloud, public: FakeCloud
) -> None:
    with server_factory("private-tier-redact", tier_env(providers_file, PENSIEVE_PRIVACY_MODE="redact")) as server:
        client = make_client(server.base_url)
        asked = chat(client, f"Write to {EMAIL} about it.", route="cloud")[1]
        overflow = chat(client, f"Reply to {EMAIL}. " + LONG)[1]
        assert public.requests == []  # private requests: the public provider got nothing at all
        pinned = chat(client, f"Write to {EMAIL} about it.", model=PUBLIC_MODEL)[1]
        client.close()
    assert where(asked) == ("cloud", "trusted", "explicit")
    assert where(overflow) == ("cloud", "trusted", "context")
    assert len(trusted.requests) == 2 and sent(trusted).count(EMAIL) == 2 and "[REDACTED" not in sent(trusted)
    # A public model named explicitly still works as before: masked.
    assert where(pinned) == ("cloud", "public", "explicit")
    assert len(public.requests) == 1 and "[REDACTED:EMAIL]" in sent(public)
    assert_nothing_private(public)


def test_confidence_cascade_asks_the_trusted_tier_for_private_prompts(
    server_factory: ServerFactory, providers_file: Path, trusted: FakeCloud, public: FakeCloud
) -> None:
    # A threshold of 0 makes every local answer "unsure": each non-streamed answer is asked again in the cloud.
    env = tier_env(providers_file, PENSIEVE_BURST_CONFIDENCE="true", PENSIEVE_BURST_CONFIDENCE_THRESHOLD="0")
    with server_factory("private-tier-cascade", env) as server:
        client = make_client(server.base_url)
        private_text, private = chat(client, f"Write to {EMAIL} about it.")
        plain_text, plain = chat(client, TRIVIAL)
        client.close()
    assert where(private) == ("cloud", "trusted", "confidence") and EMAIL in private_text
    assert len(trusted.requests) == 1 and EMAIL in sent(trusted)
    assert where(plain) == ("cloud", "public", "confidence") and TRIVIAL in plain_text
    assert len(public.requests) == 1
    assert_nothing_private(public)
