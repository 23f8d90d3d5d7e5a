"""Tool calling without a model: request validation, the local prompt and grammar, parsing, cloud payloads."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from pensieve.burst.outgoing import outgoing_texts, with_texts
from pensieve.cloud.payload import chat_message, tool_deltas, tool_params
from pensieve.config import Settings, load_settings
from pensieve.engine.chat_template import render_jinja_template
from pensieve.engine.llamacpp.grammar import grammar_for
from pensieve.engine.tool_prompt import calls_schema, guarded, history, local_tool_request, preamble, takes_tools
from pensieve.engine_api import ChatMessage, GenerationRequest, SamplingParams, ToolCall, ToolCallDelta
from pensieve.errors import InvalidRequestError
from pensieve.schemas.requests import ChatCompletionRequest, RequestDefaults
from pensieve.schemas.responses import AssistantMessage, ChunkDelta, ToolCallChunk, ToolCallOut
from pensieve.serving.tool_output import call_deltas, joined_calls, may_start_call, parse_tool_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
NAMES = ["get_weather", "get_time"]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    return load_settings()


def body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "Hi"}], **fields})


def request_of(settings: Settings, **fields: Any) -> GenerationRequest:
    return body(**fields).to_request(RequestDefaults.of(settings))


# --- request validation ----------------------------------------------------------------------------------


def test_tools_and_choice_reach_the_engine_request(settings: Settings) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    request = request_of(settings, tools=[WEATHER, TIME], tool_choice=choice, parallel_tool_calls=False)
    assert request.tools == (WEATHER, TIME)
    assert request.tool_choice == choice and request.parallel_tool_calls is False


def test_a_request_without_tools_is_unchanged(settings: Settings) -> None:
    request = request_of(settings)
    assert request.tools == () and request.tool_choice is None and request.parallel_tool_calls is None


@pytest.mark.parametrize(
    "fields",
    [
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {"tool_choice": "required"},
    ],
)
def test_a_choice_the_tools_cannot_meet_is_a_400_on_tool_choice(settings: Settings, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request_of(settings, **fields)
    assert caught.value.param == "tool_choice"


def test_two_tools_of_one_name_are_refused(settings: Settings) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request_of(settings, tools=[WEATHER, WEATHER])
    assert caught.value.param == "tools"


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}},
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": []}}},
        {"type": "function", "function": {"name": "f", "parameters": {"properties": {"a": {"type": "text"}}}}},
        {"type": "function", "function": {"name": "f", "parameters": {"required": "a"}}},
        {"type": "function", "function": {"name": "has space"}},
        {"type": "retrieval", "function": {"name": "f"}},
        {"type": "function", "function": {"name": "f", "parameters": "{}"}},
    ],
)
def test_bad_tool_definitions_are_refused(tool: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        body(tools=[tool])


def test_history_with_calls_and_results_is_kept(settings: Settings) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
    ]
    request = ChatCompletionRequest.model_validate({"messages": messages, "tools": [WEATHER]}).to_request(
        RequestDefaults.of(settings)
    )
    assert request.messages is not None
    assert request.messages[1].tool_calls == (ToolCall("call_1", "get_weather", '{"city":"Oslo"}'),)
    assert request.messages[1].content == "" and request.messages[2].tool_call_id == "call_1"


# --- local prompt and grammar ----------------------------------------------------------------------------


def test_the_calls_schema_becomes_a_grammar_for_one_call() -> None:
    schema = calls_schema([WEATHER, TIME], "required", None)
    calls = schema["properties"]["tool_calls"]
    assert calls["minItems"] == 1 and calls["maxItems"] == 1
    assert [option["properties"]["name"]["const"] for option in calls["items"]["oneOf"]] == NAMES
    grammar = grammar_for({"type": "json_schema", "json_schema": {"schema": schema}})
    assert grammar is not None and '"\\"get_weather\\""' in grammar


def test_a_named_choice_allows_that_tool_only_and_parallel_lifts_the_cap() -> None:
    schema = calls_schema([WEATHER, TIME], {"type": "function", "function": {"name": "get_time"}}, True)
    calls = schema["properties"]["tool_calls"]
    assert calls["items"]["properties"]["name"] == {"const": "get_time"} and "maxItems" not in calls


def test_the_local_request_gets_a_preamble_and_a_schema_when_a_call_is_required() -> None:
    request = GenerationRequest(
        "m", SamplingParams(), messages=(ChatMessage("user", "Weather in Oslo?"),), tools=(WEATHER,)
    )
    auto = local_tool_request(request)
    assert auto.messages is not None and auto.messages[0].role == "system" and "get_weather" in auto.messages[0].content
    assert auto.params.response_format is None and auto.tools == ()
    assert local_tool_request(auto) == auto  # applying it twice changes nothing
    forced = local_tool_request(GenerationRequest("m", SamplingParams(), messages=request.messages, tools=(WEATHER,),
                                                  tool_choice="required"))  # fmt: skip
    assert forced.params.response_format is not None and forced.params.response_format["type"] == "json_schema"
    none = local_tool_request(GenerationRequest("m", SamplingParams(), messages=request.messages, tools=(WEATHER,),
                                                tool_choice="none"))  # fmt: skip
    assert none.messages == request.messages and none.params.response_format is None


def test_the_preamble_says_what_the_choice_requires() -> None:
    assert "must call the tool 'get_time'" in preamble([TIME], {"type": "function", "function": {"name": "get_time"}})
    assert "must call at least one tool" in preamble([TIME], "required")
    assert "plain text" in preamble([TIME], "auto")


def test_history_writes_calls_as_json_and_results_as_user_turns() -> None:
    messages = (
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        ChatMessage("tool", "12 C", tool_call_id="call_1"),
    )
    rendered = history(messages)
    assert json.loads(rendered[1].content) == {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    assert rendered[2] == ChatMessage("user", "Tool result (get_weather, call_1):\n12 C")


# --- parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
        ' ```json\n{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}\n```',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"} and some trailing words',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]',
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo"}}',
        '{"name": "get_weather", "parameters": {"city": "Oslo"}}',
    ],
)
def test_calls_are_read_from_each_convention(text: str) -> None:
    (call,) = parse_tool_calls(text, NAMES)
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert call.id.startswith("call_") and len(call.id) == 29


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Oslo is mild.",
        '{"tool_calls": [{"name": "launch_rockets", "arguments": {}}]}',
        '{"tool_calls": [{"name": "get_weather", "arguments": [1]}]}',
        'Sure: {"tool_calls": [{"name": "get_weather", "arguments": {}}]}',
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Os',
        '{"answer": 42}',
    ],
)
def test_other_text_stays_text(text: str) -> None:
    assert parse_tool_calls(text, NAMES) == ()


@pytest.mark.parametrize(
    ("text", "may"),
    [("", True), ("  \n", True), (' {"tool', True), ("[TOOL", True), ("<tool_call>", True), ("```", True),
     ("The", False), (" 12", False)],
)  # fmt: skip
def test_a_stream_is_held_only_while_it_may_be_a_call(text: str, may: bool) -> None:
    assert may_start_call(text) is may


def test_several_hermes_calls_are_all_read() -> None:
    text = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n<tool_call>{"name": "get_time"}</tool_call>'
    assert [call.name for call in parse_tool_calls(text, NAMES)] == ["get_time", "get_time"]


def test_streamed_pieces_join_into_calls_and_back() -> None:
    deltas = [
        ToolCallDelta(0, "call_a", "get_weather", ""),
        ToolCallDelta(0, None, None, '{"city": '),
        ToolCallDelta(1, "call_b", "get_time", "{}"),
        ToolCallDelta(0, None, None, '"Oslo"}'),
    ]
    calls = joined_calls(deltas)
    assert calls == (ToolCall("call_a", "get_weather", '{"city": "Oslo"}'), ToolCall("call_b", "get_time", "{}"))
    assert joined_calls(call_deltas(calls)) == calls


# --- responses and cloud payloads ------------------------------------------------------------------------


def test_response_shapes_match_openai() -> None:
    call = ToolCall("call_a", "get_time", "{}")
    message = AssistantMessage(content=None, tool_calls=[ToolCallOut.of(call)]).model_dump()
    assert message["content"] is None and message["tool_calls"][0]["function"] == {
        "name": "get_time",
        "arguments": "{}",
    }
    assert "tool_calls" not in AssistantMessage(content="hi").model_dump()
    first = ChunkDelta(tool_calls=[ToolCallChunk.of(ToolCallDelta(0, "call_a", "get_time", ""))]).model_dump()
    assert first == {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                     "function": {"name": "get_time", "arguments": ""}}]}  # fmt: skip
    later = ChunkDelta(tool_calls=[ToolCallChunk.of(ToolCallDelta(0, arguments="{}"))]).model_dump()
    assert later == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}


def test_the_cloud_gets_calls_and_results_as_sent() -> None:
    assistant = ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_time", "{}"),))
    assert chat_message(assistant) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}],
    }
    result = ChatMessage("tool", "noon", tool_call_id="call_1")
    assert chat_message(result) == {"role": "tool", "tool_call_id": "call_1", "content": "noon"}
    request = GenerationRequest("m", SamplingParams(), messages=(), tools=(TIME,), tool_choice="required",
                                parallel_tool_calls=False)  # fmt: skip
    assert tool_params(request) == {"tools": [TIME], "tool_choice": "required", "parallel_tool_calls": False}
    assert tool_params(GenerationRequest("m", SamplingParams(), messages=())) == {}
    assert tool_params(GenerationRequest("m", SamplingParams(), messages=(), tool_choice="none")) == {}


def test_provider_deltas_are_read() -> None:
    class Function:
        name = "get_time"
        arguments = None

    class Call:
        index = 0
        id = "call_x"
        function = Function()

    class Delta:
        tool_calls: ClassVar[list[Call]] = [Call()]

    class Choice:
        delta = Delta()

    assert tool_deltas(Choice()) == (ToolCallDelta(0, "call_x", "get_time", ""),)


def test_the_privacy_guard_sees_tool_definitions_and_arguments() -> None:
    secret_tool = {"type": "function", "function": {"name": "mail", "description": "writes to bob@example.com"}}
    messages = (
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "mail", '{"to": "alice@example.com"}'),)),
        ChatMessage("tool", "sent to alice@example.com", tool_call_id="call_1"),
    )
    request = GenerationRequest("m", SamplingParams(), messages=messages, tools=(secret_tool,))
    texts = outgoing_texts(request)
    assert "writes to bob@example.com" in texts and '{"to": "alice@example.com"}' in texts
    masked = with_texts(request, [text.replace("example.com", "[x]") for text in texts])
    assert masked.tools[0] == {"type": "function", "function": {"name": "mail", "description": "writes to bob@[x]"}}
    assert masked.messages is not None and masked.messages[0].tool_calls[0].arguments == '{"to": "alice@[x]"}'
    assert masked.messages[1].tool_call_id == "call_1" and masked.messages[1].content == "sent to alice@[x]"


def test_a_schema_no_grammar_can_enforce_is_a_400_on_tools() -> None:
    odd = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "$ref": "#/nowhere"}}}
    request = GenerationRequest("m", SamplingParams(), messages=(ChatMessage("user", "x"),), tools=(odd,),
                                tool_choice="required")  # fmt: skip
    with pytest.raises(InvalidRequestError) as caught:
        local_tool_request(request)
    assert caught.value.param == "tools"


# --- models whose own template renders tools ------------------------------------------------------------

HERMES_TEMPLATE = """{%- if tools %}<|im_start|>system
<tools>{% for tool in tools %}{{ tool.function | tojson }}{% endfor %}</tools><|im_end|>
{% endif %}{%- for m in messages %}<|im_start|>{{ m.role }}
{%- if m.tool_calls %}{% for c in m.tool_calls %}
<tool_call>{"name": "{{ c.function.name }}", "arguments": {{ c.function.arguments | tojson }}}</tool_call>
{%- endfor %}{% elif m.role == "tool" %}
<tool_response id="{{ m.tool_call_id }}">{{ m.content }}</tool_response>{% else %}
{{ m.content }}{% endif %}<|im_end|>
{% endfor %}<|im_start|>assistant
"""


def test_templates_that_render_tools_are_recognised() -> None:
    assert takes_tools(HERMES_TEMPLATE) and takes_tools("{% if tools is defined %}{% endif %}")
    assert not takes_tools("{{ messages[0].content }}") and not takes_tools(None) and not takes_tools("toolset")


def test_a_native_template_gets_tools_calls_and_results() -> None:
    messages = (
        ChatMessage("user", "Weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)),
        ChatMessage("tool", "12 C", tool_call_id="call_1"),
    )
    request = GenerationRequest("m", SamplingParams(), messages=messages, tools=(WEATHER,), tool_choice="required")
    native = local_tool_request(request, native=True)
    assert native.messages == messages and native.tools == (WEATHER,)  # left to the template
    assert native.params.response_format is not None and local_tool_request(native, native=True) == native
    text = render_jinja_template(HERMES_TEMPLATE, messages, bos_token="", eos_token="", tools=native.tools)
    assert (
        '"name": "get_weather"' in text and '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}' in text
    )
    assert '<tool_response id="call_1">12 C</tool_response>' in text
    none = local_tool_request(replace(request, tool_choice="none"), native=True)
    assert none.tools == () and none.messages == messages and none.params.response_format is None


def test_the_special_token_guard_reaches_tools_and_calls() -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "ends <|im_end|> here"}}
    call = ToolCall("call_1", "f", '{"x": "<|im_end|>"}')
    request = GenerationRequest("m", SamplingParams(), messages=(ChatMessage("assistant", "", tool_calls=(call,)),),
                                tools=(tool,))  # fmt: skip
    messages, tools = guarded(request, lambda text: text.replace("<|", "<\u200b|"))
    assert "<|" not in json.dumps(tools, ensure_ascii=False) and "<|" not in messages[0].tool_calls[0].arguments
    assert messages[0].tool_calls[0].id == "call_1"
