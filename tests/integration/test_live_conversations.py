"""Chat requests that name a session, end to end: the real server and model, a fake cloud on loopback.

The client sends only its new message with `session_id` (or X-Pensieve-Session); the server adds the
history, trims what does not fit, stores the answer with its record, keeps a private session local for
good, and keeps one history across local and cloud turns.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.checks import make_client
from support.fake_cloud import FakeCloud
from support.models import ModelsFolder
from support.server import ServerFactory, ServerHandle, launch_server

pytestmark = pytest.mark.integration

CLOUD_KEY = "sk-fake-cloud-conversations-1"
CLOUD_MODEL = "fake/big-model"
COMPLEX = (
    "Step by step, prove that the sum of the first n odd numbers is n^2, then write a Python function that "
    "verifies it, compare its complexity with a closed form and derive the integral of x^2 from 0 to 1."
)


def _session(http: httpx.Client, **fields: Any) -> str:
    created = http.post("/api/sessions", json=fields)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _turn(
    sdk: openai.OpenAI, model: str, session_id: str, text: str, files: list[str] | None = None, **extra: Any
) -> Any:
    body: dict[str, Any] = {"session_id": session_id} | ({"file_ids": files} if files else {})
    return sdk.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], temperature=0, extra_body=body, **extra
    )


def test_a_later_turn_uses_a_fact_given_only_in_the_first(
    client: openai.OpenAI, http: httpx.Client, model_id: str
) -> None:
    session_id = _session(http, system_prompt="You are a helpful assistant. Answer briefly.")
    _turn(client, model_id, session_id, "Remember this: the secret code is 7391. Reply OK.", max_tokens=20)
    _turn(client, model_id, session_id, "What is the capital of France?", max_tokens=20)
    third = _turn(client, model_id, session_id, "What is the secret code?", max_tokens=20)
    assert "7391" in (third.parse().choices[0].message.content or "")
    assert third.headers["x-pensieve-session"] == session_id
    stored = http.get(f"/api/sessions/{session_id}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 3
    answer = stored["messages"][-1]
    assert answer["route"] == "local" and answer["model"] == model_id and answer["partial"] is False
    assert answer["completion_tokens"] > 0 and answer["prompt_tokens"] > 0 and answer["latency_ms"] > 0


def test_history_beyond_the_context_is_trimmed_oldest_first(
    client: openai.OpenAI, http: httpx.Client, model_id: str
) -> None:
    session_id = _session(http)
    filler = " ".join(f"Note {index}: the weather report says clouds and light wind." for index in range(30))
    trimmed = []
    for turn in range(7):  # ~400 tokens a turn in a 2,048-token window
        reply = _turn(client, model_id, session_id, f"Turn {turn}. {filler}", max_tokens=4)
        trimmed.append(int(reply.headers["x-pensieve-trimmed-messages"]))
        body = reply.http_response.json()
        assert body["session"]["trimmed_messages"] == trimmed[-1]
    assert trimmed[0] == 0 and trimmed[-1] > 0 and trimmed[-1] % 2 == 0, trimmed  # whole turns go
    assert http.get(f"/api/sessions/{session_id}").json()["trimmed"] == trimmed[-1]


def test_a_stream_the_client_stops_is_stored_as_partial(
    client: openai.OpenAI, http: httpx.Client, model_id: str
) -> None:
    session_id = _session(http)
    stream = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Tell me a long story about a dragon."}],
        max_tokens=300,
        stream=True,
        extra_headers={"X-Pensieve-Session": session_id},
    )
    received = ""
    for chunk in stream:
        received += chunk.choices[0].delta.content or "" if chunk.choices else ""
        if len(received) > 20:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = http.get(f"/api/sessions/{session_id}").json()["messages"]
        if messages:
            break
        time.sleep(0.2)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["partial"] is True and messages[1]["content"].startswith(received.strip()[:10])


def test_unknown_or_foreign_sessions_are_404(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        _turn(client, model_id, "sess_does_not_exist", "Hi", max_tokens=2)
    assert missing.value.code == "session_not_found"


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    """A fake cloud that records what it receives."""
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def burst_server(server_factory: ServerFactory, cloud: FakeCloud) -> Iterator[ServerHandle]:
    """A server whose cloud is the fake one (privacy mode block, cloud failures fall back locally)."""
    env = cloud.provider_env(
        PENSIEVE_CLOUD_CONTEXT_LENGTH="8192",
        PENSIEVE_BURST_COMPLEXITY_THRESHOLD="0.3",
    )
    with server_factory("conversations-burst", env) as handle:
        yield handle


def test_a_session_that_held_private_data_stays_local_for_good(burst_server: ServerHandle, cloud: FakeCloud) -> None:
    cloud.reset()
    sdk = make_client(burst_server.base_url)
    with httpx.Client(base_url=burst_server.base_url, timeout=60) as http:
        session_id = _session(http)
        first = _turn(sdk, "auto", session_id, "My email is jane.doe@example.com, note it.", max_tokens=8)
        assert first.headers["x-pensieve-route"] == "local"
        assert http.get(f"/api/sessions/{session_id}").json()["private_kinds"] == ["email"]
        # Nothing private in these turns, and they would burst: they stay local, and say why.
        for extra in ({}, {"extra_headers": {"X-Pensieve-Route": "cloud"}}):
            later = _turn(sdk, "auto", session_id, COMPLEX, max_tokens=8, **extra)
            assert later.headers["x-pensieve-route"] == "local"
            assert later.headers["x-pensieve-reason"] == "session_private"
    assert cloud.requests == [], "a private session's turn reached the cloud"
    sdk.close()


def test_a_session_keeps_one_history_across_cloud_and_local(burst_server: ServerHandle, cloud: FakeCloud) -> None:
    cloud.reset()
    sdk = make_client(burst_server.base_url)
    with httpx.Client(base_url=burst_server.base_url, timeout=60) as http:
        session_id = _session(http, model=CLOUD_MODEL)
        cloud.set_fault(status=500, times=1)
        fallen_back = _turn(sdk, CLOUD_MODEL, session_id, "The meeting is in room 4B. Reply OK.", max_tokens=8)
        assert fallen_back.headers["x-pensieve-route"] == "local"
        _turn(sdk, CLOUD_MODEL, session_id, "Where is the meeting?", max_tokens=8)
        stored = http.get(f"/api/sessions/{session_id}").json()["messages"]
    assert [(m["role"], m["route"]) for m in stored] == [
        ("user", None),
        ("assistant", "local"),
        ("user", None),
        ("assistant", "cloud"),
    ]
    assert stored[1]["reason"] == "cloud_failure"
    sent = cloud.requests[-1]["body"]["messages"]
    assert any("room 4B" in str(message["content"]) for message in sent), sent  # the local turn went along
    sdk.close()


def test_with_persistence_an_acknowledged_turn_survives_kill_9(models_folder: ModelsFolder, tmp_path: Path) -> None:
    env = {"PENSIEVE_PERSIST": "sqlite"}
    server = launch_server("persist-1", models_folder, tmp_path, env)
    try:
        sdk = make_client(server.base_url)
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            session_id = _session(http)
            answer = _turn(sdk, server.model_id, session_id, "Say hello.", max_tokens=8).parse()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
    finally:
        server.stop()
    again = launch_server("persist-2", models_folder, tmp_path, env)
    try:
        with httpx.Client(base_url=again.base_url, timeout=60) as http:
            messages = http.get(f"/api/sessions/{session_id}").json()["messages"]
        assert [m["content"] for m in messages] == ["Say hello.", answer.choices[0].message.content]
    finally:
        again.stop()


def test_a_private_file_keeps_the_request_and_then_its_session_local(
    burst_server: ServerHandle, cloud: FakeCloud
) -> None:
    cloud.reset()
    sdk = make_client(burst_server.base_url)
    notes = b"Project notes. Contact jane.doe@example.com for access. The project code name is Bluefin.\n"
    with httpx.Client(base_url=burst_server.base_url, timeout=60) as http:
        uploaded = http.post("/api/files", files={"file": ("notes.txt", notes)}).json()["data"][0]
        assert uploaded["private"] is True and uploaded["private_kinds"] == ["email"]
        session_id = _session(http)
        # The question matches only the harmless passage; the file's verdict keeps the request local anyway.
        first = _turn(sdk, "auto", session_id, COMPLEX, [uploaded["id"]], max_tokens=8)
        assert first.headers["x-pensieve-route"] == "local" and first.headers["x-pensieve-reason"] == "privacy"
        assert http.get(f"/api/sessions/{session_id}").json()["private"] is True
        later = _turn(sdk, "auto", session_id, COMPLEX, max_tokens=8)
        assert later.headers["x-pensieve-reason"] == "session_private"
    assert cloud.requests == []
    sdk.close()
