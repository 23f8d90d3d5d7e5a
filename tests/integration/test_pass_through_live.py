"""Faithful pass-through to the cloud (issue #17, part 2): a real Pensieve server, the real local model, FakeCloud.

- a cloud stream that ends cleanly but early (no finish_reason, no [DONE]) is an error, not an answer:
  an error event then [DONE] when streamed, a 502 `cloud_stream_incomplete` when not; the circuit breaker
  counts it, the ledger keeps what was billed; before any text it is retryable (the local model answers);
- the provider's finish_reason reaches the client unchanged;
- only the sampling fields the client set reach the provider, with exactly the client's values;
- llama.cpp's `grammar` never reaches a cloud (auto keeps it local, a cloud model refuses it), while a
  `json_schema` travels as OpenAI's response_format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from support.checks import ADMIN_HEADERS, make_client
from support.fake_cloud import FakeCloud
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

CLOUD_KEY = "sk-fake-pass-through-0017"
CLOUD_MODEL = "fake/big-model"
TEXT = "one two three four five six"
# Scores as complex: `auto` sends it to the cloud (the grammar test needs a request that would burst).
COMPLEX = (
    "Step by step, prove that the sum of the first n odd numbers is n^2, then write a Python function "
    "`def check(n: int) -> bool:` that verifies it for n up to 1000, compare its complexity with a closed "
    "form, explain why the induction works, and analyse the trade-offs of both approaches. "
    "Solve for x: 3x^2 + 2x - 5 = 0 and derive the integral of x^2 from 0 to 1."
)
SAMPLING_KEYS = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "max_tokens", "stop")


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud shared by the module (reset before each test)."""
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(server_factory: ServerFactory, cloud: FakeCloud) -> Iterator[ServerHandle]:
    """A server bursting to the fake cloud; 5 failures open the circuit (the tests count them one by one)."""
    env = cloud.provider_env(
        PENSIEVE_CLOUD_PRICE_INPUT="1000",
        PENSIEVE_CLOUD_PRICE_OUTPUT="2000",
        PENSIEVE_CLOUD_TIMEOUT_SECONDS="5",
        PENSIEVE_CLOUD_FIRST_TOKEN_TIMEOUT_SECONDS="3",
        PENSIEVE_CLOUD_CIRCUIT_FAILURES="5",
        PENSIEVE_BUDGET_DAILY_USD="1000",
        PENSIEVE_BUDGET_MONTHLY_USD="1000",
    )
    with server_factory("pass-through", env) as handle:
        yield handle


@pytest.fixture
def http(server: ServerHandle, cloud: FakeCloud) -> Iterator[httpx.Client]:
    """A raw client; every test starts with a fresh fake cloud and a closed circuit."""
    cloud.reset()
    with httpx.Client(base_url=server.base_url, timeout=120.0) as client:
        reset = client.post("/api/burst/circuits/reset", headers=ADMIN_HEADERS)
        assert reset.status_code == 200, reset.text
        yield client


@pytest.fixture
def sdk(server: ServerHandle) -> Iterator[openai.OpenAI]:
    """The official SDK on the server."""
    client = make_client(server.base_url)
    yield client
    client.close()


def stats(http: httpx.Client) -> dict[str, Any]:
    """GET /api/burst/stats."""
    response = http.get("/api/burst/stats", params={"recent": 20})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def circuit(http: httpx.Client) -> dict[str, Any]:
    """The fake provider's circuit breaker as the stats show it."""
    (provider,) = stats(http)["providers"]
    breaker: dict[str, Any] = provider["circuit"]
    return breaker


def sse(http: httpx.Client, path: str, body: dict[str, Any], **headers: str) -> tuple[list[dict[str, Any]], str]:
    """(the JSON events, the last data line) of a streamed request."""
    with http.stream("POST", path, json={**body, "stream": True}, headers=headers) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines[:-1]], lines[-1]


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": CLOUD_MODEL, "messages": [{"role": "user", "content": TEXT}], **fields}


# --- a stream cut short is an error -------------------------------------------------------------------------


def test_an_early_end_when_streamed_is_an_error_event_then_done(http: httpx.Client, cloud: FakeCloud) -> None:
    tokens_before = stats(http)["tokens"]
    cloud.set_fault(end_after_chunks=2)
    events, last = sse(http, "/v1/chat/completions", chat_body())
    assert last == "[DONE]"
    error = events[-1]["error"]
    assert error["code"] == "cloud_stream_incomplete" and error["type"] == "server_error"
    text = "".join(choice["delta"].get("content") or "" for event in events[:-1] for choice in event["choices"])
    assert text == "Echo: one "  # what came before the cut, and no finish_reason was invented for it
    assert all(choice["finish_reason"] is None for event in events[:-1] for choice in event["choices"])
    breaker = circuit(http)
    assert breaker["consecutive_failures"] == 1 and "ended its stream" in breaker["last_error"]
    # What the provider billed for the cut stream is in the ledger (the runner's billed record).
    (bill,) = cloud.bills
    after = stats(http)["tokens"]
    assert after["cloud_prompt_tokens"] - tokens_before["cloud_prompt_tokens"] == bill["prompt_tokens"]
    assert after["cloud_completion_tokens"] - tokens_before["cloud_completion_tokens"] == bill["completion_tokens"]


