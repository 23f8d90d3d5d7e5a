"""Tool calling on a local model: the tools rendered into the prompt, and a grammar when a call is required.

Most small GGUF models (the default Gemma 3 270M among them) have no tool-calling template, so one generic
JSON convention is used for all: a system preamble lists the tools with their JSON Schemas and asks for
`{"tool_calls": [{"name": ..., "arguments": {...}}]}` when the model calls any. With tool_choice `required`
or a named function, the answer is constrained by a grammar built from the tools' schemas
(`calls_schema`, turned into GBNF as a response_format json_schema is), so even a tiny model returns calls
that parse and match the schemas. With `auto` the model answers freely and serving/tool_output.py reads a
leading tool_calls object (or a model family's own markers) back as calls.

History: an assistant turn's calls become that same JSON, and a `tool` turn becomes a user turn
"Tool result (name, id): ..." (the built-in formats and most templates know no tool role).

A model whose GGUF chat template renders tools itself (it reads a `tools` variable: Qwen 2.5/3, Llama
3.1+, Hermes and Mistral fine-tunes) gets them through its own template instead (`native`): the tools,
calls and results go to the template as Hugging Face passes them, and its answer in the family's own
format is read back by serving/tool_output.py. The grammar for a required call is the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from pensieve.engine.llamacpp.grammar import GrammarError, grammar_for
from pensieve.engine_api import ChatMessage, GenerationRequest
from pensieve.errors import InvalidRequestError

_PREAMBLE = (
    "You can call the following tools (functions). Each is listed as JSON with a JSON Schema of its arguments:\n"
    "{tools}\n\n"
    "To call tools, answer with only a JSON object of this form and nothing else:\n"
    '{{"tool_calls": [{{"name": "<tool name>", "arguments": {{<arguments as the schema says>}}}}]}}\n'
)
_AUTO = "If no tool is needed, answer the user in plain text instead."
_REQUIRED = "You must call at least one tool now."
_NAMED = "You must call the tool '{name}' now."


def tool_names(tools: Sequence[dict[str, Any]]) -> list[str]:
    """The function names of OpenAI-shaped tools, in order."""
    return [str(tool["function"]["name"]) for tool in tools]


def forced_name(tool_choice: object) -> str | None:
    """The function a tool_choice names ({"type": "function", "function": {"name": ...}}), else None."""
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return str(function["name"])
    return None


def calls_schema(tools: Sequence[dict[str, Any]], tool_choice: object, parallel: bool | None) -> dict[str, Any]:
    """The JSON Schema of an answer that calls tools: {"tool_calls": [one of {name, arguments} per tool]}.

    A named tool_choice allows that tool only; one call unless `parallel` is true (a small model asked
    for "one or more" tends to repeat the call, and OpenAI's default of parallel calls is no promise).
    """
    name = forced_name(tool_choice)
    options = []
    for tool in tools:
        function = tool["function"]
        if name is not None and function["name"] != name:
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": function["name"]}, "arguments": parameters},
                "required": ["name", "arguments"],
            }
        )
    item = options[0] if len(options) == 1 else {"oneOf": options}
    calls: dict[str, Any] = {"type": "array", "items": item, "minItems": 1}
    if not parallel:
        calls["maxItems"] = 1
    return {"type": "object", "properties": {"tool_calls": calls}, "required": ["tool_calls"]}


def preamble(tools: Sequence[dict[str, Any]], tool_choice: object) -> str:
    """The system text that lists the tools and says how to call them."""
    listed = [
        {key: tool["function"][key] for key in ("name", "description", "parameters") if key in tool["function"]}
        for tool in tools
    ]
    name = forced_name(tool_choice)
    rule = _NAMED.format(name=name) if name else _REQUIRED if tool_choice == "required" else _AUTO
    return _PREAMBLE.format(tools=json.dumps(listed, ensure_ascii=False, indent=1)) + rule


def calls_text(message: ChatMessage) -> str:
    """An assistant turn's calls as the JSON the preamble asks for (after its text, when it has some)."""
    calls = []
    for call in message.tool_calls:
        try:
            arguments: object = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            arguments = call.arguments  # shown as sent: the model sees what it (or the client) produced
        calls.append({"name": call.name, "arguments": arguments})
    rendered = json.dumps({"tool_calls": calls}, ensure_ascii=False)
    return f"{message.content}\n{rendered}" if message.content.strip() else rendered


def history(messages: Sequence[ChatMessage]) -> tuple[ChatMessage, ...]:
    """The conversation with tool calls and results written out as text turns every chat format can show."""
    names = {call.id: call.name for message in messages for call in message.tool_calls}
    rendered = []
    for message in messages:
        if message.tool_calls:
            rendered.append(ChatMessage("assistant", calls_text(message), message.name))
        elif message.role == "tool":
            label = ", ".join(part for part in (names.get(message.tool_call_id or ""), message.tool_call_id) if part)
            heading = f"Tool result ({label})" if label else "Tool result"
            rendered.append(ChatMessage("user", f"{heading}:\n{message.content}"))
        else:
            rendered.append(message)
    return tuple(rendered)


def uses_tools(request: GenerationRequest) -> bool:
    """Whether a request has tools or tool turns for the local prompt to render."""
    messages = request.messages or ()
    return bool(request.tools) or any(m.tool_calls or m.role == "tool" for m in messages)


def takes_tools(template: str | None) -> bool:
    """Whether a chat template renders tools itself (it reads a `tools` variable)."""
    return bool(template) and re.search(r"\btools\b", template or "") is not None


def _forced(request: GenerationRequest) -> GenerationRequest:
    """`request` with a response_format requiring calls when tool_choice is `required` or names a function
    (unless the client constrained the output itself)."""
    params = request.params
    forced = request.tool_choice == "required" or forced_name(request.tool_choice) is not None
    if not (request.tools and forced) or params.response_format is not None or params.grammar is not None:
        return request
    schema = calls_schema(request.tools, request.tool_choice, request.parallel_tool_calls)
    response_format: dict[str, object] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_calls", "schema": schema},
    }
    try:  # checked here so a schema llama.cpp cannot enforce is the client's 400 on `tools`
        grammar_for(response_format)
    except GrammarError as exc:
        raise InvalidRequestError(f"Invalid tools: {exc}.", param="tools") from exc
    return replace(request, params=replace(params, response_format=response_format))


