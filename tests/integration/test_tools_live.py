"""Tool calling end to end (issue #17 part 1): the official SDK against a real server, the real local model
(Gemma 3 270M, which has no tool template: the generic JSON convention, grammar-constrained when a call is
required) and FakeCloud answering with a tool call.

- local: tool_choice `required` and a named function give valid calls whose arguments follow the schema;
  streamed deltas put together give the same call; call -> tool result -> final answer completes; `none`
  gives text; a tool_choice naming no declared tool, or a bad parameters schema, is a 400;
- cloud: tools, tool_choice, parallel_tool_calls and tool turns reach the provider unchanged, and its tool
  call comes back (streamed and not) with finish_reason `tool_calls`;
- privacy: private data in a tool definition or in a call's arguments never reaches the cloud.
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

CLOUD_KEY = "sk-fake-tools-0017"
CLOUD_MODEL = "fake/big-model"
EMAIL = "jane.doe@example.com"
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
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
QUESTION = [{"role": "user", "content": "What is the weather like in Paris today?"}]
# Greedy and computed in full: the same answer whether streamed or not.
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 120, "extra_body": {"cache_prompt": False}}


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
    with server_factory("tools", env) as handle:
        yield handle


@pytest.fixture
def sdk(server: ServerHandle, cloud: FakeCloud) -> Iterator[openai.OpenAI]:
    """The official SDK on the server; the fake cloud starts each test empty, its circuit closed."""
    cloud.reset()
    with httpx.Client(base_url=server.base_url) as http:
        assert http.post("/api/burst/circuits/reset", headers=ADMIN_HEADERS).status_code == 200
    client = make_client(server.base_url, timeout=120.0)
    yield client
    client.close()


def check_weather_call(call: Any) -> dict[str, Any]:
    """A get_weather call whose arguments are JSON with the schema's required keys and enum."""
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    arguments: dict[str, Any] = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str) and arguments["unit"] in ("celsius", "fahrenheit")
    return arguments


# --- local -----------------------------------------------------------------------------------------------


def test_required_gives_a_valid_call(sdk: openai.OpenAI, server: ServerHandle) -> None:
    response = sdk.chat.completions.with_raw_response.create(
        model=server.model_id, messages=QUESTION, tools=[WEATHER], tool_choice="required", **GREEDY
    )
    assert response.headers["x-pensieve-route"] == "local"
    choice = response.parse().choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    check_weather_call(choice.message.tool_calls[0])


def test_a_named_function_is_the_one_called(sdk: openai.OpenAI, server: ServerHandle) -> None:
    completion = sdk.chat.completions.create(
        model=server.model_id,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        **GREEDY,
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_time" and isinstance(json.loads(call.function.arguments)["zone"], str)


def test_streamed_deltas_reassemble_into_the_same_call(sdk: openai.OpenAI, server: ServerHandle) -> None:
    whole = sdk.chat.completions.create(
        model=server.model_id, messages=QUESTION, tools=[WEATHER], tool_choice="required", **GREEDY
    )
    stream = sdk.chat.completions.create(
        model=server.model_id, messages=QUESTION, tools=[WEATHER], tool_choice="required", stream=True, **GREEDY
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += delta.id or ""
                entry["name"] += (delta.function.name if delta.function else None) or ""
                entry["arguments"] += (delta.function.arguments if delta.function else None) or ""
    assert finish == "tool_calls" and list(calls) == [0]
    (expected,) = whole.choices[0].message.tool_calls or []
    assert calls[0]["id"].startswith("call_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == json.loads(expected.function.arguments)


def test_a_call_then_its_result_then_an_answer(sdk: openai.OpenAI, server: ServerHandle) -> None:
    messages: list[Any] = list(QUESTION)
    first = sdk.chat.completions.create(
        model=server.model_id, messages=messages, tools=[WEATHER], tool_choice="required", **GREEDY
    )
    (call,) = first.choices[0].message.tool_calls or []
    arguments = check_weather_call(call)
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    result = {"city": arguments["city"], "temperature": 21, "sky": "sunny"}
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    final = sdk.chat.completions.create(
        model=server.model_id, messages=messages, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=40
    )
    choice = final.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")
    assert (choice.message.content or "").strip()


def test_auto_answers_with_text_or_a_valid_call(sdk: openai.OpenAI, server: ServerHandle) -> None:
    completion = sdk.chat.completions.create(model=server.model_id, messages=QUESTION, tools=[WEATHER], **GREEDY)
    choice = completion.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls[0].function.name == "get_weather"
    else:
        assert choice.message.content is not None and choice.finish_reason in ("stop", "length")


def test_auto_streams_plain_text_as_it_comes(sdk: openai.OpenAI, server: ServerHandle) -> None:
    """Streamed, an `auto` answer is held only while it may be a call: plain text comes in many pieces.

    (Not compared with the whole answer: on this box a greedy local answer has been seen to differ between
    two runs of one prompt, so equality would make the test flaky without testing tool calling.)
    """
    question = [{"role": "user", "content": "Write a haiku about the sea."}]
    fields: dict[str, Any] = {"model": server.model_id, "messages": question, "tools": [WEATHER], **GREEDY}
    pieces, calls, finish = [], [], None
    for chunk in sdk.chat.completions.create(stream=True, **fields):
        for choice in chunk.choices:
            pieces += [choice.delta.content] if choice.delta.content else []
            calls += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    if calls:
        assert finish == "tool_calls" and all(call.function and call.function.name == "get_weather" for call in calls)
    else:
        assert finish in ("stop", "length") and "".join(pieces).strip()
        if len("".join(pieces).split()) > 3:
            assert len(pieces) > 1  # streamed as it came, not held to the end


def test_none_gives_text(sdk: openai.OpenAI, server: ServerHandle) -> None:
    completion = sdk.chat.completions.create(
        model=server.model_id, messages=QUESTION, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=24
    )
    choice = completion.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")
    assert (choice.message.content or "").strip()


@pytest.mark.parametrize(
    ("fields", "param_part"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "launch"}}}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "list"}}}]}, "tools"),
    ],
)
def test_a_choice_or_schema_that_cannot_work_is_a_400(
    sdk: openai.OpenAI, server: ServerHandle, fields: dict[str, Any], param_part: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=server.model_id, messages=QUESTION, max_tokens=4, **fields)
    body: Any = caught.value.body
    assert param_part in str(body.get("param") if isinstance(body, dict) else body)


