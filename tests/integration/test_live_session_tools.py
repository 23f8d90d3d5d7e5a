"""Agent loops in a session (issue #17): the official SDK against a real server, the real local model and
FakeCloud. The server keeps the tool turns, so the client sends only what is new at each step.

- local: a grammar-forced call (tool_choice naming the function) is stored with its answer; the tool result
  the client sends next is stored; the session's messages hold both, and the second step's prompt is
  exactly the prompt of the same conversation sent whole (same prompt token count);
- streamed: the call put together from the deltas is the one stored;
- cloud: the provider's call is stored, and the next step reaches the provider with the call and its result;
- privacy: an email in a stored call's arguments keeps the next step of the session local.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.checks import ADMIN_HEADERS, make_client
from support.fake_cloud import FakeCloud
from support.fake_cloud.handler import FAKE_CALL_ID
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

CLOUD_KEY = "sk-fake-session-tools"
CLOUD_MODEL = "fake/big-model"
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
FORCED: dict[str, Any] = {"type": "function", "function": {"name": "get_weather"}}
QUESTION = {"role": "user", "content": "What is the weather like in Paris today?"}
# Greedy and computed in full, so the two prompts compared below are counted alike.
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 120}
NO_CACHE = {"cache_prompt": False}


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud shared by the module (reset before each test)."""
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(server_factory: ServerFactory, cloud: FakeCloud) -> Iterator[ServerHandle]:
    """A server with the local model that bursts to the fake cloud."""
    env = cloud.provider_env(
        PENSIEVE_CLOUD_PRICE_INPUT="1",
        PENSIEVE_CLOUD_PRICE_OUTPUT="1",
        PENSIEVE_BUDGET_DAILY_USD="1000",
        PENSIEVE_BUDGET_MONTHLY_USD="1000",
    )
    with server_factory("session-tools", env) as handle:
        yield handle


@pytest.fixture
def http(server: ServerHandle, cloud: FakeCloud) -> Iterator[httpx.Client]:
    """A raw client; the fake cloud starts each test empty, its circuit closed."""
    cloud.reset()
    with httpx.Client(base_url=server.base_url, timeout=120.0) as raw:
        assert raw.post("/api/burst/circuits/reset", headers=ADMIN_HEADERS).status_code == 200
        yield raw


@pytest.fixture
def sdk(server: ServerHandle, http: httpx.Client) -> Iterator[openai.OpenAI]:
    """The official SDK on the server."""
    client = make_client(server.base_url, timeout=120.0)
    yield client
    client.close()


