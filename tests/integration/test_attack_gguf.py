"""A models folder full of hostile GGUF files never takes the server down.

The server serves a folder holding the real default model, the whole hostile corpus of
tests/support/hostile_gguf.py (truncated headers, counts of 2**63, arrays nested 5000 deep, tensors past the
end of the file or overflowing int64, ...) and two copies of the real model whose chat template is a
CVE-2024-34359 style payload. Each hostile file is listed as unusable with its reason and refused with an
OpenAI error JSON, while a request on the real model streams on; the payload templates load (the files are
sound) but never run: no marker file appears and the request gets a clear 400.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from support.checks import END_TOKEN_BIAS, assert_openai_error, make_client
from support.hostile_gguf import template_payloads, write_hostile_corpus, write_with_chat_template
from support.models import ModelsFolder, place_real_model
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]


class Attack:
    """The attacked server, what each hostile file's error must say, and the marker a payload would create."""

    def __init__(self, server: ServerHandle, problems: dict[str, tuple[str, ...]], marker: Path) -> None:
        self.server = server
        self.problems = problems
        self.marker = marker
        self.payload_ids = tuple(template_payloads(marker))


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    """A server on the real model, the hostile corpus and the template-payload models."""
    folder = tmp_path_factory.mktemp("attack-models")
    real = place_real_model(folder)
    problems = write_hostile_corpus(folder)
    marker = tmp_path_factory.mktemp("attack-marker") / "pwned"
    for payload_id, template in template_payloads(marker).items():
        write_with_chat_template(real.resolve(), folder / f"{payload_id}.gguf", template)
    models = ModelsFolder(path=folder, model_id=real.stem, model_file=real, bad_ids=tuple(problems))
    with running_server("attack-gguf", models, tmp_path_factory.mktemp("server-attack-gguf")) as server:
        yield Attack(server, problems, marker)


@pytest.fixture(scope="module")
def http(attack: Attack) -> Iterator[httpx.Client]:
    """A raw client on the attacked server."""
    with httpx.Client(base_url=attack.server.base_url, timeout=60.0) as raw:
        yield raw


def test_every_hostile_file_is_listed_as_unusable_with_its_reason(attack: Attack, http: httpx.Client) -> None:
    response = http.get("/api/models")
    assert response.status_code == 200, response.text
    entries = {entry["id"]: entry for entry in response.json()["data"]}
    assert set(entries) == {attack.server.model_id, *attack.problems, *attack.payload_ids}
    for model_id, problems in attack.problems.items():
        entry = entries[model_id]
        assert entry["usable"] is False and entry["loaded"] is False, entry
        assert any(problem in entry["error"] for problem in problems), entry
        card = http.get(f"/v1/models/{model_id}").json()
        assert card["details"]["usable"] is False and card["details"]["error"] == entry["error"]
    # The OpenAI listing offers what can serve first (the real model, the sound payload files, auto), then
    # every hostile file marked unusable with its reason.
    listed = http.get("/v1/models").json()["data"]
    serving = [card["id"] for card in listed if card["details"].get("usable", True)]
    assert sorted(serving) == sorted([attack.server.model_id, *attack.payload_ids, "auto"])
    assert {card["id"] for card in listed if card["details"].get("usable", True) is False} == set(attack.problems)
    # Each file was refused by the reader with its reason, not by an exception it did not expect.
    log = attack.server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "could not be read" not in log, attack.server.log_tail()


def test_each_hostile_file_is_refused_while_the_real_model_keeps_streaming(attack: Attack, http: httpx.Client) -> None:
    sdk = make_client(attack.server.base_url)
    first_chunk = threading.Event()
    outcome: dict[str, Any] = {}

    def stream_on_the_real_model() -> None:
        # 200 tokens with the end tokens banned: the stream runs while every hostile file is tried.
        try:
            stream = sdk.completions.create(
                model=attack.server.model_id,
                prompt="Once upon a time",
                max_tokens=200,
                temperature=0,
                logit_bias=END_TOKEN_BIAS,
                stream=True,
            )
            chunks = []
            for chunk in stream:
                chunks.append(chunk)
                first_chunk.set()
            outcome["chunks"] = chunks
        except BaseException as exc:  # handed to the test thread, which fails with it
            outcome["error"] = exc
            first_chunk.set()

    streamer = threading.Thread(target=stream_on_the_real_model)
    streamer.start()
    try:
        assert first_chunk.wait(120), "the real model did not start streaming"
        for model_id, problems in attack.problems.items():
            body = {"model": model_id, "messages": HELLO, "max_tokens": 4}
            error = assert_openai_error(http.post("/v1/chat/completions", json=body), 500, code="model_load_failed")
            assert model_id in error["message"], error
            assert any(problem in error["message"] for problem in problems), error
    finally:
        streamer.join(300)
    assert "error" not in outcome, outcome.get("error")
    chunks = outcome["chunks"]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices).strip()

    answer = sdk.chat.completions.create(model=attack.server.model_id, messages=HELLO, max_tokens=8)
    assert answer.choices[0].message.content
    assert attack.server.process.poll() is None, "the server process is still running"
    sdk.close()


@pytest.mark.parametrize("payload", ["template-globals", "template-subclasses"])
def test_a_template_payload_never_runs_and_the_request_gets_a_clear_400(
    attack: Attack, http: httpx.Client, payload: str
) -> None:
    sdk = make_client(attack.server.base_url)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=payload, messages=HELLO, max_tokens=8)
    assert caught.value.code == "invalid_chat_template_input"
    assert "chat template failed to render" in caught.value.message
    assert not attack.marker.exists(), "the template payload ran"
    # The file itself is sound: without its template (a raw text completion) the model answers.
    text = sdk.completions.create(model=payload, prompt="The capital of France is", max_tokens=4, temperature=0)
    assert text.choices[0].text.strip()
    assert not attack.marker.exists()
    answer = sdk.chat.completions.create(model=attack.server.model_id, messages=HELLO, max_tokens=8)
    assert answer.choices[0].message.content
    assert attack.server.process.poll() is None and http.get("/health").status_code == 200
    sdk.close()
