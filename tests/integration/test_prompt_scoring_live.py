"""Prompt scoring against the real model, through the official openai SDK: `echo` with `logprobs` and
`max_tokens: 0` returns the prompt's token log-probabilities (first null), as lm-evaluation-harness reads them.

Also: the first token of a chat answer has its text, bytes and alternatives trimmed alike, and a chat never
answers with nothing when the transcript format's turn break would have come first.
"""

from __future__ import annotations

import math

import httpx
import openai
import pytest
from openai.types import Completion

pytestmark = pytest.mark.integration

PARIS = "The capital of France is Paris"
BANANA = "The capital of France is Banana"


def score(client: openai.OpenAI, model_id: str, prompt: str | list[str] | list[int], top: int = 5) -> Completion:
    return client.completions.create(model=model_id, prompt=prompt, echo=True, logprobs=top, max_tokens=0)


def test_scoring_returns_every_prompt_token_with_a_null_first(client: openai.OpenAI, model_id: str) -> None:
    answer = score(client, model_id, PARIS)
    choice = answer.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.top_logprobs
    assert choice.text == PARIS and choice.finish_reason == "length"
    assert "".join(logprobs.tokens) == PARIS  # the first token is BOS: no text
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(value is not None and value <= 0.0 for value in logprobs.token_logprobs[1:])
    assert logprobs.text_offset == [len("".join(logprobs.tokens[:i])) for i in range(len(logprobs.tokens))]
    assert answer.usage is not None and answer.usage.completion_tokens == 0
    assert answer.usage.prompt_tokens == len(logprobs.tokens)
    found = 0
    rows = zip(logprobs.tokens[1:], logprobs.token_logprobs[1:], logprobs.top_logprobs[1:], strict=True)
    for token, value, top in rows:
        assert top is not None and len(top) <= 5
        assert value is not None and all(alternative <= 0.0 for alternative in top.values())
        if token in top:  # the actual token is among the 5 likeliest: the same figure both ways
            found += 1
            assert top[token] == pytest.approx(value, abs=1e-4)
        else:
            assert value <= min(top.values()) + 1e-4
    assert found >= 2


def test_a_likely_continuation_scores_higher_than_an_unlikely_one(client: openai.OpenAI, model_id: str) -> None:
    answer = score(client, model_id, [PARIS, BANANA], top=1)  # a batch of prompts: one choice each
    assert [choice.text for choice in answer.choices] == [PARIS, BANANA]
    paris, banana = (choice.logprobs for choice in answer.choices)
    assert paris is not None and banana is not None
    assert paris.token_logprobs and banana.token_logprobs
    assert paris.token_logprobs[:-1] == pytest.approx(banana.token_logprobs[:-1], abs=1e-3)  # the shared prefix
    paris_last, banana_last = paris.token_logprobs[-1], banana.token_logprobs[-1]
    assert paris_last is not None and banana_last is not None and paris_last > banana_last + 3


def test_a_scored_token_matches_the_same_token_generated(client: openai.OpenAI, model_id: str) -> None:
    prompt = "The capital of France is"
    generated = client.completions.create(model=model_id, prompt=prompt, max_tokens=1, temperature=0, logprobs=1)
    logprobs = generated.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs
    token, expected = logprobs.tokens[0], logprobs.token_logprobs[0]
    scored = score(client, model_id, prompt + token).choices[0].logprobs
    assert scored is not None and scored.tokens and scored.token_logprobs
    assert scored.tokens[-1] == token
    # The prompt is computed in batches of positions, the generation one token at a time: llama.cpp's sums
    # differ in the last bits, not more.
    assert scored.token_logprobs[-1] == pytest.approx(expected, abs=0.02)


def test_echo_with_logprobs_and_max_tokens_covers_prompt_and_answer(client: openai.OpenAI, model_id: str) -> None:
    prompt = "One, two, three,"
    whole = client.completions.create(
        model=model_id, prompt=prompt, echo=True, logprobs=2, max_tokens=4, temperature=0
    ).choices[0]
    assert whole.logprobs is not None and whole.logprobs.tokens and whole.logprobs.token_logprobs
    assert whole.text.startswith(prompt) and "".join(whole.logprobs.tokens) == whole.text
    generated = whole.logprobs.token_logprobs[-4:]
    assert whole.logprobs.token_logprobs[0] is None and all(v is not None and v <= 0 for v in generated)
    chunks = list(
        client.completions.create(
            model=model_id, prompt=prompt, echo=True, logprobs=2, max_tokens=4, temperature=0, stream=True
        )
    )
    streamed = [choice for chunk in chunks for choice in chunk.choices]
    assert "".join(choice.text for choice in streamed) == whole.text
    tokens = [token for choice in streamed if choice.logprobs for token in choice.logprobs.tokens or []]
    assert tokens == whole.logprobs.tokens


def test_a_token_id_prompt_is_echoed_as_its_tokens_text(
    client: openai.OpenAI, model_id: str, http: httpx.Client
) -> None:
    ids = http.post("/v1/completions", json={"prompt": PARIS, "echo": True, "logprobs": 0, "max_tokens": 0}).json()
    tokens = ids["choices"][0]["logprobs"]["tokens"]
    answer = score(client, model_id, [2, 818, 5279, 529, 7001, 563, 9079], top=0).choices[0]  # BOS + PARIS
    assert answer.logprobs is not None and answer.logprobs.tokens == tokens and answer.text == PARIS


def test_scoring_pinned_to_the_cloud_is_refused(http: httpx.Client) -> None:
    response = http.post(
        "/v1/completions",
        json={"prompt": PARIS, "echo": True, "logprobs": 1, "max_tokens": 0},
        headers={"x-pensieve-route": "cloud"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "echo"


def test_a_chat_answers_first_token_agrees_with_its_bytes(client: openai.OpenAI, model_id: str) -> None:
    answer = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "Hi there"}],
        logprobs=True,
        top_logprobs=2,
        temperature=0,
        max_tokens=5,
    ).choices[0]
    assert answer.logprobs is not None and answer.logprobs.content
    content = answer.logprobs.content
    assert "".join(token.token for token in content) == answer.message.content
    for token in content:
        assert token.bytes is not None and bytes(token.bytes).decode() == token.token
        assert all(alt.bytes is not None and bytes(alt.bytes).decode() == alt.token for alt in token.top_logprobs)
    assert not math.isnan(content[0].logprob)


# Short chat messages after which the default model, at temperature 0, began its answer with a line break
# and then the transcript's next "User:" turn: an empty answer (found among 50 short messages).
EMPTY_BEFORE = ["Assistant:"]


@pytest.mark.parametrize("message", EMPTY_BEFORE)
def test_a_chat_never_answers_with_nothing(client: openai.OpenAI, model_id: str, message: str) -> None:
    answer = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": message}], temperature=0, max_tokens=16
    )
    assert (answer.choices[0].message.content or "").strip()
