"""LangChain's `ChatOpenAI.bind_tools` agent loop against the real server and local model (issue #17 part 1).

`langchain-openai` is a dev dependency (pyproject `dev` extra); the module is skipped where it is not
installed. instructor and litellm have their own modules (test_instructor_live.py, test_litellm_live.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support.server import ServerHandle

langchain_openai = pytest.importorskip("langchain_openai")
messages_module = pytest.importorskip("langchain_core.messages")

pytestmark = pytest.mark.integration

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


def chat_model(server: ServerHandle) -> Any:
    """ChatOpenAI on the server's local model: greedy, short, no retries."""
    return langchain_openai.ChatOpenAI(
        base_url=f"{server.base_url}/v1",
        api_key="unused",
        model=server.model_id,
        temperature=0,
        max_tokens=120,
        max_retries=0,
        timeout=120,
    )


def test_bind_tools_call_result_answer(server: ServerHandle) -> None:
    llm = chat_model(server)
    question = messages_module.HumanMessage("What is the weather like in Paris today?")
    called = llm.bind_tools([WEATHER], tool_choice="get_weather").invoke([question])
    (call,) = called.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str) and call["id"]
    result = messages_module.ToolMessage(json.dumps({"temperature": 21, "sky": "sunny"}), tool_call_id=call["id"])
    final = llm.bind_tools([WEATHER], tool_choice="none").invoke([question, called, result])
    assert not final.tool_calls and isinstance(final.content, str) and final.content.strip()


def test_a_streamed_tool_call_is_put_together(server: ServerHandle) -> None:
    llm = chat_model(server).bind_tools([WEATHER], tool_choice="required")
    whole: Any = None
    for piece in llm.stream("What is the weather like in Paris today?"):
        whole = piece if whole is None else whole + piece
    (call,) = whole.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