def local_tool_request(request: GenerationRequest, *, native: bool = False) -> GenerationRequest:
    """The request a local model runs: tools as a system preamble, tool turns as text, and a response_format
    requiring calls when one is required. The tools are then dropped, so applying this twice changes
    nothing. `native` (the model's template renders tools): only the response_format is added."""
    if request.messages is None or not uses_tools(request):
        return request
    if native:
        return _forced(request) if request.tool_choice != "none" else replace(request, tools=())
    messages = history(request.messages)
    if request.tools and request.tool_choice != "none":
        request = _forced(request)
        messages = (ChatMessage("system", preamble(request.tools, request.tool_choice)), *messages)
    return replace(request, messages=messages, tools=(), tool_choice=None)


def _guard_strings(value: object, guard: Callable[[str], str]) -> object:
    """`value` with `guard` applied to every string in it, keys included."""
    if isinstance(value, str):
        return guard(value)
    if isinstance(value, dict):
        return {guard(str(key)): _guard_strings(item, guard) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_guard_strings(item, guard) for item in value]
    return value


def guarded(
    request: GenerationRequest, guard: Callable[[str], str]
) -> tuple[tuple[ChatMessage, ...], tuple[dict[str, Any], ...]]:
    """The messages and tools of a chat request with every text a template renders passed through `guard`
    (the special-token guard: a marker typed in a message, a tool or a call's arguments stays text)."""
    messages = tuple(
        replace(
            m,
            content=guard(m.content),
            name=guard(m.name) if m.name else m.name,
            tool_calls=tuple(replace(c, name=guard(c.name), arguments=guard(c.arguments)) for c in m.tool_calls),
        )
        for m in request.messages or ()
    )
    tools = tuple(cast("dict[str, Any]", _guard_strings(tool, guard)) for tool in request.tools)
    return messages, tools
