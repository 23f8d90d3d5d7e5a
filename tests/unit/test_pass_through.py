"""The pure parts of issue #17: which fields a body set, what the cloud gets, llama-server's request fields.

- `client_set` follows pydantic's model_fields_set; the CloudEngine payload (`_sampling`) forwards exactly
  those fields, with the client's values, and never the server's sampling defaults;
- provider finish reasons are kept;
- n_predict, grammar, json_schema and response_format's `schema` become the engine's fields (or a 400).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pensieve.cloud.engine import _finish_reason
from pensieve.cloud.payload import sampling_params as _sampling
from pensieve.engine_api import GenerationRequest, SamplingParams
from pensieve.errors import InvalidRequestError
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest, RequestDefaults
from pensieve.settings_sections import SamplingSettings

DEFAULTS = RequestDefaults(SamplingSettings(), "local-model", True)
MESSAGES = [{"role": "user", "content": "hi"}]
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def chat(**fields: Any) -> GenerationRequest:
    return ChatCompletionRequest.model_validate({"messages": MESSAGES, **fields}).to_request(DEFAULTS)


def completion(**fields: Any) -> GenerationRequest:
    return CompletionRequest.model_validate({"prompt": "hi", **fields}).to_requests(DEFAULTS)[0]


# --- what the client set, what the cloud gets -----------------------------------------------------------


def test_nothing_set_forwards_no_sampling_field_but_local_runs_keep_the_defaults() -> None:
    request = chat()
    assert request.params.client_set == frozenset()
    assert _sampling(request) == {}
    assert request.params.temperature == SamplingSettings().temperature  # the local engine's value


def test_set_fields_are_forwarded_with_exactly_the_clients_values() -> None:
    request = chat(temperature=0.0, top_p=1.0, presence_penalty=0.0, frequency_penalty=0.5, seed=7, stop="x")
    assert _sampling(request) == {
        "temperature": 0.0,
        "top_p": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.5,
        "seed": 7,
        "stop": ["x"],
    }


def test_local_only_knobs_count_as_set_but_never_travel() -> None:
    request = chat(top_k=5, min_p=0.1, repeat_penalty=1.3)
    assert {"top_k", "min_p", "repeat_penalty"} <= (request.params.client_set or set())
    assert _sampling(request) == {}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n_predict"])
def test_any_token_limit_field_sets_max_tokens(field: str) -> None:
    request = chat(**{field: 9})
    assert request.params.max_tokens == 9 and _sampling(request) == {"max_tokens": 9}


def test_completions_default_max_tokens_is_not_the_clients() -> None:
    request = completion()
    assert request.params.max_tokens == 16  # OpenAI's default for local runs
    assert "max_tokens" not in _sampling(request)


def test_params_built_in_code_forward_everything_meaningful() -> None:
    params = SamplingParams(temperature=0.2, max_tokens=4, frequency_penalty=0.3)
    sent = _sampling(GenerationRequest(model="m", params=params, prompt="p"))
    assert sent == {"temperature": 0.2, "top_p": 0.95, "max_tokens": 4, "frequency_penalty": 0.3}


@pytest.mark.parametrize("reason", ["stop", "length", "content_filter", "tool_calls", "function_call"])
def test_provider_finish_reasons_are_kept(reason: str) -> None:
    assert _finish_reason(reason) == reason


def test_an_unknown_finish_reason_reads_as_stop() -> None:
    assert _finish_reason("eos_token") == "stop"


# --- llama-server's fields ----------------------------------------------------------------------------


def test_n_predict_minus_one_means_no_limit() -> None:
    assert chat(n_predict=-1).params.max_tokens is None
    assert completion(n_predict=-1).params.max_tokens is None
    assert completion(n_predict=3).params.max_tokens == 3


def test_n_predict_and_max_tokens_must_agree() -> None:
    assert chat(n_predict=5, max_tokens=5).params.max_tokens == 5
    for build in (chat, completion):
        with pytest.raises(InvalidRequestError) as caught:
            build(n_predict=5, max_tokens=6)
        assert caught.value.param == "n_predict"


@pytest.mark.parametrize("value", [0, -2])
def test_n_predict_out_of_range_is_a_validation_error(value: int) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": MESSAGES, "n_predict": value})


def test_json_schema_and_response_format_schema_become_openais_json_schema() -> None:
    wanted = {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}
    assert chat(json_schema=SCHEMA).params.response_format == wanted
    assert chat(response_format={"type": "json_object", "schema": SCHEMA}).params.response_format == wanted
    assert completion(json_schema=SCHEMA).params.response_format == wanted
    assert chat(response_format={"type": "json_object"}).params.response_format == {"type": "json_object"}


def test_grammar_is_checked_and_carried() -> None:
    assert chat(grammar='root ::= "a"').params.grammar == 'root ::= "a"'
    assert completion(grammar='root ::= "b"').params.grammar == 'root ::= "b"'
    with pytest.raises(InvalidRequestError) as caught:
        chat(grammar='root ::= "a"{3,1}')
    assert caught.value.param == "grammar" and "minimum" in caught.value.message


@pytest.mark.parametrize(
    "fields",
    [
        {"grammar": 'root ::= "a"', "json_schema": SCHEMA},
        {"grammar": 'root ::= "a"', "response_format": {"type": "json_object"}},
        {"json_schema": SCHEMA, "response_format": {"type": "json_object"}},
    ],
)
def test_two_constraints_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="only one"):
        chat(**fields)


@pytest.mark.parametrize("schema", [123, "x", [1]])
def test_a_response_format_schema_must_be_an_object(schema: object) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(
            {"messages": MESSAGES, "response_format": {"type": "json_object", "schema": schema}}
        )