# --- cloud -----------------------------------------------------------------------------------------------


def test_tools_reach_the_cloud_and_its_call_comes_back(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    cloud.call_tool("get_weather", '{"city": "Paris", "unit": "celsius"}')
    completion = sdk.chat.completions.create(
        model=CLOUD_MODEL, messages=QUESTION, tools=[WEATHER, TIME], tool_choice="auto", parallel_tool_calls=False
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert (call.id, call.function.name) == (FAKE_CALL_ID, "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    (sent,) = cloud.requests
    assert sent["body"]["tools"] == [WEATHER, TIME]
    assert (sent["body"]["tool_choice"], sent["body"]["parallel_tool_calls"]) == ("auto", False)


def test_a_streamed_cloud_call_comes_back_in_pieces(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    cloud.call_tool("get_weather", arguments)
    stream = sdk.chat.completions.create(model=CLOUD_MODEL, messages=QUESTION, tools=[WEATHER], stream=True)
    pieces, finish, ids = [], None, []
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                ids += [delta.id] if delta.id else []
                pieces.append((delta.function.arguments if delta.function else None) or "")
    assert finish == "tool_calls" and ids == [FAKE_CALL_ID]
    assert len(pieces) >= 2 and "".join(pieces) == arguments


def test_a_history_with_calls_reaches_the_cloud_unchanged(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"},
    ]
    completion = sdk.chat.completions.create(model=CLOUD_MODEL, messages=messages, tools=[WEATHER])
    assert completion.choices[0].finish_reason == "stop"
    (sent,) = cloud.requests
    assert sent["body"]["messages"][1:] == messages[1:]


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [{"type": "function", "function": {"name": "mail", "description": f"Writes to {EMAIL}"}}]},
        {
            "tools": [WEATHER],
            "messages": [
                *QUESTION,
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "cc": EMAIL})}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        },
    ],
)  # fmt: skip
def test_private_data_in_tools_never_reaches_the_cloud(
    server: ServerHandle, sdk: openai.OpenAI, cloud: FakeCloud, fields: dict[str, Any]
) -> None:
    body = {"model": "auto", "messages": QUESTION, "max_tokens": 8, "temperature": 0, **fields}
    with httpx.Client(base_url=server.base_url, timeout=120.0) as http:
        response = http.post("/v1/chat/completions", json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 200, response.text
    assert (response.headers["x-pensieve-route"], response.headers["x-pensieve-reason"]) == ("local", "privacy")
    assert cloud.requests == []


def test_a_session_keeps_the_tool_turns_of_the_new_messages(server: ServerHandle, cloud: FakeCloud) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    messages: list[Any] = [
        *QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"},
    ]
    cloud.reset()
    with httpx.Client(base_url=server.base_url, timeout=120.0) as http:
        session = http.post("/api/sessions", json={})
        assert session.status_code in (200, 201), session.text
        body = {"model": CLOUD_MODEL, "messages": messages, "tools": [WEATHER], "session_id": session.json()["id"]}
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    (sent,) = cloud.requests
    assert sent["body"]["messages"][-2:] == messages[1:]
