"""A client that goes away stops its generation: the engine frees up instead of running a zombie."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from support.checks import END_TOKEN_BIAS, engine_stats, wait_for_idle
from support.server import ServerHandle

pytestmark = pytest.mark.integration

LONG_RUN = 1500  # tokens; ~20 s of work at this model's speed on two cores, if nobody stopped it
PROMPT = "Once upon a time, in a land far away,"


def _assert_next_request_is_quick(client: openai.OpenAI, model_id: str) -> None:
    """A short request completes at once instead of queueing behind a generation nobody reads."""
    started = time.monotonic()
    completion = client.completions.create(model=model_id, prompt="The capital of France is", max_tokens=3)
    elapsed = time.monotonic() - started
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert elapsed < 8.0, f"a 3-token request took {elapsed:.1f} s: still queued behind the abandoned run?"


def test_closing_a_stream_stops_generation(client: openai.OpenAI, http: httpx.Client, model_id: str) -> None:
    before = engine_stats(http, model_id)
    stream = client.completions.create(
        model=model_id,
        prompt=PROMPT,
        max_tokens=LONG_RUN,
        temperature=0.8,
        seed=1,
        logit_bias=END_TOKEN_BIAS,
        stream=True,
    )
    received = 0
    for chunk in stream:
        received += sum(1 for choice in chunk.choices if choice.text)
        if received >= 5:
            break
    during = engine_stats(http, model_id)
    stream.close()
    assert received >= 5
    assert during["busy"] is True, f"the engine should still be generating while the stream is open: {during}"

    after, waited = wait_for_idle(http, model_id, served_at_least=before["requests_served"] + 1)
    generated = after["tokens_generated"] - before["tokens_generated"]
    assert generated < 60, f"{generated} tokens generated after the client closed the stream (asked {LONG_RUN})"
    assert waited < 5.0
    _assert_next_request_is_quick(client, model_id)


def test_non_streamed_request_is_cancelled_when_the_client_times_out(
    client: openai.OpenAI, http: httpx.Client, server: ServerHandle, model_id: str
) -> None:
    before = engine_stats(http, model_id)
    body = {
        "model": model_id,
        "prompt": PROMPT,
        "max_tokens": LONG_RUN,
        "temperature": 0.8,
        "seed": 2,
        "logit_bias": END_TOKEN_BIAS,
    }
    started = time.monotonic()
    with httpx.Client(base_url=server.base_url, timeout=1.0) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/v1/completions", json=body)
    gave_up_after = time.monotonic() - started

    after, waited = wait_for_idle(http, model_id, served_at_least=before["requests_served"] + 1)
    generated = after["tokens_generated"] - before["tokens_generated"]
    # The client waited ~1 s; the run must end soon after, far short of the 1500 tokens it asked for.
    assert generated < LONG_RUN // 4, f"{generated} tokens generated after the client left after {gave_up_after:.1f} s"
    assert waited < 5.0
    _assert_next_request_is_quick(client, model_id)
