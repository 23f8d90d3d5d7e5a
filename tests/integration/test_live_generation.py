"""Chat and text completions against the real model: content, streaming, stop sequences, limits, seeds."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

pytestmark = pytest.mark.integration

FRANCE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
# A prompt the base model continues for well over 40 tokens without ending.
ROMAN_PROMPT = "The history of the Roman Empire"


def _stream_chat(client: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    return list(client.chat.completions.create(stream=True, **kwargs))


def _stream_completion(client: openai.OpenAI, **kwargs: Any) -> list[Completion]:
    return list(client.completions.create(stream=True, **kwargs))


def _chat_text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(choice.delta.content or "" for chunk in chunks for choice in chunk.choices)


def _completion_text(chunks: list[Completion]) -> str:
    return "".join(choice.text for chunk in chunks for choice in chunk.choices)


# --- 1. A plain chat completion -----------------------------------------------------------------


def test_chat_completion_answers_a_simple_question(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(model=model_id, messages=FRANCE, temperature=0, max_tokens=32)

    assert completion.object == "chat.completion"
    assert completion.model == model_id
    assert completion.id.startswith("chatcmpl-")
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    content = choice.message.content
    assert content is not None
    assert "Paris" in content, content
    assert content == content.strip(), f"chat answers carry no edge whitespace: {content!r}"
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens <= 32


def test_model_may_be_omitted_and_then_is_the_default(http: httpx.Client, model_id: str) -> None:
    response = http.post("/v1/chat/completions", json={"messages": FRANCE, "temperature": 0, "max_tokens": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == model_id
    assert body["choices"][0]["message"]["content"].strip()


# --- 2. Streamed == non-streamed at temperature 0 --------------------------------------------------


def test_streamed_chat_matches_non_streamed(client: openai.OpenAI, model_id: str) -> None:
    request: dict[str, Any] = {
        "model": model_id,
        "messages": [{"role": "user", "content": "Tell me about the Eiffel Tower."}],
        "temperature": 0,
        "max_tokens": 40,
    }
    whole = client.chat.completions.create(**request)
    chunks = _stream_chat(client, stream_options={"include_usage": True}, **request)

    assert whole.choices[0].message.content
    assert _chat_text(chunks) == whole.choices[0].message.content
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    assert all(chunk.object == "chat.completion.chunk" and chunk.model == model_id for chunk in chunks)
    first = chunks[0].choices[0]
    assert first.delta.role == "assistant"
    # The usage chunk comes last, with no choices; the one before it carries the finish reason.
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and whole.usage is not None
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [getattr(usage_chunk.usage, name) for name in counts] == [getattr(whole.usage, name) for name in counts]
    # The streamed request repeated the first one's prompt: all of it came from the cache (with the logits
    # it ended with, so the answer is the same).
    details = usage_chunk.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == whole.usage.prompt_tokens
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert with_choices[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(chunk.choices[0].finish_reason is None for chunk in with_choices[:-1])
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_streamed_chat_without_include_usage_has_no_usage_chunk(client: openai.OpenAI, model_id: str) -> None:
    chunks = _stream_chat(client, model=model_id, messages=FRANCE, temperature=0, max_tokens=16)
    assert all(chunk.choices for chunk in chunks), "without include_usage every chunk has a choice"
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert "Paris" in _chat_text(chunks)


def test_streamed_completion_matches_non_streamed(client: openai.OpenAI, model_id: str) -> None:
    request: dict[str, Any] = {"model": model_id, "prompt": ROMAN_PROMPT, "temperature": 0, "max_tokens": 40}
    whole = client.completions.create(**request)
    chunks = _stream_completion(client, stream_options={"include_usage": True}, **request)

    assert whole.object == "text_completion"
    assert whole.model == model_id
    assert whole.choices[0].text.strip()
    assert _completion_text(chunks) == whole.choices[0].text
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None and whole.usage is not None
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [getattr(usage_chunk.usage, name) for name in counts] == [getattr(whole.usage, name) for name in counts]
    # The streamed request repeated the first one's prompt: all of it came from the cache (with the logits
    # it ended with, so the answer is the same).
    details = usage_chunk.usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == whole.usage.prompt_tokens
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert with_choices[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_raw_sse_stream_is_framed_as_openai_does(http: httpx.Client, model_id: str) -> None:
    body = {"model": model_id, "messages": FRANCE, "temperature": 0, "max_tokens": 8, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    payloads = [json.loads(item) for item in data[:-1]]
    assert payloads, "no chunk before [DONE]"
    assert all(payload["object"] == "chat.completion.chunk" for payload in payloads)
    assert payloads[0]["choices"][0]["delta"]["role"] == "assistant"
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")


# --- 3. Stop sequences ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def roman_text(client: openai.OpenAI, model_id: str) -> str:
    """The greedy continuation of ROMAN_PROMPT, without stop sequences."""
    completion = client.completions.create(model=model_id, prompt=ROMAN_PROMPT, temperature=0, max_tokens=40)
    text = completion.choices[0].text
    assert len(text) > 60, text
    return text


def _middle_stop(text: str) -> tuple[str, str]:
    """A 9-character substring from the middle of `text` (crossing a word boundary) and the text before it."""
    middle = len(text) // 2
    start = text.index(" ", middle)  # starts at a word boundary, so it spans several tokens
    stop = text[start : start + 9]
    assert stop.strip(), stop
    prefix = text[: text.index(stop)]
    assert prefix, "the stop sequence must not match at the very start"
    return stop, prefix


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_completion_stops_right_before_the_stop_sequence(
    client: openai.OpenAI, model_id: str, roman_text: str, stream: bool
) -> None:
    stop, prefix = _middle_stop(roman_text)
    request: dict[str, Any] = {
        "model": model_id,
        "prompt": ROMAN_PROMPT,
        "temperature": 0,
        "max_tokens": 40,
        "stop": ["never-produced-zq", stop],
    }
    if stream:
        chunks = _stream_completion(client, **request)
        text = _completion_text(chunks)
        finish = [choice.finish_reason for chunk in chunks for choice in chunk.choices if choice.finish_reason]
        assert finish == ["stop"], finish
    else:
        completion = client.completions.create(**request)
        text = completion.choices[0].text
        assert completion.choices[0].finish_reason == "stop"
    # Exactly the text before the stop: nothing of the stop sequence leaks, not even its first characters.
    assert text == prefix, f"stop={stop!r}\nexpected {prefix!r}\ngot      {text!r}"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_chat_stops_right_before_the_stop_sequence(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    plain = client.chat.completions.create(model=model_id, messages=FRANCE, temperature=0, max_tokens=32)
    answer = plain.choices[0].message.content or ""
    assert " Paris" in answer, answer
    expected = answer[: answer.index(" Paris")]
    request: dict[str, Any] = {
        "model": model_id,
        "messages": FRANCE,
        "temperature": 0,
        "max_tokens": 32,
        "stop": " Paris",
    }
    if stream:
        chunks = _stream_chat(client, **request)
        text = _chat_text(chunks)
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        completion = client.chat.completions.create(**request)
        text = completion.choices[0].message.content or ""
        assert completion.choices[0].finish_reason == "stop"
    assert text == expected
    assert "Par" not in text


# --- 4. max_tokens --------------------------------------------------------------------------------


def test_completion_max_tokens_ends_with_length(client: openai.OpenAI, model_id: str) -> None:
    completion = client.completions.create(model=model_id, prompt=ROMAN_PROMPT, temperature=0, max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].text.strip()


def test_streamed_completion_max_tokens_ends_with_length(client: openai.OpenAI, model_id: str) -> None:
    chunks = _stream_completion(
        client,
        model=model_id,
        prompt=ROMAN_PROMPT,
        temperature=0,
        max_tokens=5,
        stream_options={"include_usage": True},
    )
    with_choices = [chunk for chunk in chunks if chunk.choices]
    assert with_choices[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_completion_default_max_tokens_is_16(client: openai.OpenAI, model_id: str) -> None:
    completion = client.completions.create(model=model_id, prompt=ROMAN_PROMPT, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 16


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_chat_max_tokens_ends_with_length(client: openai.OpenAI, model_id: str, field: str) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Write a long story about a dragon who learns to sing."}
    ]
    if field == "max_tokens":
        completion = client.chat.completions.create(model=model_id, messages=messages, temperature=0, max_tokens=5)
    else:
        completion = client.chat.completions.create(
            model=model_id, messages=messages, temperature=0, max_completion_tokens=5
        )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].message.content


# --- 5. Seeds and n ----------------------------------------------------------------------------------


SEED_PROMPT = "My favourite animal is"


def _sampled(client: openai.OpenAI, model_id: str, seed: int, n: int = 1) -> list[str]:
    completion = client.completions.create(
        model=model_id, prompt=SEED_PROMPT, temperature=0.9, seed=seed, max_tokens=24, n=n
    )
    assert [choice.index for choice in completion.choices] == list(range(n))
    return [choice.text for choice in completion.choices]


def _unrelated_request(client: openai.OpenAI, model_id: str) -> None:
    """A request with another prompt, as other clients of a shared server send between two of ours."""
    client.completions.create(model=model_id, prompt=ROMAN_PROMPT, temperature=0, max_tokens=2)


def test_same_seed_gives_same_sample(client: openai.OpenAI, model_id: str) -> None:
    # Another prompt runs first, so the first seeded run starts from a cache holding a different prompt
    # and the second from a cache holding this very prompt: the seed alone must decide the sample.
    _unrelated_request(client, model_id)
    first = _sampled(client, model_id, seed=42)
    second = _sampled(client, model_id, seed=42)
    assert first[0].strip()
    assert first == second, "the same seed gave two different samples"


@pytest.mark.parametrize(
    "previous_prompt",
    [ROMAN_PROMPT, "My favourite colour is", SEED_PROMPT + " a"],
    ids=["unrelated", "shared-start", "longer"],
)
def test_seeded_sample_does_not_depend_on_the_previous_request(
    client: openai.OpenAI, model_id: str, previous_prompt: str
) -> None:
    """The prompt cache keeps whatever the previous request shared with this one; the sample must not care."""
    _unrelated_request(client, model_id)
    reference = _sampled(client, model_id, seed=5)
    client.completions.create(model=model_id, prompt=previous_prompt, temperature=0, max_tokens=2)
    assert _sampled(client, model_id, seed=5) == reference


def test_different_seeds_give_different_samples(client: openai.OpenAI, model_id: str) -> None:
    first = _sampled(client, model_id, seed=42)
    other = _sampled(client, model_id, seed=7)
    assert other != first, "a different seed should give a different sample at temperature 0.9"


def test_same_seed_gives_same_chat_sample(client: openai.OpenAI, model_id: str) -> None:
    request: dict[str, Any] = {
        "model": model_id,
        "messages": [{"role": "user", "content": "Describe a sunset at the sea."}],
        "temperature": 0.9,
        "seed": 42,
        "max_tokens": 24,
    }
    first = client.chat.completions.create(**request).choices[0].message.content
    second = client.chat.completions.create(**request).choices[0].message.content
    assert first
    assert first == second


def test_n_choices_are_distinct_samples(client: openai.OpenAI, model_id: str) -> None:
    # The n choices decode together in one batch, choice i with seed + i. (A batch's arithmetic differs
    # in low bits from a lone run's, so choice 0 need not equal the n=1 sample, as with llama-server.)
    pair = _sampled(client, model_id, seed=42, n=2)
    assert len(pair) == 2
    assert all(text.strip() for text in pair)
    assert pair[0] != pair[1], "choices with different seeds should differ at temperature 0.9"


def test_chat_n_returns_two_choices(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=FRANCE, temperature=0.9, seed=3, max_tokens=16, n=2
    )
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert all(choice.message.content for choice in completion.choices)
    assert completion.usage is not None
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
