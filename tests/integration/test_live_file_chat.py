"""Chat requests that name uploaded files: the model answers from the right passage, and the answer cites it.

The fact is made up and sits on page 7 of a ten-page PDF, so the model can only know it from the file.
"""

from __future__ import annotations

import io

import httpx
import openai
import pytest

from support.documents import make_pdf

pytestmark = pytest.mark.integration

FILLER = "This page describes the history of the harbour, its ships and the weather along the coast."
PAGES = [[f"Page {n}. {FILLER}"] for n in range(1, 7)]
PAGES += [["Page 7. The lighthouse keeper of Port Ellery is named Orla Quennell."]]
PAGES += [[f"Page {n}. {FILLER}"] for n in range(8, 11)]
QUESTION = "What is the name of the lighthouse keeper of Port Ellery?"


@pytest.fixture(scope="module")
def report_id(http: httpx.Client) -> str:
    """The ten-page PDF, uploaded once."""
    uploaded = http.post("/api/files", files={"file": ("harbour.pdf", io.BytesIO(make_pdf(PAGES)))})
    assert uploaded.status_code in (200, 201), uploaded.text
    return str(uploaded.json()["data"][0]["id"])


def test_the_answer_comes_from_page_7_and_cites_it(client: openai.OpenAI, model_id: str, report_id: str) -> None:
    reply = client.chat.completions.with_raw_response.create(
        model=model_id,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=24,
        extra_body={"file_ids": [report_id]},
    )
    body = reply.http_response.json()
    assert "Quennell" in body["choices"][0]["message"]["content"], body
    assert body["citations"][0]["file_id"] == report_id and body["citations"][0]["page"] == 7
    assert f"{report_id} page 7" in reply.headers["x-pensieve-citations"]


def test_a_session_stores_the_question_as_asked_and_the_passages_used(
    client: openai.OpenAI, http: httpx.Client, model_id: str, report_id: str
) -> None:
    session_id = http.post("/api/sessions", json={}).json()["id"]
    client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=24,
        extra_body={"file_ids": [report_id], "session_id": session_id},
    )
    messages = http.get(f"/api/sessions/{session_id}").json()["messages"]
    assert messages[0]["content"] == QUESTION  # not the passages put before it
    assert messages[1]["citations"][0]["page"] == 7


def test_unknown_file_ids_are_404(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "Hi"}], extra_body={"file_ids": ["file-nope"]}
        )
    assert missing.value.code == "file_not_found"


def test_files_attached_to_a_session_answer_every_turn_until_detached(
    client: openai.OpenAI, http: httpx.Client, model_id: str, report_id: str
) -> None:
    created = http.post("/api/sessions", json={"file_ids": [report_id]})
    assert created.status_code == 201 and created.json()["file_ids"] == [report_id]
    session_id = created.json()["id"]

    def ask() -> httpx.Response:
        return client.chat.completions.with_raw_response.create(
            model=model_id,
            messages=[{"role": "user", "content": QUESTION}],
            temperature=0,
            max_tokens=24,
            extra_body={"session_id": session_id},
        ).http_response

    assert f"{report_id} page 7" in ask().headers["x-pensieve-citations"]
    assert http.patch(f"/api/sessions/{session_id}", json={"file_ids": []}).json()["file_ids"] == []
    assert "x-pensieve-citations" not in ask().headers
    foreign = http.patch(f"/api/sessions/{session_id}", json={"file_ids": ["file-nope"]})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "file_not_found"
