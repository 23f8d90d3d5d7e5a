"""Model listing, health probes, and model files that cannot be loaded."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from support.checks import assert_openai_error, make_client
from support.models import BAD_MODELS, ModelsFolder
from support.server import ServerHandle

pytestmark = pytest.mark.integration

FRANCE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]
# What each hostile file's error must name.
PROBLEMS = {
    "not-gguf": ("not a GGUF file",),
    "truncated": ("truncated", "ends inside"),
    "empty": ("empty", "too small", "0 bytes"),
}


# --- Health and discovery ---------------------------------------------------------------------------


def test_health_is_200(http: httpx.Client) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_ready_names_the_loaded_model(http: httpx.Client, model_id: str) -> None:
    response = http.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["default_model"] == model_id
    assert model_id in body["loaded_models"]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_api_docs_are_served(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 200
    if path == "/openapi.json":
        paths = response.json()["paths"]
        assert "/v1/chat/completions" in paths
        assert "/v1/completions" in paths
        assert "/v1/models" in paths


def test_v1_models_lists_the_usable_model_first(client: openai.OpenAI, model_id: str) -> None:
    models = client.models.list()
    # Local models first, then `auto` (the burst controller decides; listed even with no cloud configured),
    # then the files that cannot serve.
    assert [model.id for model in models.data] == [model_id, "auto", *sorted(BAD_MODELS)]
    assert models.data[1].owned_by == "pensieve"
    card = models.data[0]
    assert card.object == "model"
    assert card.owned_by == "local"
    assert card.created > 0


def test_retrieve_model(client: openai.OpenAI, model_id: str) -> None:
    card = client.models.retrieve(model_id)
    assert card.id == model_id
    assert card.object == "model"
    details = (card.model_extra or {}).get("details", {})
    assert details.get("loaded") is True
    assert details.get("architecture") == "gemma3"


def test_retrieve_unknown_model_is_404(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"
    assert_openai_error(http.get("/v1/models/no-such-model"), 404, code="model_not_found", param="model")


@pytest.mark.parametrize("bad_id", BAD_MODELS)
def test_retrieve_unusable_model_says_why(http: httpx.Client, bad_id: str) -> None:
    card = http.get(f"/v1/models/{bad_id}").json()
    assert card["id"] == bad_id and card["details"]["usable"] is False and card["details"]["error"]


def test_api_models_lists_every_file_with_errors_on_the_bad_ones(
    http: httpx.Client, model_id: str, models_folder: ModelsFolder
) -> None:
    response = http.get("/api/models")
    assert response.status_code == 200
    body = response.json()
    assert body["models_dir"] == str(models_folder.path)
    entries = {entry["id"]: entry for entry in body["data"]}
    assert set(entries) == {model_id, *BAD_MODELS}
    good = entries[model_id]
    assert good["usable"] is True
    assert good["error"] is None
    assert good["loaded"] is True
    assert good["loaded_context_length"] == 2048
    assert good["architecture"] == "gemma3"
    assert set(good["stats"]) >= {"tokens_generated", "busy", "queue_depth", "requests_served"}
    for bad_id in BAD_MODELS:
        entry = entries[bad_id]
        assert entry["usable"] is False, entry
        assert entry["loaded"] is False, entry
        assert any(problem in entry["error"] for problem in PROBLEMS[bad_id]), entry


# --- Hostile model files ----------------------------------------------------------------------------


def _load_failure(client: openai.OpenAI, bad_id: str) -> openai.InternalServerError:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=bad_id, messages=FRANCE, max_tokens=4)
    return caught.value


@pytest.mark.parametrize("bad_id", BAD_MODELS)
def test_unloadable_model_fails_clearly_and_fast_and_the_default_keeps_serving(
    client: openai.OpenAI, model_id: str, bad_id: str
) -> None:
    first = _load_failure(client, bad_id)
    assert first.status_code == 500
    assert first.code == "model_load_failed"
    assert isinstance(first.body, dict)
    assert first.body["type"] == "server_error"
    assert first.body["param"] == "model"
    message = first.body["message"]
    assert bad_id in message
    assert any(problem in message for problem in PROBLEMS[bad_id]), message
    assert first.response.headers.get("x-should-retry") == "false"

    # Repeated requests fail the same way, at once.
    for _ in range(3):
        started = time.monotonic()
        again = _load_failure(client, bad_id)
        assert time.monotonic() - started < 2.0
        assert again.code == "model_load_failed"
        assert isinstance(again.body, dict)
        assert again.body["message"] == message

    # The text-completions endpoint and a streamed request fail the same way.
    with pytest.raises(openai.InternalServerError) as caught:
        client.completions.create(model=bad_id, prompt="Hello", max_tokens=4, stream=True)
    assert caught.value.code == "model_load_failed"

    # The default model keeps serving right after.
    answer = client.chat.completions.create(model=model_id, messages=FRANCE, temperature=0, max_tokens=16)
    assert "Paris" in (answer.choices[0].message.content or "")


def test_sdk_does_not_retry_a_model_load_failure(server: ServerHandle) -> None:
    """x-should-retry: false stops the SDK's retries (with 3 retries the back-off alone takes over 2.5 s)."""
    retrying = make_client(server.base_url, max_retries=3)
    try:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError):
            retrying.chat.completions.create(model="not-gguf", messages=FRANCE, max_tokens=4)
        assert time.monotonic() - started < 1.5
    finally:
        retrying.close()


def test_bad_files_are_listed_last_as_unusable_after_failed_loads(
    client: openai.OpenAI, http: httpx.Client, model_id: str
) -> None:
    for bad_id in BAD_MODELS:
        _load_failure(client, bad_id)
    listed = http.get("/v1/models").json()["data"]
    assert [card["id"] for card in listed[:2]] == [model_id, "auto"]
    assert sorted(card["id"] for card in listed[2:]) == sorted(BAD_MODELS)
    assert all(card["details"]["usable"] is False and card["details"]["error"] for card in listed[2:])
    ready = http.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["loaded_models"] == [model_id]
