"""Tool calls read back from a local model's text, and cloud tool-call pieces put together.

A local model calls tools in text: the generic convention of engine/tool_prompt.py
(`{"tool_calls": [{"name": ..., "arguments": {...}}]}`) or, for models tuned on their family's own format,
Hermes/Qwen's `<tool_call>{...}</tool_call>`, Mistral's `[TOOL_CALLS][...]` or Llama 3's
`<|python_tag|>{"name": ..., "parameters": {...}}`. `parse_tool_calls` recognises a call only at the start of
the answer and only for a declared tool: any other text stays text. These are pure functions.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence

from pensieve.engine_api import ToolCall, ToolCallDelta

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_DECODER = json.JSONDecoder()


def new_call_id() -> str:
    """An OpenAI-style tool call id (call_ and 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _leading_json(text: str) -> object:
    """The JSON value at the start of `text` (trailing text ignored), or None."""
    try:
        value, _ = _DECODER.raw_decode(text.lstrip())
    except ValueError:
        return None
    return value


def _call(item: object, names: Sequence[str]) -> ToolCall | None:
    """One call from {"name", "arguments"} (or Llama's "parameters"), for a declared tool only."""
    if not isinstance(item, dict):
        return None
    function = item.get("function")
    if isinstance(function, dict) and "name" in function:  # OpenAI's own shape, echoed by some models
        item = function
    name = item.get("name")
    arguments = item.get("arguments", item.get("parameters", {}))
    if not isinstance(name, str) or name not in names:
        return None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(new_call_id(), name, json.dumps(arguments, ensure_ascii=False))


def _calls(value: object, names: Sequence[str]) -> tuple[ToolCall, ...]:
    """The calls in a parsed value: {"tool_calls": [...]}, a list of calls, or one call; all must be valid."""
    if isinstance(value, dict) and "tool_calls" in value:
        value = value["tool_calls"]
    items = value if isinstance(value, list) else [value]
    calls = [_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return ()
    return tuple(call for call in calls if call is not None)


def parse_tool_calls(text: str, names: Sequence[str]) -> tuple[ToolCall, ...]:
    """The tool calls a local model's answer starts with (empty when it is plain text)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    if stripped.startswith("<tool_call>"):
        found: list[ToolCall] = []
        for body in _HERMES.findall(stripped):
            calls = _calls(_leading_json(body), names)
            if not calls:
                return ()
            found.extend(calls)
        return tuple(found)
    for marker in ("[TOOL_CALLS]", "<|python_tag|>"):
        if stripped.startswith(marker):
            stripped = stripped[len(marker) :]
            break
    if not stripped.lstrip().startswith(("{", "[")):
        return ()
    return _calls(_leading_json(stripped), names)


def may_start_call(text: str) -> bool:
    """Whether an answer beginning with `text` may still turn out to be tool calls (every convention
    `parse_tool_calls` reads starts with `{`, `[`, `<` or a code fence); blank text may too."""
    start = text.lstrip()
    return not start or start[0] in "{[<`"


def joined_calls(deltas: Iterable[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """Streamed tool-call pieces put together by index (id and name from the first piece that has them)."""
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for delta in deltas:
        arguments.setdefault(delta.index, []).append(delta.arguments)
        if delta.id and delta.index not in ids:
            ids[delta.index] = delta.id
        if delta.name and delta.index not in names:
            names[delta.index] = delta.name
    return tuple(
        ToolCall(ids.get(index) or new_call_id(), names.get(index, ""), "".join(arguments[index]))
        for index in sorted(arguments)
    )


def call_deltas(calls: Sequence[ToolCall]) -> tuple[ToolCallDelta, ...]:
    """Whole calls as stream pieces: each call's id, name and arguments in one delta."""
    return tuple(ToolCallDelta(index, call.id, call.name, call.arguments) for index, call in enumerate(calls))
