"""What a CloudEngine sends to an OpenAI-compatible provider, and the tool-call pieces it reads back.

Split from cloud/engine.py, which runs the call: these are the pure conversions from the engine's request
to the SDK's keyword arguments (burst/outgoing.py lists every user text they carry, for the privacy guard).
"""

from __future__ import annotations

from typing import Any

from pensieve.engine_api import ChatMessage, GenerationRequest, ToolCallDelta

# Roles every OpenAI-compatible provider accepts; `developer` is OpenAI-only, and a tool message without the
# id of the call it answers would be refused, so it travels as user text.
_ROLE_FOR_CLOUD = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "user"}


def chat_message(message: ChatMessage) -> dict[str, Any]:
    """One message as the provider gets it: tool calls and tool results unchanged, as the client sent them."""
    if message.role == "tool" and message.tool_call_id:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    role = _ROLE_FOR_CLOUD[message.role]
    content = f"Tool result: {message.content}" if message.role == "tool" else message.content
    payload: dict[str, Any] = {"role": role, "content": content}
    if message.name and role in ("system", "user"):
        payload["name"] = message.name
    if message.tool_calls and role == "assistant":
        payload["content"] = content or None  # OpenAI's shape: a message that only calls has null content
        payload["tool_calls"] = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in message.tool_calls
        ]
    return payload


def tool_params(request: GenerationRequest) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` as the client set them (nothing when it set none)."""
    # Without tools neither of the other two means anything, and OpenAI refuses them alone.
    if not request.tools:
        return {}
    params: dict[str, Any] = {"tools": list(request.tools)}
    if request.parallel_tool_calls is not None:
        params["parallel_tool_calls"] = request.parallel_tool_calls
    if request.tool_choice is not None:
        params["tool_choice"] = request.tool_choice
    return params


def tool_deltas(choice: Any) -> tuple[ToolCallDelta, ...]:
    """The provider's streamed `tool_calls` pieces of a chat chunk (empty for text)."""
    calls = getattr(getattr(choice, "delta", None), "tool_calls", None) or ()
    found = []
    for position, call in enumerate(calls):
        function = getattr(call, "function", None)
        index = call.index if isinstance(getattr(call, "index", None), int) else position
        found.append(
            ToolCallDelta(
                index=index,
                id=getattr(call, "id", None),
                name=getattr(function, "name", None),
                arguments=getattr(function, "arguments", None) or "",
            )
        )
    return tuple(found)


def sampling_params(request: GenerationRequest) -> dict[str, Any]:
    """The OpenAI parameters the client set; local-only knobs (top_k, min_p, token-id logit_bias) stay home.

    Server defaults are never invented here: with `client_set` known, a field goes only if the client set
    it (with exactly its value, 0 included). Without it (a request built in code), every meaningful value goes.
    """
    params = request.params
    sampling: dict[str, Any] = {}
    for name, value in (("temperature", params.temperature), ("top_p", params.top_p)):
        if params.chose(name):
            sampling[name] = value
    if params.max_tokens is not None and params.chose("max_tokens"):
        sampling["max_tokens"] = params.max_tokens
    if params.stop:
        sampling["stop"] = list(params.stop)
    if params.seed is not None:
        sampling["seed"] = params.seed
    for name, value in (("presence_penalty", params.presence_penalty), ("frequency_penalty", params.frequency_penalty)):
        if (params.client_set is not None and name in params.client_set) or (params.client_set is None and value):
            sampling[name] = value
    if params.response_format is not None:
        sampling["response_format"] = params.response_format
    return sampling


def logprob_params(request: GenerationRequest) -> dict[str, Any]:
    """OpenAI's logprobs parameters: chat takes a flag and a count, text completions a count (0 to 5)."""
    params = request.params
    if not params.logprobs:
        return {}
    if request.messages is not None:
        return {"logprobs": True, "top_logprobs": params.top_logprobs} if params.top_logprobs else {"logprobs": True}
    return {"logprobs": params.top_logprobs}
