"""Request schemas: strict types, defaults from settings, refusal of unsupported features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from pensieve.api.errors import describe_validation
from pensieve.config import Settings, load_settings
from pensieve.errors import InvalidRequestError, UnsupportedParameterError
from pensieve.schemas.requests import (
    MAX_PROMPTS,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RequestDefaults,
)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    return load_settings(default_temperature=0.3, default_top_k=7)


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})


def test_unset_sampling_values_come_from_settings(settings: Settings) -> None:
    request = chat(top_p=0.5, max_completion_tokens=12).to_request(RequestDefaults.of(settings))
    assert request.model == settings.engine.default_model
    assert request.params.temperature == 0.3
    assert request.params.top_k == 7
    assert request.params.top_p == 0.5
    assert request.params.max_tokens == 12


def test_text_parts_are_joined(settings: Settings) -> None:
    body = ChatCompletionRequest.model_validate(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    )
    messages = body.to_request(RequestDefaults.of(settings)).messages
    assert messages is not None and messages[0].content == "a\nb"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content",
        ),
    ],
)
def test_unsupported_features_are_refused_clearly(settings: Settings, fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameterError) as caught:
        chat(**fields).to_request(RequestDefaults.of(settings))
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": "0.5"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["x"] * 17}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"n": 0}, "n"),
    ],
)
def test_wrong_types_and_ranges_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationError) as caught:
        chat(**fields)
    error = RequestValidationError(
        [{**item, "loc": ("body", *item["loc"])} for item in caught.value.errors(include_url=False)]
    )
    _, reported, _ = describe_validation(error)
    assert reported == param


def test_unknown_fields_are_ignored() -> None:
    assert chat(some_vendor_extra=1).n == 1


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("once", ["once"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2, 3], [(1, 2, 3)]),
        ([[1, 2], [3]], [(1, 2), (3,)]),
    ],
)
def test_completion_prompt_shapes(settings: Settings, prompt: Any, expected: list[Any]) -> None:
    requests = CompletionRequest.model_validate({"prompt": prompt}).to_requests(RequestDefaults.of(settings))
    assert [r.prompt for r in requests] == expected
    assert all(r.params.max_tokens == 16 for r in requests)  # OpenAI's default for this endpoint


def test_completion_refuses_suffix(settings: Settings) -> None:
    with pytest.raises(UnsupportedParameterError):
        CompletionRequest.model_validate({"prompt": "x", "suffix": "y"}).to_requests(RequestDefaults.of(settings))


def test_response_format_and_logprobs_reach_the_engine(settings: Settings) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fields = {"json_schema": {"name": "answer", "schema": schema}, "type": "json_schema"}
    params = chat(response_format=fields, logprobs=True, top_logprobs=3).to_request(RequestDefaults.of(settings)).params
    assert params.response_format == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    assert params.logprobs and params.top_logprobs == 3
    assert (
        chat(response_format={"type": "text"}).to_request(RequestDefaults.of(settings)).params.response_format is None
    )


@pytest.mark.parametrize(
    "fields",
    [{"response_format": {"type": "xml"}}, {"top_logprobs": 2}, {"response_format": {"type": "json_schema"}}],
)
def test_bad_response_format_or_logprobs_are_refused(settings: Settings, fields: dict[str, Any]) -> None:
    with pytest.raises((InvalidRequestError, ValidationError)):
        chat(**fields).to_request(RequestDefaults.of(settings))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("one text", ["one text"]),
        (["a", "b"], ["a", "b"]),
        ([5, 6, 7], [(5, 6, 7)]),
        ([[5], [6, 7]], [(5,), (6, 7)]),
    ],
)
def test_embedding_inputs_take_every_openai_shape(value: Any, expected: list[Any]) -> None:
    assert EmbeddingRequest.model_validate({"input": value}).inputs() == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "The input is empty"),
        (["a", ""], "Input 1 is empty"),
        ([[5], []], "Input 1 is empty"),
        ([], "must not be an empty list"),
        (["x"] * 2049, "At most"),
    ],
)
def test_empty_or_too_many_embedding_inputs_are_refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        EmbeddingRequest.model_validate({"input": value}).inputs()
    assert message in caught.value.message and caught.value.param == "input"


def test_prompts_per_request_are_capped() -> None:
    assert len(CompletionRequest(prompt=["a"] * MAX_PROMPTS).prompts()) == MAX_PROMPTS
    assert len(CompletionRequest(prompt=[1] * 1000).prompts()) == 1  # token ids of one prompt
    with pytest.raises(InvalidRequestError, match=f"At most {MAX_PROMPTS} prompts") as refused:
        CompletionRequest(prompt=["a"] * (MAX_PROMPTS + 1)).prompts()
    assert refused.value.param == "prompt"
