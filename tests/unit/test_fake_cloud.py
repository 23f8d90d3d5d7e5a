"""The fake cloud itself (tests/support/fake_cloud/), checked with the official openai SDK and httpx."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from support.fake_cloud import FakeCloud, word_pieces

KEY = "sk-fake-unit-1234"
HELLO = "Say hello."


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCloud]:
    """One fake cloud for the module."""
    cloud = FakeCloud(api_key=KEY)
    cloud.start()
    yield cloud
    cloud.stop()


@pytest.fixture(autouse=True)
def _fresh(fake: FakeCloud) -> None:
    fake.reset()


@pytest.fixture
def client(fake: FakeCloud) -> Iterator[openai.OpenAI]:
    """The official SDK on the fake, without retries."""
    sdk = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5)
    yield sdk
    sdk.close()


def hello(client: openai.OpenAI, **extra: Any) -> str:
    """The answer text of a one-message chat completion."""
    completion = client.chat.completions.create(
        model="big-model", messages=[{"role": "user", "content": HELLO}], **extra
    )
    return completion.choices[0].message.content or ""


def sse_lines(fake: FakeCloud, body: dict[str, Any]) -> list[str]:
    """The `data:` lines of a streamed request made with httpx (the stream must end cleanly)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{fake.base_url}/chat/completions", json=body, headers=headers, timeout=5) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line for line in response.iter_lines() if line.startswith("data: ")]


def test_word_pieces_keep_every_space() -> None:
    for text in ("Echo: Say hello.", "  two  spaces ", "", "one\nline"):
        assert "".join(word_pieces(text)) == text
    assert word_pieces("Echo: Say hello.") == ["Echo: ", "Say ", "hello."]


def test_non_streamed_chat_echoes_with_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="big-model", messages=[{"role": "user", "content": HELLO}], max_tokens=1
    )
    assert completion.object == "chat.completion"
    assert completion.model == "big-model"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == f"Echo: {HELLO}"  # max_tokens is ignored on purpose
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 4)
    assert completion.usage.total_tokens == 14


def test_echo_uses_the_last_user_message_and_content_parts(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="other-model",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "part"}]},
        ],
    )
    assert completion.choices[0].message.content == "Echo: second part"
    assert completion.model == "other-model"


def test_streamed_chat_reassembles_exactly_with_a_usage_chunk(client: openai.OpenAI) -> None:
    text = "one two  three, four."
    stream = client.chat.completions.create(
        model="big-model",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [choice.delta.content or "" for chunk in chunks for choice in chunk.choices]
    assert "".join(pieces) == f"Echo: {text}"
    assert len([piece for piece in pieces if piece]) == 5
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7


def test_streamed_chat_ends_with_done_and_no_usage_unless_asked(fake: FakeCloud) -> None:
    lines = sse_lines(fake, {"model": "big-model", "messages": [{"role": "user", "content": HELLO}], "stream": True})
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all(event["object"] == "chat.completion.chunk" and event["choices"] for event in events)
    assert "".join(event["choices"][0]["delta"].get("content", "") for event in events) == f"Echo: {HELLO}"


def test_legacy_completions_echo_streamed_or_not(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="big-model", prompt=["Once upon", "ignored"])
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Echo: Once upon"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    stream = client.completions.create(model="big-model", prompt="a b c", stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == "Echo: a b c"


def test_a_responder_answers_instead_of_the_echo_on_both_endpoints() -> None:
    seen: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> str:
        seen.append(body)
        return " Paris."

    with FakeCloud(api_key=KEY, responder=responder) as oracle:
        sdk = openai.OpenAI(base_url=oracle.base_url, api_key=KEY, max_retries=0, timeout=5)
        assert hello(sdk) == " Paris."
        completion = sdk.completions.create(model="big-model", prompt="The capital of France is")
        assert completion.choices[0].text == " Paris."
        assert completion.usage is not None and completion.usage.completion_tokens == 2
        stream = sdk.completions.create(model="big-model", prompt="The capital of France is", stream=True)
        assert "".join(chunk.choices[0].text for chunk in stream) == " Paris."
        sdk.close()
    assert [body.get("prompt") for body in seen] == [None, "The capital of France is", "The capital of France is"]
    assert oracle.billed_tokens()[1] == 6


def test_models_list(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    assert [(model.id, model.owned_by) for model in models] == [("big-model", "fake")]
    assert client.models.retrieve("big-model").id == "big-model"


def test_wrong_key_gets_401_in_openai_shape(fake: FakeCloud) -> None:
    sdk = openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0, timeout=5)
    with pytest.raises(openai.AuthenticationError) as caught:
        hello(sdk)
    sdk.close()
    assert caught.value.status_code == 401
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "invalid_api_key"
    assert len(fake.requests) == 1  # recorded all the same
    assert httpx.get(f"{fake.base_url}/models", timeout=5).status_code == 401


def test_any_key_is_accepted_without_a_configured_key() -> None:
    with FakeCloud(api_key=None) as open_cloud:
        sdk = openai.OpenAI(base_url=open_cloud.base_url, api_key="anything", max_retries=0, timeout=5)
        assert hello(sdk) == f"Echo: {HELLO}"
        sdk.close()


def test_malformed_json_and_unknown_path(fake: FakeCloud) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = httpx.post(f"{fake.base_url}/chat/completions", content=b"{not json", headers=headers, timeout=5)
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}
    missing = httpx.post(f"{fake.base_url}/embeddings", json={}, headers=headers, timeout=5)
    assert missing.status_code == 404 and "error" in missing.json()


