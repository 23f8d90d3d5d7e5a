"""Hostile `logit_bias` values: each is a 400 naming `logit_bias`, and a stream running meanwhile survives.

Before the fix, a token id outside the vocabulary reached llama.cpp's logit-bias sampler, which wrote
outside its logits row and killed the model's worker (every in-flight request on the model failed); a
20-digit id overflowed the C int; a non-ASCII digit such as "²" passed `str.isdigit` and became a 500.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import openai
import pytest

from support.checks import END_TOKEN_BIAS, assert_openai_error

pytestmark = pytest.mark.integration

HOSTILE = [
    {"262144": 5},  # one past Gemma 3's vocabulary
    {"4294967296": -100},  # past 32 bits
    {"99999999999999999999": 1},  # past 64 bits
    {"²": 1},  # a digit to str.isdigit, not to int()
    {"١٢": 1},  # Arabic-Indic digits
    {"-1": 1},
    {str(token): 0.5 for token in range(2000)},  # too many entries
]


@pytest.mark.parametrize("bias", HOSTILE, ids=lambda bias: next(iter(bias)) if len(bias) == 1 else f"{len(bias)} keys")
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_hostile_logit_bias_is_400(http: httpx.Client, model_id: str, path: str, bias: dict[str, Any]) -> None:
    body: dict[str, Any] = {"model": model_id, "max_tokens": 4, "logit_bias": bias}
    body.update({"messages": [{"role": "user", "content": "Hi"}]} if "chat" in path else {"prompt": "Hi"})
    assert_openai_error(http.post(path, json=body), 400, param="logit_bias")


def test_a_stream_survives_hostile_logit_bias_requests(
    client: openai.OpenAI, http: httpx.Client, model_id: str
) -> None:
    pieces: list[str] = []
    failure: list[BaseException] = []

    def stream() -> None:
        try:
            chunks = client.completions.create(
                model=model_id,
                prompt="Count slowly:",
                max_tokens=48,
                temperature=0,
                logit_bias=END_TOKEN_BIAS,  # type: ignore[arg-type]
                stream=True,
            )
            pieces.extend(chunk.choices[0].text for chunk in chunks if chunk.choices)
        except BaseException as exc:
            failure.append(exc)

    runner = threading.Thread(target=stream)
    runner.start()
    for bias in HOSTILE[:2]:
        body = {"model": model_id, "prompt": "Hi", "max_tokens": 4, "logit_bias": bias}
        assert_openai_error(http.post("/v1/completions", json=body), 400, param="logit_bias")
    runner.join(timeout=120)
    assert not failure, failure
    assert "".join(pieces).strip()
    # The worker is the same one: it never crashed.
    models = http.get("/api/ps").json()
    assert not [f for f in models["failures"] if f.get("stage") == "serving" and not f.get("recovered")]
