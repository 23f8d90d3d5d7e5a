"""The confidence cascade end to end: streamed and whole answers, the confidence header, the stats.

A real Pensieve server with the real model and a fake cloud on loopback. The threshold is changed at
run time (PATCH /api/admin/settings): 0 makes every local answer unsure (its least likely token has a
log-probability below 0), -1000 makes every one sure, so each path is forced without a flaky prompt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.checks import ADMIN_HEADERS, END_TOKEN_BIAS, make_client
from support.fake_cloud import FakeCloud
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

QUESTION = "Name a colour of the sky."
LONG_QUESTION = "Count from one to twenty in words, separated by commas."
HOLD = 4


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud (it echoes the prompt back, word by word)."""
    with FakeCloud(api_key="sk-cascade-4242", chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(server_factory: ServerFactory, cloud: FakeCloud) -> Iterator[ServerHandle]:
    """Cascade on, judged on the first 4 tokens."""
    env = cloud.provider_env(
        PENSIEVE_BURST_CONFIDENCE="true",
        PENSIEVE_BURST_COMPLEXITY="false",
        PENSIEVE_BURST_STREAM_HOLD_TOKENS=str(HOLD),
        PENSIEVE_CLOUD_PRICE_INPUT="1",
        PENSIEVE_CLOUD_PRICE_OUTPUT="2",
        PENSIEVE_CLOUD_FIRST_TOKEN_TIMEOUT_SECONDS="2",
        PENSIEVE_CLOUD_CIRCUIT_FAILURES="50",
    )
    with server_factory("cascade", env) as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle, cloud: FakeCloud) -> Iterator[openai.OpenAI]:
    """The official SDK, with a fresh fake cloud."""
    cloud.reset()
    sdk = make_client(server.base_url)
    yield sdk
    sdk.close()


def set_threshold(server: ServerHandle, value: float, share: float | None = None) -> None:
    """Change the cascade's threshold (and target share) on the running server."""
    changes: dict[str, Any] = {
        "PENSIEVE_BURST_CONFIDENCE_THRESHOLD": value,
        "PENSIEVE_BURST_CONFIDENCE_TARGET_SHARE": share if share is not None else "",
    }
    response = httpx.patch(f"{server.base_url}/api/admin/settings", json=changes, headers=ADMIN_HEADERS, timeout=10)
    assert response.status_code == 200, response.text


def stream(
    client: openai.OpenAI, route: str | None = None, question: str = QUESTION
) -> tuple[list[str], dict[str, str]]:
    """The content pieces and headers of a streamed greedy chat answer."""
    headers = {"x-pensieve-route": route} if route else {}
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=[{"role": "user", "content": question}],
        max_tokens=24,
        temperature=0,
        stream=True,
        logit_bias=END_TOKEN_BIAS,  # type: ignore[arg-type]
        extra_headers=headers,
    ) as response:
        pieces = [chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices]
        return pieces, dict(response.headers)


def recent(server: ServerHandle) -> dict[str, Any]:
    """The newest decision in /api/burst/stats, and the stats' confidence section under 'gate'."""
    data = httpx.get(f"{server.base_url}/api/burst/stats?recent=1", timeout=10).json()
    return {**data["recent"][0], "gate": data["confidence"]}


def test_a_local_answer_says_how_sure_it_was(server: ServerHandle, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        extra_headers={"x-pensieve-route": "local"},  # pinned: never cascades, still measured
    )
    sure = float(raw.headers["x-pensieve-confidence"])
    assert 0.0 < sure <= 1.0
    entry = recent(server)
    assert (entry["route"], entry["reason"]) == ("local", "explicit")
    assert entry["confidence"] == pytest.approx(sure, abs=1e-4)


def test_an_unsure_stream_switches_to_the_cloud_before_its_first_byte(
    server: ServerHandle, client: openai.OpenAI, cloud: FakeCloud
) -> None:
    set_threshold(server, 0.0)
    pieces, headers = stream(client)
    assert (headers["x-pensieve-route"], headers["x-pensieve-reason"]) == ("cloud", "confidence")
    assert 0.0 < float(headers["x-pensieve-confidence"]) < 1.0
    # Only the cloud's answer reached the client (the fake echoes the question): no local start before it.
    assert "".join(pieces).strip() == f"Echo: {QUESTION}"
    assert len(cloud.requests) == 1 and cloud.requests[0]["body"]["stream"] is True
    entry = recent(server)
    assert (entry["route"], entry["reason"], entry["stream"]) == ("cloud", "confidence", True)
    assert entry["confidence"] is not None
    assert entry["gate"]["judged"] >= 1 and entry["gate"]["judged_tokens"] == HOLD


def test_a_confident_stream_goes_on_from_the_local_model(
    server: ServerHandle, client: openai.OpenAI, cloud: FakeCloud
) -> None:
    set_threshold(server, -1000.0)
    _, headers = stream(client)
    assert (headers["x-pensieve-route"], headers["x-pensieve-reason"]) == ("local", "default")
    assert "x-pensieve-confidence" in headers  # judged before the first byte, so it is in the headers
    assert cloud.requests == []
    # The held start and the rest that streamed on make the same answer as an uncascaded stream.
    uncascaded, _ = stream(client, route="local", question=LONG_QUESTION)
    cascaded, _ = stream(client, question=LONG_QUESTION)
    assert len([piece for piece in cascaded if piece]) > HOLD
    assert "".join(cascaded) == "".join(uncascaded)


def test_a_whole_answer_cascades_on_the_same_tokens(
    server: ServerHandle, client: openai.OpenAI, cloud: FakeCloud
) -> None:
    set_threshold(server, 0.0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": QUESTION}], max_tokens=24
    )
    assert (raw.headers["x-pensieve-route"], raw.headers["x-pensieve-reason"]) == ("cloud", "confidence")
    assert QUESTION in (raw.parse().choices[0].message.content or "")
    entry = recent(server)
    assert (entry["route"], entry["reason"], entry["stream"]) == ("cloud", "confidence", False)


def test_a_stream_whose_cloud_fails_is_answered_locally(
    server: ServerHandle, client: openai.OpenAI, cloud: FakeCloud
) -> None:
    set_threshold(server, 0.0)
    cloud.set_fault(status=503)
    pieces, headers = stream(client)
    assert (headers["x-pensieve-route"], headers["x-pensieve-reason"]) == ("local", "cloud_failure")
    assert "".join(pieces).strip()
    assert len(cloud.requests) == 1


def test_the_target_share_is_reported(server: ServerHandle, client: openai.OpenAI) -> None:
    set_threshold(server, -2.0, share=0.3)
    gate = recent(server)["gate"]
    assert (gate["enabled"], gate["target_share"], gate["signal"]) == (True, 0.3, "min_logprob_first_tokens")
    assert gate["realised_share"] is None or 0.0 <= gate["realised_share"] <= 1.0
    explained = httpx.post(
        f"{server.base_url}/api/route/explain", json={"messages": [{"role": "user", "content": QUESTION}]}, timeout=10
    ).json()
    assert explained["cascade"] is True and explained["confidence"]["target_share"] == 0.3
