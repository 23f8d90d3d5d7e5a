"""Prompt scoring (`echo` + `logprobs` on /v1/completions) without a model: the request fields, the
response shape, where such a request may run, and what it counts against the work cap.
The real model scores prompts in tests/integration/test_prompt_scoring_live.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pensieve.config import Settings, load_settings
from pensieve.engine_api import TokenLogprob
from pensieve.errors import InvalidRequestError
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest, RequestDefaults
from pensieve.schemas.responses import CompletionLogprobs
from pensieve.serving.choices import seeded
from pensieve.serving.completions import CompletionServing


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no developer .env
    return load_settings()


class Clouds:
    """Stands in for the cloud registry: one cloud model, `fake/big`."""

    def resolve(self, model_id: str) -> str | None:
        return "fake/big" if model_id in ("fake/big", "big") else None


def serving(settings: Settings) -> CompletionServing:
    return CompletionServing(RequestDefaults.of(settings), None, None, Clouds(), None)  # type: ignore[arg-type]


def body(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"prompt": "The capital of France is Paris", **fields})


def test_max_tokens_0_is_allowed_for_completions_only(settings: Settings) -> None:
    assert body(max_tokens=0, echo=True, logprobs=5).max_tokens == 0
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0})


def test_echo_with_logprobs_scores_the_prompt(settings: Settings) -> None:
    defaults = RequestDefaults.of(settings)
    assert body(echo=True, logprobs=0, max_tokens=0).to_requests(defaults)[0].score_prompt
    assert not body(echo=True, max_tokens=3).to_requests(defaults)[0].score_prompt
    assert not body(logprobs=2).to_requests(defaults)[0].score_prompt
    request = body(echo=True, logprobs=2, n=3).to_requests(defaults)[0]
    # Only the first choice scores the prompt; the others share its scores.
    assert [seeded(request, choice).score_prompt for choice in range(3)] == [True, False, False]


def test_scored_prompt_logprobs_start_with_null_and_offsets_follow_the_text() -> None:
    prompt = (
        TokenLogprob("", 0.0, ()),
        TokenLogprob("Hi", -2.0, (72, 105), (("Hi", -2.0, (72, 105)), ("Oh", -1.0, (79, 104)))),
    )
    generated = (TokenLogprob("!", -0.5, (33,), (("!", -0.5, (33,)),)),)
    out = CompletionLogprobs.of(generated, 2, prompt)
    assert out.tokens == ["", "Hi", "!"]
    assert out.token_logprobs == [None, -2.0, -0.5]
    assert out.top_logprobs == [None, {"Hi": -2.0, "Oh": -1.0}, {"!": -0.5}]
    assert out.text_offset == [0, 0, 2]
    # Without scores: the generated tokens only, as before.
    assert CompletionLogprobs.of(generated, 5).model_dump() == {
        "tokens": ["!"], "token_logprobs": [-0.5], "top_logprobs": [{"!": -0.5}], "text_offset": [5]
    }  # fmt: skip


def test_a_scoring_request_runs_locally_and_is_refused_when_pinned_to_the_cloud(settings: Settings) -> None:
    served = serving(settings)
    scoring = body(echo=True, logprobs=1, max_tokens=0)
    assert served.route_header(scoring, None) == "local"
    assert served.route_header(scoring.model_copy(update={"model": "auto"}), "auto") == "local"
    assert served.route_header(body(echo=True, max_tokens=1), "cloud") == "cloud"  # no scoring: untouched
    with pytest.raises(InvalidRequestError) as refused:
        served.route_header(scoring, "cloud")
    assert refused.value.param == "echo"
    with pytest.raises(InvalidRequestError):
        served.route_header(scoring.model_copy(update={"model": "big"}), None)


def test_scoring_counts_its_prompt_once_and_max_tokens_0_generates_nothing(settings: Settings) -> None:
    served = serving(settings)
    defaults = RequestDefaults.of(settings)
    plain = body(max_tokens=0).to_requests(defaults)
    assert served.requested_tokens(plain, 1) == 0  # not the context window: 0 is a value, not "unset"
    ids = CompletionRequest.model_validate({"prompt": list(range(1, 41)), "echo": True, "logprobs": 1, "max_tokens": 0})
    assert served.requested_tokens(ids.to_requests(defaults), 4) == 40
    huge = body(prompt="word " * 100_000, echo=True, logprobs=1, max_tokens=0).to_requests(defaults)
    assert served.requested_tokens(huge, 1) == defaults.context_tokens  # a prompt never scores more than fits
