"""CloudEngine against the fake cloud (a real HTTP server on loopback): streaming, usage, errors, breaker.

No local model is needed: these run in a second each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from pydantic import SecretStr

from pensieve.cloud.circuit import CircuitBreaker
from pensieve.cloud.engine import CloudEngine
from pensieve.cloud.providers import CloudModel, ProviderConfig
from pensieve.engine_api import ChatMessage, GenerationChunk, GenerationRequest, SamplingParams
from pensieve.errors import CloudError, CloudUnavailableError, InvalidRequestError
from support.fake_cloud import ALTERNATIVE, ECHO_LOGPROB, FakeCloud

KEY = "sk-cloud-engine-test-0001"


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(api_key=KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _reset(cloud: FakeCloud) -> None:
    cloud.reset()


def engine_for(cloud: FakeCloud, *, key: str = KEY, failures: int = 2, first_token: float = 1.0) -> CloudEngine:
    provider = ProviderConfig(
        name="fake",
        base_url=cloud.base_url,
        api_key=SecretStr(key),
        models=(CloudModel("big-model", 1000, 2000, 8192),),
        timeout_seconds=5,
        first_token_timeout_seconds=first_token,
    )
    return CloudEngine(provider, provider.models[0], CircuitBreaker(failures, 1.0))


def chat_request(text: str, **params: object) -> GenerationRequest:
    return GenerationRequest(
        model="big-model",
        params=SamplingParams(temperature=0, **params),  # type: ignore[arg-type]
        messages=(ChatMessage("system", "Be brief."), ChatMessage("developer", "Echo."), ChatMessage("user", text)),
    )


async def collect(engine: CloudEngine, request: GenerationRequest) -> list[GenerationChunk]:
    async with aclosing(engine.generate(request)) as chunks:
        return [chunk async for chunk in chunks]


def test_chat_streams_text_and_reports_provider_usage(cloud: FakeCloud) -> None:
    engine = engine_for(cloud)
    chunks = asyncio.run(collect(engine, chat_request("one two three", max_tokens=5, stop=["zz"], seed=3)))
    text = "".join(chunk.text for chunk in chunks)
    assert text == "Echo: one two three"
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.usage is not None
    assert last.usage.completion_tokens == 5  # ceil(19 / 4), as the fake counts
    assert all(chunk.finish_reason is None for chunk in chunks[:-1])
    sent = cloud.requests[0]
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    body = sent["body"]
    assert body["model"] == "big-model" and body["stream"] is True and body["max_tokens"] == 5
    assert body["stop"] == ["zz"] and body["seed"] == 3
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user"]  # developer -> system
    assert "top_k" not in body and "min_p" not in body  # local-only knobs stay home
    assert engine.stats().requests_served == 1


def test_text_completion(cloud: FakeCloud) -> None:
    request = GenerationRequest(model="big-model", params=SamplingParams(), prompt="Once upon a time")
    chunks = asyncio.run(collect(engine_for(cloud), request))
    assert "".join(chunk.text for chunk in chunks) == "Echo: Once upon a time"
    assert cloud.requests[0]["path"] == "/v1/completions"


def test_chat_logprobs_are_asked_for_and_passed_through(cloud: FakeCloud) -> None:
    chunks = asyncio.run(collect(engine_for(cloud), chat_request("one two", logprobs=True, top_logprobs=2)))
    body = cloud.requests[0]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    texts = [chunk for chunk in chunks if chunk.text]
    assert all(len(chunk.logprobs) == 1 and chunk.logprobs[0].token == chunk.text for chunk in texts)
    first = texts[0].logprobs[0]
    assert first.logprob == ECHO_LOGPROB and first.bytes == tuple(texts[0].text.encode())
    assert [(token, logprob) for token, logprob, _ in first.top] == [(texts[0].text, ECHO_LOGPROB), ALTERNATIVE]
    assert chunks[-1].mean_logprob == ECHO_LOGPROB


def test_completion_logprobs_are_asked_for_and_passed_through(cloud: FakeCloud) -> None:
    params = SamplingParams(logprobs=True, top_logprobs=1)
    request = GenerationRequest(model="big-model", params=params, prompt="Once upon")
    chunks = asyncio.run(collect(engine_for(cloud), request))
    assert cloud.requests[0]["body"]["logprobs"] == 1
    tokens = [token for chunk in chunks for token in chunk.logprobs]
    assert "".join(token.token for token in tokens) == "Echo: Once upon"
    assert all(token.logprob == ECHO_LOGPROB and len(token.top) == 1 for token in tokens)


def test_no_logprobs_unless_asked(cloud: FakeCloud) -> None:
    chunks = asyncio.run(collect(engine_for(cloud), chat_request("one two")))
    assert "logprobs" not in cloud.requests[0]["body"]
    assert all(not chunk.logprobs for chunk in chunks) and chunks[-1].mean_logprob is None


def test_token_id_prompts_stay_local(cloud: FakeCloud) -> None:
    request = GenerationRequest(model="big-model", params=SamplingParams(), prompt=(1, 2, 3))
    with pytest.raises(InvalidRequestError):
        asyncio.run(collect(engine_for(cloud), request))
    assert cloud.requests == []


def test_server_errors_are_retryable_and_open_the_circuit(cloud: FakeCloud) -> None:
    cloud.set_fault(status=500, times=2)

    async def scenario() -> None:
        # One event loop for the whole scenario: the engine's connection pool belongs to it.
        engine = engine_for(cloud, failures=2)
        for _ in range(2):
            with pytest.raises(CloudError) as caught:
                await collect(engine, chat_request("hi"))
            assert caught.value.retryable and "HTTP 500" in caught.value.message
        assert engine.breaker.state == "open"
        with pytest.raises(CloudUnavailableError, match="circuit breaker is open"):
            await collect(engine, chat_request("hi"))
        await engine.close()

    asyncio.run(scenario())
    assert len(cloud.requests) == 2  # the open circuit sent nothing


def test_rate_limit_carries_retry_after(cloud: FakeCloud) -> None:
    engine = engine_for(cloud, failures=5)
    cloud.set_fault(rate_limit_retry_after=7, times=1)
    with pytest.raises(CloudUnavailableError) as caught:
        asyncio.run(collect(engine, chat_request("hi")))
    assert caught.value.retry_after_seconds == 7 and caught.value.headers["retry-after"] == "7"
    assert engine.breaker.state == "open" and engine.breaker.retry_in_seconds() > 6


def test_rejected_request_is_not_retryable_and_not_a_provider_failure(cloud: FakeCloud) -> None:
    engine = engine_for(cloud, failures=1)
    cloud.set_fault(status=400, times=1)
    with pytest.raises(CloudError) as caught:
        asyncio.run(collect(engine, chat_request("hi")))
    assert not caught.value.retryable and caught.value.status_code == 400
    assert engine.breaker.state == "closed"


def test_wrong_key_fails_without_leaking_it(cloud: FakeCloud) -> None:
    with pytest.raises(CloudError) as caught:
        asyncio.run(collect(engine_for(cloud, key="sk-wrong-key-123456789"), chat_request("hi")))
    assert "401" in caught.value.message and "sk-wrong" not in caught.value.message


def test_first_token_timeout(cloud: FakeCloud) -> None:
    engine = engine_for(cloud, first_token=0.5)
    cloud.set_fault(hang=True, times=1)
    started = time.monotonic()
    with pytest.raises(CloudUnavailableError, match="timed out"):
        asyncio.run(collect(engine, chat_request("hi")))
    assert time.monotonic() - started < 3
    assert engine.breaker.snapshot()["last_error"] == "timed out"


def test_connection_dropped_mid_stream_raises_after_text(cloud: FakeCloud) -> None:
    engine = engine_for(cloud)
    cloud.set_fault(drop_after_chunks=2, times=1)
    received: list[str] = []

    async def run() -> None:
        async with aclosing(engine.generate(chat_request("one two three four five"))) as chunks:
            async for chunk in chunks:
                received.append(chunk.text)

    with pytest.raises(CloudUnavailableError, match="mid-stream"):
        asyncio.run(run())
    assert received  # text had been streamed before the drop
    assert engine.breaker.snapshot()["consecutive_failures"] == 1


def test_unreachable_provider(cloud: FakeCloud) -> None:
    provider = ProviderConfig("down", "http://127.0.0.1:9/v1", None, (CloudModel("m"),), 2, 1)
    engine = CloudEngine(provider, provider.models[0], CircuitBreaker(3, 1))
    with pytest.raises(CloudUnavailableError, match="could not be reached"):
        asyncio.run(collect(engine, chat_request("hi")))


def test_closing_early_frees_a_half_open_probe(cloud: FakeCloud) -> None:
    engine = engine_for(cloud, failures=1)
    engine.breaker.record_failure("x")
    engine.breaker._open_until = 0.0  # the cool-down is over: half-open

    async def first_chunk_then_leave() -> None:
        async with aclosing(engine.generate(chat_request("one two three four"))) as chunks:
            await anext(chunks)

    asyncio.run(first_chunk_then_leave())
    assert engine.breaker.would_allow()  # the slot came back; the circuit did not stick half-open
