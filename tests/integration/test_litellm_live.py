"""litellm's `openai/` provider against the real server and local model (issue #17).

`litellm.completion(model="openai/<id>", api_base=<server>/v1, ...)` whole and streamed, a named tool
call, and `litellm.embedding`. litellm installs alongside every Pensieve pin but is not in the `dev`
extra: litellm 1.110.2 and the 20 packages it adds (boto3, botocore, tokenizers, aiohttp, ...) take
262 MB, the litellm wheel alone 200 MB. The module is skipped where litellm is not installed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from support.server import ServerHandle

# Without it, importing litellm fetches its model price list from GitHub (and waits for a timeout offline).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm")

pytestmark = [
    pytest.mark.integration,
    # litellm's own TypedDicts use `ReadOnly`, which pydantic warns about when it first builds their schemas.
    pytest.mark.filterwarnings("ignore:Items? .* `ReadOnly` qualifier:UserWarning"),
]

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}},
            "required": ["city"],
        },
    },
}


def route(server: ServerHandle) -> dict[str, Any]:
    """The keyword arguments that send a litellm call to the server's local model (no retries)."""
    return {
        "model": f"openai/{server.model_id}",
        "api_base": f"{server.base_url}/v1",
        "api_key": "unused",
        "num_retries": 0,
        "timeout": 300,
    }


def ask(text: str) -> list[dict[str, str]]:
    """One user message."""
    return [{"role": "user", "content": text}]


def test_completion_whole(server: ServerHandle) -> None:
    reply = litellm.completion(
        **route(server), messages=ask("What is the capital of France?"), temperature=0, max_tokens=16
    )
    choice = reply.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"} and reply.usage.completion_tokens > 0


def test_completion_streamed(server: ServerHandle) -> None:
    pieces = list(
        litellm.completion(
            **route(server), messages=ask("Write a haiku about the sea."), temperature=0, max_tokens=16, stream=True
        )
    )
    text = "".join(piece.choices[0].delta.content or "" for piece in pieces if piece.choices)
    assert len(pieces) > 2 and text.strip()
    assert pieces[-1].choices[0].finish_reason in {"stop", "length"}


def test_named_tool_call(server: ServerHandle) -> None:
    reply = litellm.completion(
        **route(server),
        messages=ask("What is the weather like in Paris today?"),
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=60,
    )
    choice = reply.choices[0]
    (call,) = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls" and call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_embedding(server: ServerHandle) -> None:
    target = route(server)
    del target["num_retries"]
    reply = litellm.embedding(**target, input=["first text", "second text"])
    vectors = [item["embedding"] for item in reply.data]
    assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0
    assert all(isinstance(value, float) for value in vectors[0])