def test_status_fault_then_normal(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(status=500, times=1)
    with pytest.raises(openai.InternalServerError) as caught:
        hello(client)
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "server_error"
    assert hello(client) == f"Echo: {HELLO}"
    assert len(fake.requests) == 2


def test_faults_are_consumed_in_order(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(status=503, times=2)
    fake.set_fault(status=400)
    for expected in (openai.InternalServerError, openai.InternalServerError, openai.BadRequestError):
        with pytest.raises(expected):
            hello(client)
    assert hello(client) == f"Echo: {HELLO}"


def test_rate_limit_carries_retry_after(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(rate_limit_retry_after=3, times=1)
    with pytest.raises(openai.RateLimitError) as caught:
        hello(client)
    assert caught.value.response.headers["retry-after"] == "3"
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "rate_limit_exceeded"


def test_latency_delays_then_answers(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(latency=0.2)
    started = time.monotonic()
    assert hello(client) == f"Echo: {HELLO}"
    assert time.monotonic() - started >= 0.2


def test_drop_after_chunks_breaks_the_sdk_stream(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(drop_after_chunks=2)
    received: list[str] = []
    stream = client.chat.completions.create(
        model="big-model", messages=[{"role": "user", "content": "one two three four five six"}], stream=True
    )
    with pytest.raises((openai.APIError, httpx.HTTPError)):
        for chunk in stream:
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert "".join(received) == "Echo: one "  # the role chunk, then exactly two content chunks
    assert hello(client) == f"Echo: {HELLO}"  # the next request is served normally


def test_drop_on_a_non_streamed_request_closes_without_an_answer(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(drop_after_chunks=0)
    with pytest.raises(openai.APIConnectionError):
        hello(client)
    assert len(fake.requests) == 1


def test_hang_times_the_client_out_and_reset_wakes_it(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(hang=True)
    with pytest.raises(openai.APITimeoutError):
        hello(client, timeout=0.3)
    fake.reset()
    # A second hang, woken by reset() while a patient client waits: the request ends at once.
    fake.set_fault(hang=True)
    errors: list[BaseException] = []

    def patient() -> None:
        try:
            hello(client, timeout=10)
        except openai.APIError as error:
            errors.append(error)

    waiter = threading.Thread(target=patient)
    started = time.monotonic()
    waiter.start()
    time.sleep(0.2)
    assert hello(client) == f"Echo: {HELLO}"  # a hanging request does not block the others
    fake.reset()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and time.monotonic() - started < 3
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_a_burst_of_concurrent_clients_is_served_around_hanging_ones(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(hang=True, times=2)

    def one(index: int) -> str:
        try:
            completion = client.chat.completions.create(
                model="big-model", messages=[{"role": "user", "content": f"n{index}"}], timeout=0.5
            )
        except openai.APITimeoutError:
            return "timeout"
        return completion.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(one, range(40)))
    assert answers.count("timeout") == 2
    assert {answer for answer in answers if answer != "timeout"} <= {f"Echo: n{index}" for index in range(40)}
    assert len(fake.requests) == 40


def test_requests_log_records_paths_headers_and_bodies(client: openai.OpenAI, fake: FakeCloud) -> None:
    fake.set_fault(status=502)
    with pytest.raises(openai.InternalServerError):
        hello(client, temperature=0)
    client.completions.create(model="big-model", prompt="hi")
    client.models.list()  # not a generation endpoint: not recorded
    log = fake.requests
    assert [entry["path"] for entry in log] == ["/v1/chat/completions", "/v1/completions"]
    assert log[0]["body"] == {"model": "big-model", "messages": [{"role": "user", "content": HELLO}], "temperature": 0}
    assert log[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert log[0]["headers"]["content-type"] == "application/json"
    fake.reset()
    assert fake.requests == []


def test_start_and_stop_are_idempotent() -> None:
    cloud = FakeCloud(api_key=KEY)
    cloud.start()
    url = cloud.base_url
    cloud.start()
    assert cloud.base_url == url and url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    cloud.set_fault(hang=True)
    hung: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(f"{url}/chat/completions", json={}, timeout=10)
        except httpx.HTTPError as error:
            hung.append(error)

    waiter = threading.Thread(target=call)
    waiter.start()
    time.sleep(0.1)
    cloud.stop()  # wakes the hanging handler
    cloud.stop()
    waiter.join(timeout=5)
    assert not waiter.is_alive() and len(hung) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=1)
