"""Every failure leaves the server as OpenAI's error JSON with the right status, code and param."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from support.checks import assert_openai_error
from support.server import N_CTX, ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

FRANCE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
SMALL_LIMIT = 4096
# Far more tokens than the 2048-token context of the test server.
LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 400


# --- Malformed bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
def test_malformed_json_is_400(http: httpx.Client, path: str) -> None:
    response = http.post(path, content=b'{"messages": [', headers={"content-type": "application/json"})
    error = assert_openai_error(response, 400, code="invalid_json", param=None)
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


def test_body_that_is_a_json_array_is_400(http: httpx.Client) -> None:
    response = http.post(CHAT, json=[{"messages": FRANCE}])
    error = assert_openai_error(response, 400, param=None)
    assert "JSON object" in error["message"]


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"messages": "What is the capital of France?"}, "messages"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": 3.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"stop": 5}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"logit_bias": {"hello": 5}}, "logit_bias"),
    ],
)
def test_wrong_types_and_values_are_400_naming_the_param(
    http: httpx.Client, model_id: str, changes: dict[str, Any], param: str
) -> None:
    body: dict[str, Any] = {"model": model_id, "messages": FRANCE, "max_tokens": 4, **changes}
    error = assert_openai_error(http.post(CHAT, json=body), 400, param=param)
    assert error["type"] == "invalid_request_error"
    assert param.split("[")[0] in error["message"]


def test_missing_messages_is_400(http: httpx.Client, model_id: str) -> None:
    response = http.post(CHAT, json={"model": model_id, "max_tokens": 4})
    error = assert_openai_error(response, 400, code="missing_required_parameter", param="messages")
    assert "messages" in error["message"]


def test_missing_prompt_is_400(http: httpx.Client, model_id: str) -> None:
    response = http.post(COMPLETIONS, json={"model": model_id, "max_tokens": 4})
    assert_openai_error(response, 400, code="missing_required_parameter", param="prompt")


def test_wrong_type_on_completions_is_400(http: httpx.Client, model_id: str) -> None:
    response = http.post(COMPLETIONS, json={"model": model_id, "prompt": "Hi", "echo": "please"})
    assert_openai_error(response, 400, param="echo")


def test_empty_prompt_list_is_400(http: httpx.Client, model_id: str) -> None:
    response = http.post(COMPLETIONS, json={"model": model_id, "prompt": [], "max_tokens": 4})
    assert_openai_error(response, 400, param="prompt")


def test_token_ids_outside_the_vocabulary_are_400(http: httpx.Client, model_id: str) -> None:
    response = http.post(COMPLETIONS, json={"model": model_id, "prompt": [2, 10**9], "max_tokens": 4})
    error = assert_openai_error(response, 400, param="prompt")
    assert "vocabulary" in error["message"]


def test_sdk_raises_bad_request_for_invalid_values(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=FRANCE, temperature=7.0)
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"


# --- Unknown models -------------------------------------------------------------------------------


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=FRANCE, max_tokens=4)
    error = caught.value
    assert error.status_code == 404
    assert error.code == "model_not_found"
    assert isinstance(error.body, dict)
    assert error.body["code"] == "model_not_found"
    assert error.body["param"] == "model"
    assert error.body["type"] == "invalid_request_error"
    assert "no-such-model" in error.body["message"]


def test_unknown_model_is_404_before_a_stream_starts(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="no-such-model", prompt="Hello", max_tokens=4, stream=True)
    assert caught.value.code == "model_not_found"


# --- Context window -------------------------------------------------------------------------------


def test_chat_prompt_longer_than_the_context_is_400(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": LONG_TEXT}], max_tokens=4)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert str(N_CTX) in caught.value.message


def test_completion_prompt_longer_than_the_context_is_400(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=model_id, prompt=LONG_TEXT, max_tokens=4)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "prompt"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_max_tokens_beyond_the_context_is_400(client: openai.OpenAI, model_id: str, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model_id, messages=FRANCE, max_tokens=5000, stream=stream)
    assert caught.value.code == "context_length_exceeded"
    assert str(N_CTX) in caught.value.message
    assert "5000" in caught.value.message


def test_completion_max_tokens_beyond_the_context_is_400(http: httpx.Client, model_id: str) -> None:
    response = http.post(COMPLETIONS, json={"model": model_id, "prompt": "Hello", "max_tokens": 5000})
    assert_openai_error(response, 400, code="context_length_exceeded", param="prompt")


# --- Routes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nope"), ("POST", "/v1/chat/nope"), ("GET", "/nope")])
def test_unknown_endpoint_is_404_json(http: httpx.Client, method: str, path: str) -> None:
    error = assert_openai_error(http.request(method, path), 404, code="unknown_url")
    assert path in error["message"]


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS])
def test_wrong_method_is_405_json(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    error = assert_openai_error(response, 405, code="method_not_allowed")
    assert "GET" in error["message"]
    assert "POST" in response.headers.get("allow", "")


# --- Features a local text model does not offer ------------------------------------------------------


def test_image_content_part_is_400(http: httpx.Client, model_id: str) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
    response = http.post(CHAT, json={"model": model_id, "messages": messages, "max_tokens": 4})
    error = assert_openai_error(response, 400, code="unsupported_parameter", param="messages[0].content")
    assert "image_url" in error["message"]


def test_text_content_parts_are_accepted(client: openai.OpenAI, model_id: str) -> None:
    completion = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}],
        temperature=0,
        max_tokens=16,
    )
    assert "Paris" in (completion.choices[0].message.content or "")


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content",
        ),
    ],
)
def test_unsupported_features_are_400(http: httpx.Client, model_id: str, changes: dict[str, Any], param: str) -> None:
    body = {"model": model_id, "messages": FRANCE, "max_tokens": 4, **changes}
    assert_openai_error(http.post(CHAT, json=body), 400, code="unsupported_parameter", param=param)


# --- Body size limit ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit_server(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """A server that accepts request bodies of at most 4096 bytes."""
    with server_factory("small-limit", {"PENSIEVE_MAX_REQUEST_BYTES": str(SMALL_LIMIT)}) as handle:
        yield handle


def _big_chat_body(model_id: str) -> bytes:
    body = {"model": model_id, "messages": [{"role": "user", "content": "x" * (2 * SMALL_LIMIT)}], "max_tokens": 4}
    return httpx.Request("POST", "/", json=body).content


def test_body_over_the_limit_is_413(small_limit_server: ServerHandle) -> None:
    with httpx.Client(base_url=small_limit_server.base_url, timeout=30) as raw:
        response = raw.post(CHAT, content=_big_chat_body(small_limit_server.model_id), headers=_JSON)
    error = assert_openai_error(response, 413, code="request_too_large")
    assert str(SMALL_LIMIT) in error["message"]


def test_chunked_body_over_the_limit_is_413(small_limit_server: ServerHandle) -> None:
    """Without Content-Length the limit is enforced while the body streams in."""
    payload = _big_chat_body(small_limit_server.model_id)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 1024):
            yield payload[start : start + 1024]

    with httpx.Client(base_url=small_limit_server.base_url, timeout=30) as raw:
        response = raw.post(CHAT, content=chunks(), headers=_JSON)
    assert "content-length" not in response.request.headers
    error = assert_openai_error(response, 413, code="request_too_large")
    assert str(SMALL_LIMIT) in error["message"]


def test_body_under_the_limit_is_served(small_limit_server: ServerHandle) -> None:
    with httpx.Client(base_url=small_limit_server.base_url, timeout=60) as raw:
        response = raw.post(
            CHAT, json={"model": small_limit_server.model_id, "messages": FRANCE, "temperature": 0, "max_tokens": 12}
        )
    assert response.status_code == 200, response.text
    assert "Paris" in response.json()["choices"][0]["message"]["content"]


_JSON = {"content-type": "application/json"}