def _session(http: httpx.Client) -> str:
    created = http.post("/api/sessions", json={})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _stored(http: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def _call_json(call: Any) -> dict[str, Any]:
    """An SDK tool call as the session API returns it."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.function.name, "arguments": call.function.arguments},
    }


def test_a_local_agent_loop_keeps_the_call_and_its_result(
    sdk: openai.OpenAI, http: httpx.Client, server: ServerHandle
) -> None:
    session_id = _session(http)
    first = sdk.chat.completions.create(
        model=server.model_id,
        messages=[QUESTION],
        tools=[WEATHER],
        tool_choice=FORCED,
        extra_body={"session_id": session_id, **NO_CACHE},
        **GREEDY,
    )
    answer = first.choices[0]
    assert answer.finish_reason == "tool_calls"
    (call,) = answer.message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and arguments["unit"] in ("celsius", "fahrenheit")
    stored = _stored(http, session_id)
    assert [(m["role"], m["content"]) for m in stored] == [("user", QUESTION["content"]), ("assistant", "")]
    assert stored[1]["tool_calls"] == [_call_json(call)] and stored[1]["finish_reason"] == "tool_calls"

    # Step 2, as OpenAI's examples write it: the answer sent back, then the result (the server keeps one copy).
    result = {
        "role": "tool",
        "tool_call_id": call.id,
        "content": json.dumps({"city": arguments["city"], "sky": "sunny"}),
    }
    echoed = answer.message.model_dump(exclude_none=True)
    second = sdk.chat.completions.create(
        model=server.model_id,
        messages=[echoed, result],
        tools=[WEATHER],
        tool_choice="none",
        extra_body={"session_id": session_id, **NO_CACHE},
        temperature=0,
        max_tokens=24,
    )
    assert second.choices[0].message.tool_calls is None
    stored = _stored(http, session_id)
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1]["tool_calls"] == [_call_json(call)]
    assert (stored[2]["tool_call_id"], stored[2]["content"]) == (call.id, result["content"])
    assert stored[3]["content"] == (second.choices[0].message.content or "")

    # The second step's prompt is the whole conversation's: counted the same as when sent stateless.
    whole = sdk.chat.completions.create(
        model=server.model_id,
        messages=[QUESTION, echoed, result],
        tools=[WEATHER],
        tool_choice="none",
        extra_body=NO_CACHE,
        temperature=0,
        max_tokens=1,
    )
    assert second.usage is not None and whole.usage is not None
    assert second.usage.prompt_tokens == whole.usage.prompt_tokens


def test_a_streamed_call_is_stored_whole(sdk: openai.OpenAI, http: httpx.Client, server: ServerHandle) -> None:
    session_id = _session(http)
    stream = sdk.chat.completions.create(
        model=server.model_id,
        messages=[QUESTION],
        tools=[WEATHER],
        tool_choice=FORCED,
        stream=True,
        extra_body={"session_id": session_id, **NO_CACHE},
        **GREEDY,
    )
    call = {"id": "", "name": "", "arguments": ""}
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call["id"] += delta.id or ""
                call["name"] += (delta.function.name if delta.function else None) or ""
                call["arguments"] += (delta.function.arguments if delta.function else None) or ""
    stored = _stored(http, session_id)
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[1]["partial"] is False and stored[1]["finish_reason"] == "tool_calls"
    expected = {
        "id": call["id"],
        "type": "function",
        "function": {"name": "get_weather", "arguments": call["arguments"]},
    }
    assert stored[1]["tool_calls"] == [expected]


def test_a_cloud_call_is_stored_and_replayed_to_the_cloud(
    sdk: openai.OpenAI, http: httpx.Client, cloud: FakeCloud
) -> None:
    session_id = _session(http)
    arguments = '{"city": "Paris", "unit": "celsius"}'
    cloud.call_tool("get_weather", arguments)
    first = sdk.chat.completions.create(
        model=CLOUD_MODEL, messages=[QUESTION], tools=[WEATHER], extra_body={"session_id": session_id}
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert call.id == FAKE_CALL_ID
    stored = _stored(http, session_id)
    assert stored[1]["route"] == "cloud" and stored[1]["tool_calls"] == [_call_json(call)]

    result = {"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": "21 C, sunny"}
    second = sdk.chat.completions.create(model=CLOUD_MODEL, messages=[result], extra_body={"session_id": session_id})
    assert second.choices[0].finish_reason == "stop"
    sent = cloud.requests[-1]["body"]["messages"]
    assert sent == [
        QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [_call_json(call)]},
        result,
    ]
    assert [m["role"] for m in _stored(http, session_id)] == ["user", "assistant", "tool", "assistant"]


def test_private_data_in_a_stored_call_keeps_the_session_local(
    sdk: openai.OpenAI, http: httpx.Client, cloud: FakeCloud
) -> None:
    session_id = _session(http)
    # The provider's answer is not scanned (it came from the cloud); the stored call is, once replayed.
    cloud.call_tool("send_mail", json.dumps({"to": "jane.doe@example.com"}))
    mail = {"type": "function", "function": {"name": "send_mail", "parameters": {"type": "object"}}}
    sdk.chat.completions.create(
        model=CLOUD_MODEL, messages=[{"role": "user", "content": "Mail Jane."}], tools=[mail],
        extra_body={"session_id": session_id},
    )  # fmt: skip
    assert http.get(f"/api/sessions/{session_id}").json()["private"] is False
    requests_before = len(cloud.requests)
    body = {
        "model": "auto",
        "messages": [{"role": "tool", "tool_call_id": FAKE_CALL_ID, "content": "sent"}],
        "session_id": session_id,
        "max_tokens": 8,
        "temperature": 0,
    }
    response = http.post("/v1/chat/completions", json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 200, response.text
    assert (response.headers["x-pensieve-route"], response.headers["x-pensieve-reason"]) == ("local", "privacy")
    assert len(cloud.requests) == requests_before
    session = http.get(f"/api/sessions/{session_id}").json()
    assert session["private"] is True and "email" in session["private_kinds"]
