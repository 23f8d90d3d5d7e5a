"""LlamaIndex's `OpenAILike` LLM against the real server and local model (issue #17).

Chat whole and streamed, a required tool call through `chat_with_tools`, and `structured_predict` of a
pydantic model (a function-calling program: one forced tool call, grammar-constrained on the server).

LlamaIndex is not in the `dev` extra and cannot be: every `llama-index-llms-openai` release (0.8.3 the
newest; `llama-index-llms-openai-like` builds on it) requires `openai<3`, and Pensieve pins openai 3.51.0.
llama-index-core 0.14.25 itself resolves with every pin (30 packages, ~120 MB with the two LLM packages);
with llama-index-llms-openai 0.8.3 and llama-index-llms-openai-like 0.8.1 added by `pip install --no-deps`
it runs on openai 3.51.0. The module is skipped where they are not installed.
"""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from support.server import ServerHandle

openai_like = pytest.importorskip("llama_index.llms.openai_like")
llms = pytest.importorskip("llama_index.core.llms")
tools = pytest.importorskip("llama_index.core.tools")
prompts = pytest.importorskip("llama_index.core.prompts")

pytestmark = pytest.mark.integration


class City(pydantic.BaseModel):
    """A city and its country, read from a sentence."""

    name: str
    country: str


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


def local_llm(server: ServerHandle, max_tokens: int = 60) -> Any:
    """`OpenAILike` on the server's local model: chat, function calling on, greedy, no retries."""
    return openai_like.OpenAILike(
        model=server.model_id,
        api_base=f"{server.base_url}/v1",
        api_key="unused",
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=2048,
        max_tokens=max_tokens,
        temperature=0,
        max_retries=0,
        timeout=300,
    )


def ask(text: str) -> list[Any]:
    """One user chat message."""
    return [llms.ChatMessage(role="user", content=text)]


def test_chat_whole_and_streamed(server: ServerHandle) -> None:
    llm = local_llm(server, max_tokens=16)
    whole = llm.chat(ask("What is the capital of France?"))
    assert isinstance(whole.message.content, str) and whole.message.content.strip()
    pieces = list(llm.stream_chat(ask("Write a haiku about the sea.")))
    assert len(pieces) > 2 and pieces[-1].message.content.strip()


def test_required_tool_call(server: ServerHandle) -> None:
    llm = local_llm(server)
    tool = tools.FunctionTool.from_defaults(fn=get_weather)
    response = llm.chat_with_tools([tool], user_msg="What is the weather like in Paris today?", tool_required=True)
    (call,) = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    assert call.tool_name == "get_weather" and isinstance(call.tool_kwargs["city"], str) and call.tool_id


def test_structured_predict(server: ServerHandle) -> None:
    template = prompts.PromptTemplate("Extract the city from this sentence: {text}")
    city = local_llm(server).structured_predict(City, template, text="I flew to Rome, in Italy, last week.")
    assert isinstance(city, City) and isinstance(city.name, str) and isinstance(city.country, str)