def test_an_early_end_when_not_streamed_is_a_502(http: httpx.Client, cloud: FakeCloud) -> None:
    cloud.set_fault(end_after_chunks=3)  # the server always streams from the provider
    response = http.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("cloud_stream_incomplete", "server_error", None)
    assert circuit(http)["consecutive_failures"] == 1


def test_an_early_end_of_a_text_completion_is_a_502(http: httpx.Client, cloud: FakeCloud) -> None:
    cloud.set_fault(end_after_chunks=1)
    response = http.post("/v1/completions", json={"model": CLOUD_MODEL, "prompt": TEXT})
    assert response.status_code == 502 and response.json()["error"]["code"] == "cloud_stream_incomplete"


def test_an_end_before_any_text_falls_back_to_local(http: httpx.Client, cloud: FakeCloud) -> None:
    cloud.set_fault(end_after_chunks=0)  # only the role chunk, then a clean end
    body = {"model": "auto", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
    response = http.post("/v1/chat/completions", json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 200, response.text
    assert (response.headers["x-pensieve-route"], response.headers["x-pensieve-reason"]) == ("local", "cloud_failure")
    assert circuit(http)["consecutive_failures"] == 1


def test_repeated_early_ends_open_the_circuit(http: httpx.Client, cloud: FakeCloud) -> None:
    cloud.set_fault(end_after_chunks=2, times=5)
    for _ in range(5):
        assert http.post("/v1/chat/completions", json=chat_body()).status_code == 502
    assert circuit(http)["state"] == "open"


# --- finish reasons --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["content_filter", "tool_calls", "length", "function_call"])
def test_the_providers_finish_reason_reaches_the_client(http: httpx.Client, cloud: FakeCloud, reason: str) -> None:
    cloud.set_fault(finish_reason=reason)
    response = http.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200 and response.json()["choices"][0]["finish_reason"] == reason
    cloud.set_fault(finish_reason=reason)
    events, last = sse(http, "/v1/chat/completions", chat_body())
    reasons = [choice["finish_reason"] for event in events for choice in event["choices"] if choice["finish_reason"]]
    assert last == "[DONE]" and reasons == [reason]


def test_a_text_completions_content_filter_is_kept(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    cloud.reset()
    cloud.set_fault(finish_reason="content_filter")
    completion = sdk.completions.create(model=CLOUD_MODEL, prompt=TEXT)
    assert completion.choices[0].finish_reason == "content_filter"


# --- only what the client set -------------------------------------------------------------------------------


def test_no_sampling_field_is_invented(http: httpx.Client, sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    sdk.chat.completions.create(model=CLOUD_MODEL, messages=[{"role": "user", "content": TEXT}])
    sdk.completions.create(model=CLOUD_MODEL, prompt=TEXT)
    for entry in cloud.requests:
        assert not {key for key in SAMPLING_KEYS if key in entry["body"]}, entry["body"]


def test_exactly_the_clients_values_are_forwarded(http: httpx.Client, sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    sdk.chat.completions.create(
        model=CLOUD_MODEL,
        messages=[{"role": "user", "content": TEXT}],
        temperature=0.3,
        top_p=0.5,
        presence_penalty=0,
        max_tokens=7,
        extra_body={"top_k": 3, "min_p": 0.2},  # local-only knobs: set, but never sent
    )
    body = cloud.requests[-1]["body"]
    sent = {key: body[key] for key in SAMPLING_KEYS if key in body}
    assert sent == {"temperature": 0.3, "top_p": 0.5, "presence_penalty": 0, "max_tokens": 7}
    assert "top_k" not in body and "min_p" not in body


def test_n_predict_travels_as_max_tokens(http: httpx.Client, cloud: FakeCloud) -> None:
    assert http.post("/v1/chat/completions", json=chat_body(n_predict=5)).status_code == 200
    body = cloud.requests[-1]["body"]
    assert body["max_tokens"] == 5 and "n_predict" not in body


# --- llama.cpp constraints and the cloud ---------------------------------------------------------------------


def test_a_grammar_is_refused_by_a_cloud_model(http: httpx.Client, cloud: FakeCloud) -> None:
    response = http.post("/v1/chat/completions", json=chat_body(grammar='root ::= "a"'))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "grammar",
        "unsupported_parameter",
    )
    assert cloud.requests == [] and circuit(http)["consecutive_failures"] == 0


def test_a_grammar_keeps_an_auto_request_local(http: httpx.Client, cloud: FakeCloud) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": COMPLEX}], "max_tokens": 6, "temperature": 0}
    bursting = http.post("/v1/chat/completions", json=body)
    assert bursting.headers["x-pensieve-route"] == "cloud"  # without a grammar, this one goes to the cloud
    kept = http.post("/v1/chat/completions", json={**body, "grammar": 'root ::= "yes" | "no"'})
    assert kept.status_code == 200 and kept.headers["x-pensieve-route"] == "local"
    assert kept.json()["choices"][0]["message"]["content"] in ("yes", "no")
    assert len(cloud.requests) == 1


def test_a_json_schema_travels_as_response_format(http: httpx.Client, cloud: FakeCloud) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert http.post("/v1/chat/completions", json=chat_body(json_schema=schema)).status_code == 200
    body = cloud.requests[-1]["body"]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    assert "json_schema" not in body
