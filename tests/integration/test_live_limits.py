"""Work that is bounded: the per-request work cap, the request deadline, and a client that leaves before
its first token (queued or in prefill) is dropped at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from support.checks import END_TOKEN_BIAS, assert_openai_error, engine_stats, make_client, wait_for_idle
from support.models import ModelsFolder
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 3
LONG_RUN = 1500  # tokens: far more than DEADLINE_SECONDS allow on these machines


def _long_prompt(seed: str, items: int = 200) -> str:
    """A prompt of about 9 tokens per item (1,800 here) whose prefill takes a while; seeds share no cache."""
    return f"{seed}: " + " ".join(f"item{index % 97} is {seed}{index}." for index in range(items))


def test_a_request_asking_more_work_than_the_cap_is_refused(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.completions.create(model=model_id, prompt=["a", "b", "c"], n=16, max_tokens=2000)
    assert refused.value.code == "request_too_large" and refused.value.param == "max_tokens"
    assert "PENSIEVE_MAX_REQUEST_TOKENS" in refused.value.message
    with pytest.raises(openai.BadRequestError, match="PENSIEVE_MAX_REQUEST_TOKENS"):
        client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hi"}], n=16, max_completion_tokens=4200
        )


@pytest.fixture(scope="module")
def deadline_server(models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server whose requests must finish within DEADLINE_SECONDS."""
    env = {"PENSIEVE_REQUEST_TIMEOUT_SECONDS": str(DEADLINE_SECONDS)}
    with running_server("deadline", models_folder, tmp_path_factory.mktemp("deadline"), env) as handle:
        yield handle


def _long_body(model_id: str, **extra: object) -> dict[str, object]:
    return {
        "model": model_id,
        "prompt": "Once upon a time,",
        "max_tokens": LONG_RUN,
        "logit_bias": END_TOKEN_BIAS,
        "temperature": 0.8,
        "seed": 3,
        **extra,
    }


def test_a_whole_answer_past_the_deadline_is_a_504_and_its_work_stops(deadline_server: ServerHandle) -> None:
    with httpx.Client(base_url=deadline_server.base_url, timeout=60) as http:
        before = engine_stats(http, deadline_server.model_id)
        response = http.post("/v1/completions", json=_long_body(deadline_server.model_id))
        error = assert_openai_error(response, 504, code="request_timeout")
        assert "PENSIEVE_REQUEST_TIMEOUT_SECONDS" in error["message"]
        assert response.headers["x-should-retry"] == "false"
        after, _ = wait_for_idle(http, deadline_server.model_id, served_at_least=before["requests_served"] + 1)
        assert after["tokens_generated"] - before["tokens_generated"] < LONG_RUN


def test_a_stream_past_the_deadline_ends_with_an_error_event_and_done(deadline_server: ServerHandle) -> None:
    with httpx.Client(base_url=deadline_server.base_url, timeout=60) as http:
        before = engine_stats(http, deadline_server.model_id)
        events: list[str] = []
        with http.stream("POST", "/v1/completions", json=_long_body(deadline_server.model_id, stream=True)) as reply:
            assert reply.status_code == 200
            events = [line[len("data: ") :] for line in reply.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        error = json.loads(events[-2])["error"]
        assert error["code"] == "request_timeout"
        assert len(events) > 3  # tokens came first: the deadline cut a running stream
        after, _ = wait_for_idle(http, deadline_server.model_id, served_at_least=before["requests_served"] + 1)
        assert after["tokens_generated"] - before["tokens_generated"] < LONG_RUN
    sdk = make_client(deadline_server.base_url)
    try:
        assert sdk.completions.create(model=deadline_server.model_id, prompt="Hi", max_tokens=2).choices
    finally:
        sdk.close()


def test_a_stream_abandoned_during_prefill_never_generates(
    http: httpx.Client, server: ServerHandle, model_id: str
) -> None:
    """The client leaves before its first token: the run is dropped then, not after the prefill it abandoned."""
    # How long this prompt's prefill takes here (a cache-free run of the same length).
    started = time.monotonic()
    warm = http.post(
        "/v1/completions",
        json={"model": model_id, "prompt": _long_prompt("warm"), "max_tokens": 1, "cache_prompt": False},
    )
    prefill_seconds = time.monotonic() - started
    assert warm.status_code == 200, warm.text
    assert prefill_seconds > 0.6, f"prefill took {prefill_seconds:.2f} s: too short to leave during it"

    before = engine_stats(http, model_id)
    body = {"model": model_id, "prompt": _long_prompt("left"), "max_tokens": 50, "stream": True, "cache_prompt": False}
    with (
        httpx.Client(base_url=server.base_url, timeout=prefill_seconds / 4) as impatient,
        pytest.raises(httpx.ReadTimeout),
        impatient.stream("POST", "/v1/completions", json=body) as reply,
    ):
        reply.read()
    after, _ = wait_for_idle(http, model_id, served_at_least=before["requests_served"])
    assert after["tokens_generated"] == before["tokens_generated"], "the abandoned run still generated tokens"
