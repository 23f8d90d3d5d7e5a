"""Continuous batching on the live server: concurrent streams, the bounded queue, a crashing worker,
constrained JSON output, log-probabilities and embeddings, all through the official `openai` SDK."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.checks import END_TOKEN_BIAS, engine_stats, make_client
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

COUNTING = {"temperature": 0, "extra_body": {"repeat_penalty": 1.0}}


def counting_prompt(start: int) -> str:
    """A prompt whose greedy continuation is checkable: the next number of a counting sequence."""
    return ", ".join(str(number) for number in range(start, start + 6)) + ","


def test_sixteen_concurrent_streams_each_get_their_own_answer(client: openai.OpenAI, model_id: str) -> None:
    starts = [10 * index + 3 for index in range(16)]
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(start: int) -> None:
        try:
            stream = client.completions.create(
                model=model_id, prompt=counting_prompt(start), max_tokens=6, stream=True, **COUNTING
            )
            results[start] = "".join(chunk.choices[0].text for chunk in stream if chunk.choices)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(start,)) for start in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for start in starts:
        # Each answer continues its own sequence: nothing leaked in from another stream.
        assert results[start].strip().startswith(str(start + 6)), (start, results[start])
    alone = client.completions.create(model=model_id, prompt=counting_prompt(starts[5]), max_tokens=6, **COUNTING)
    assert alone.choices[0].text == results[starts[5]]  # same greedy text alone as in a batch of 16


def test_n_choices_are_generated_together(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Name a colour."}], n=4, seed=7, max_tokens=8
    )
    assert [choice.index for choice in completion.choices] == [0, 1, 2, 3]
    assert all(choice.message.content for choice in completion.choices)


@pytest.fixture(scope="module")
def one_slot_server(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """One sequence and room for one waiting request: the third concurrent request overflows."""
    with server_factory("one-slot", {"PENSIEVE_PARALLEL": "1", "PENSIEVE_MAX_QUEUE": "1"}) as handle:
        yield handle


def _long_stream(server: ServerHandle, started: threading.Event, stop: threading.Event) -> None:
    body = {
        "model": server.model_id,
        "prompt": "Once upon a time",
        "max_tokens": 400,
        "stream": True,
        "logit_bias": END_TOKEN_BIAS,
    }
    with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, timeout=120) as response:
        for _ in response.iter_lines():
            started.set()
            if stop.is_set():
                return


def test_full_queue_is_429_with_retry_after_at_once(one_slot_server: ServerHandle) -> None:
    stop = threading.Event()
    firsts = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=_long_stream, args=(one_slot_server, first, stop)) for first in firsts]
    try:
        threads[0].start()
        assert firsts[0].wait(30)
        threads[1].start()  # waits in the queue behind the first
        time.sleep(0.5)
        started = time.monotonic()
        response = httpx.post(
            f"{one_slot_server.base_url}/v1/completions",
            json={"model": one_slot_server.model_id, "prompt": "Hi", "max_tokens": 4},
            timeout=30,
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(response.headers["retry-after"]) >= 1
        assert elapsed < 1.0  # refused at once, never a hang
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)


def test_killed_worker_gives_a_clean_error_and_the_next_request_works(
    server_factory: ServerFactory,
) -> None:
    with server_factory("crash", {}) as server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        pid = int(engine_stats(http, server.model_id)["extra"]["worker_pid"])
        body = {"model": server.model_id, "prompt": "Once", "max_tokens": 300, "stream": True}
        body["logit_bias"] = END_TOKEN_BIAS
        lines: list[str] = []
        with http.stream("POST", "/v1/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line)
                    if len(lines) == 3:
                        os.kill(pid, signal.SIGKILL)
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: "))["error"]
        assert "stopped unexpectedly" in error["message"]
        sdk = make_client(server.base_url)
        answer = sdk.completions.create(model=server.model_id, prompt="The sky is", max_tokens=4)
        assert answer.choices[0].text
        new_pid = int(engine_stats(http, server.model_id)["extra"]["worker_pid"])
        assert new_pid != pid
        sdk.close()


def test_json_schema_output_parses_and_follows_the_schema(client: openai.OpenAI, model_id: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Give the biggest city of France and its population as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        max_tokens=80,
        temperature=0,
    )
    data = json.loads(completion.choices[0].message.content or "")
    assert set(data) == {"city", "population"}
    assert isinstance(data["city"], str) and isinstance(data["population"], int)


def test_json_object_mode_gives_json(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Describe a cat as a JSON object."}],
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_bad_schema_is_a_400(http: httpx.Client, model_id: str) -> None:
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/nowhere"}}},
    }
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "response_format"


def _check_token_logprobs(entries: list[Any], top: int) -> None:
    for entry in entries:
        assert entry.logprob <= 0.0 and math.isfinite(entry.logprob)
        assert len(entry.top_logprobs) == top
        best = entry.top_logprobs[0].logprob
        assert entry.logprob <= best + 1e-4  # nothing beats the likeliest alternative


def test_chat_logprobs_are_consistent_with_the_text(client: openai.OpenAI, model_id: str) -> None:
    question: dict[str, Any] = {
        "model": model_id,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "logprobs": True,
        "top_logprobs": 3,
        "max_tokens": 12,
        "temperature": 0,
    }
    completion = client.chat.completions.create(**question)
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert "".join(entry.token for entry in choice.logprobs.content) == choice.message.content
    _check_token_logprobs(choice.logprobs.content, 3)
    stream = client.chat.completions.create(**question, stream=True)
    streamed = [
        e
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for e in chunk.choices[0].logprobs.content or []
    ]
    assert [e.token for e in streamed] == [e.token for e in choice.logprobs.content]


def test_completion_logprobs_have_offsets(client: openai.OpenAI, model_id: str) -> None:
    completion = client.completions.create(
        model=model_id, prompt="The capital of France is", max_tokens=6, logprobs=2, temperature=0
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None
    tokens = choice.logprobs.tokens or []
    assert "".join(tokens) == choice.text
    offsets = choice.logprobs.text_offset or []
    assert offsets[0] == 0 and offsets == sorted(offsets)
    assert all(len(alternatives) == 2 for alternatives in choice.logprobs.top_logprobs or [])


def test_embeddings_have_the_right_shape(client: openai.OpenAI, model_id: str) -> None:
    texts = ["The cat sat on the mat.", "A feline rested on the rug.", "Quarterly revenue grew by 4%."]
    result = client.embeddings.create(model=model_id, input=texts)  # the SDK asks for base64 and decodes it
    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert len({len(vector) for vector in vectors}) == 1 and len(vectors[0]) >= 64
    for vector in vectors:
        assert math.isclose(sum(x * x for x in vector), 1.0, rel_tol=1e-3)
    again = client.embeddings.create(model="auto", input=texts[0], encoding_format="float")
    assert again.data[0].embedding == pytest.approx(vectors[0], abs=1e-5)
    assert result.usage.prompt_tokens > 0

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_empty_embedding_input_is_a_400_naming_input(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=model_id, input=["fine", ""])
    assert caught.value.body is not None and caught.value.body.get("param") == "input"  # type: ignore[union-attr]


def test_prompt_cache_hits_are_reported_and_cache_prompt_false_computes_the_prompt_in_full(
    client: openai.OpenAI, model_id: str
) -> None:
    request: dict[str, Any] = {"model": model_id, "prompt": "The history of Rome", "max_tokens": 8, "temperature": 0}
    without_cache = {**request, "extra_body": {"cache_prompt": False}}

    def cached_tokens(completion: openai.types.Completion) -> int:
        assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
        return completion.usage.prompt_tokens_details.cached_tokens or 0

    first = client.completions.create(**without_cache)
    assert cached_tokens(first) == 0 and first.choices[0].text
    hit = client.completions.create(**request)  # the same prompt again: all of it comes from the cache
    assert hit.usage is not None and cached_tokens(hit) == hit.usage.prompt_tokens
    assert hit.choices[0].text == first.choices[0].text  # sampled from the logits the first one ended with
    again = client.completions.create(**without_cache)
    assert cached_tokens(again) == 0 and again.choices[0].text
    # Reported also when the server, not the model, ends the answer (a stop sequence at the first token).
    stopped: dict[str, Any] = {"model": model_id, "prompt": counting_prompt(3), "max_tokens": 8, "stop": [" 9"]}
    client.completions.create(**stopped, **COUNTING)
    repeat = client.completions.create(**stopped, **COUNTING)
    assert repeat.choices[0].finish_reason == "stop" and repeat.usage is not None
    assert cached_tokens(repeat) == repeat.usage.prompt_tokens


def test_a_large_embeddings_request_does_not_stall_a_running_stream(client: openai.OpenAI, model_id: str) -> None:
    documents = [
        f"Report {index}: " + "The committee reviewed the figures and approved the budget. " * 6 for index in range(12)
    ]
    alone = client.embeddings.create(model=model_id, input=documents[:2], encoding_format="float")
    stream = client.completions.create(
        model=model_id,
        prompt="Once upon a time",
        max_tokens=2000,
        temperature=0,
        stream=True,
        logit_bias=END_TOKEN_BIAS,  # type: ignore[arg-type]
    )
    arrivals: list[float] = []
    stop = threading.Event()

    def read_stream() -> None:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                arrivals.append(time.monotonic())
            if stop.is_set():
                break
        stream.close()

    reader = threading.Thread(target=read_stream)
    reader.start()
    try:
        while not arrivals:  # the stream is decoding
            time.sleep(0.01)
        started = time.monotonic()
        result = client.embeddings.create(model=model_id, input=documents, encoding_format="float")
        finished = time.monotonic()
    finally:
        stop.set()
        reader.join(60)
    # Computed a piece at a time between decode steps, half the worker's time each: the stream kept going.
    assert sum(started <= moment <= finished for moment in arrivals) >= 20
    assert len(result.data) == len(documents)
    # Fixed-size pieces: the same text gives the same vector with or without a stream beside it.
    for index in range(2):
        assert result.data[index].embedding == pytest.approx(alone.data[index].embedding, abs=1e-6)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_short_embeddings_request_is_not_stuck_behind_a_long_one_and_an_abandoned_one_stops(
    server: ServerHandle, http: httpx.Client, model_id: str
) -> None:
    filler = "The committee reviewed the figures and approved the budget. " * 8
    documents = [f"Minutes {index}: {filler}" for index in range(150)]  # ~55 s of work on 2 cores
    body = {"model": model_id, "input": documents, "encoding_format": "float"}
    gave_up: list[BaseException] = []

    def long_request() -> None:
        try:
            httpx.post(f"{server.base_url}/v1/embeddings", json=body, timeout=4)  # the client gives up
        except httpx.TimeoutException as exc:
            gave_up.append(exc)

    quick = make_client(server.base_url, timeout=30)
    long_client = threading.Thread(target=long_request)
    long_client.start()
    time.sleep(0.5)
    # Requests take turns input by input: the short one is answered while the long one is still running.
    assert len(quick.embeddings.create(model=model_id, input=["A short note."]).data) == 1
    assert long_client.is_alive()
    long_client.join(30)
    assert gave_up
    # The abandoned request was dropped: the worker goes idle instead of embedding ~50 s for nobody.
    pid = int(engine_stats(http, model_id)["extra"]["worker_pid"])
    time.sleep(1.5)  # the cancel is taken between two pieces (~0.45 s each here)
    before = cpu_seconds(pid)
    time.sleep(1.0)
    assert cpu_seconds(pid) - before < 0.5  # still embedding, it would burn ~2 CPU seconds a second
