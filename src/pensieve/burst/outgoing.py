"""Every piece of user text a cloud call would carry, and the same request rebuilt with those texts changed.

The privacy guard must see everything that leaves the machine, not only message content: the CloudEngine
(`cloud/engine.py`, `cloud/payload.py`) also forwards each message's `name`, the `stop` sequences, the
`response_format` (a JSON schema's names, descriptions, enums and defaults are user text too), the `tools`
(names, descriptions and parameter schemas), the function calls of assistant turns (ids, names, arguments)
and the call id a `tool` turn answers (its result is its content). Ids are scanned too because a client
chooses them freely; a redacted id is redacted alike in the call and in the result, so they still match.
`outgoing_texts` lists them in a fixed order and `with_texts` puts a same-length list back in that order,
so the scanner and the redactor work on exactly one list and nothing forwarded can be missed by one and
not the other.

What is not here is never forwarded, or is no user text of its own: `suffix` is refused before routing,
`tool_choice` names a tool already listed (and is renamed with it), `user`, `logit_bias` (local token
ids), `top_k`, `min_p` and unknown fields stay home, and token-id prompts only run locally.
tests/unit/test_outgoing.py checks every string of the payload CloudEngine builds against this list.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import cast

from pensieve.engine_api import GenerationRequest, ToolCall


def _strings(value: object) -> Iterator[str]:
    """Every string in a JSON-like value, keys included, depth first in insertion order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _rebuilt(value: object, texts: Iterator[str]) -> object:
    """`value` with each string (in `_strings` order) replaced by the next of `texts`."""
    if isinstance(value, str):
        return next(texts)
    if isinstance(value, dict):
        rebuilt: dict[str, object] = {}
        for item in value.values():
            key = next(texts)  # keys come first, as `_strings` lists them
            rebuilt[key] = _rebuilt(item, texts)
        return rebuilt
    if isinstance(value, list | tuple):
        return [_rebuilt(item, texts) for item in value]
    return value


def outgoing_texts(request: GenerationRequest) -> list[str]:
    """The user text a cloud call for `request` would carry: contents, names, prompt, stops, response format,
    tool definitions and the names and arguments of the history's tool calls."""
    texts: list[str] = []
    if request.messages is not None:
        texts += [message.content for message in request.messages]
        texts += [message.name or "" for message in request.messages]
    else:
        texts.append(request.prompt if isinstance(request.prompt, str) else "")
    texts += list(request.params.stop)
    texts += list(_strings(request.params.response_format))
    texts += list(_strings(list(request.tools)))
    for message in request.messages or ():
        for call in message.tool_calls:
            texts += [call.id, call.name, call.arguments]
        texts += [message.tool_call_id] if message.tool_call_id else []
    return texts


def with_texts(request: GenerationRequest, texts: list[str]) -> GenerationRequest:
    """`request` with its outgoing texts replaced by `texts` (same order and length as `outgoing_texts`)."""
    if len(texts) != len(outgoing_texts(request)):
        raise ValueError("with_texts needs exactly one text per outgoing text")
    items = iter(texts)
    if request.messages is not None:
        contents = [next(items) for _ in request.messages]
        names = [next(items) for _ in request.messages]
        messages = tuple(
            replace(m, content=content, name=name if m.name is not None else None)
            for m, content, name in zip(request.messages, contents, names, strict=True)
        )
        request = replace(request, messages=messages)
    else:
        prompt = next(items)
        if isinstance(request.prompt, str):
            request = replace(request, prompt=prompt)
    params = request.params
    stop = tuple(next(items) for _ in params.stop)
    response_format = params.response_format
    if response_format is not None:
        rebuilt = _rebuilt(response_format, items)
        assert isinstance(rebuilt, dict)  # a dict comes back a dict
        response_format = rebuilt
    rebuilt_tools = _rebuilt(list(request.tools), items)
    assert isinstance(rebuilt_tools, list)  # a list comes back a list, of dicts
    tools = tuple(cast("dict[str, object]", tool) for tool in rebuilt_tools)
    if request.messages is not None:
        rebuilt_messages = []
        for m in request.messages:
            calls = tuple(ToolCall(next(items), next(items), next(items)) for _ in m.tool_calls)
            answered = next(items) if m.tool_call_id else None
            rebuilt_messages.append(replace(m, tool_calls=calls, tool_call_id=answered))
        request = replace(request, messages=tuple(rebuilt_messages))
    params = replace(params, stop=stop, response_format=response_format)
    return replace(request, params=params, tools=tools, tool_choice=_renamed(request, tools))


def _renamed(request: GenerationRequest, tools: tuple[dict[str, object], ...]) -> str | dict[str, object] | None:
    """The tool_choice with the function it names renamed as its tool was (it names a listed tool)."""
    choice = request.tool_choice
    if not isinstance(choice, dict) or not isinstance(function := choice.get("function"), dict):
        return choice
    names: dict[object, object] = {_name(old): _name(new) for old, new in zip(request.tools, tools, strict=True)}
    name = function.get("name")
    renamed: dict[str, object] = {**function, "name": names.get(name, name)}
    return {**choice, "function": renamed}


def _name(tool: dict[str, object]) -> object:
    """A tool's function name (None when it has none)."""
    function = tool.get("function")
    return function.get("name") if isinstance(function, dict) else None
