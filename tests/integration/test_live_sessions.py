"""/api/sessions on the real server: CRUD, pages, owners kept apart, OpenAI-shaped errors, export, persistence.

Persistence is checked the hard way: PENSIEVE_PERSIST=sqlite sessions survive a restart and a `kill -9`
sent right after the 201, and without it they are gone after a restart. The chat path does not store
turns yet, so the stored-turn checks write messages with SessionStore into the stopped server's
database file and read them back through the API (which also checks the file works across processes).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pensieve.persistence.database import Database
from pensieve.sessions import SessionStore
from support.checks import assert_openai_error
from support.models import ModelsFolder
from support.server import ServerHandle, launch_server

pytestmark = pytest.mark.integration

KEY_A, KEY_B = "key-a", "key-b"
# The restarts need no model: waiting on /health without a preload keeps the shared CPUs for the tests.
NO_PRELOAD = {"PENSIEVE_PRELOAD_DEFAULT_MODEL": "false"}


def _client(handle: ServerHandle, key: str | None = None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=handle.base_url, headers=headers, timeout=30.0)


@pytest.fixture(scope="module")
def keyed(models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server with two inference keys (two owners), persistence off, the default model loaded."""
    handle = launch_server(
        "sessions", models_folder, tmp_path_factory.mktemp("sessions"), {"PENSIEVE_API_KEYS": "key-a,key-b"}
    )
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def alice(keyed: ServerHandle) -> Iterator[httpx.Client]:
    with _client(keyed, KEY_A) as client:
        yield client


@pytest.fixture(scope="module")
def bob(keyed: ServerHandle) -> Iterator[httpx.Client]:
    with _client(keyed, KEY_B) as client:
        yield client


def _create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/sessions", json=fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_crud(alice: httpx.Client) -> None:
    created = _create(alice, title="Trip", model="gemma-3-270m-q4_k_m", system_prompt="Be brief.")
    assert created["object"] == "session" and created["id"].startswith("sess_")
    assert (created["title"], created["message_count"], created["private"], created["trimmed"]) == ("Trip", 0, False, 0)
    assert "owner" not in created
    bare = alice.post("/api/sessions")  # no body at all: every field is optional
    assert bare.status_code == 201 and bare.json()["title"] is None

    got = alice.get(f"/api/sessions/{created['id']}")
    assert got.status_code == 200 and got.json()["messages"] == [] and got.json()["system_prompt"] == "Be brief."

    patched = alice.patch(f"/api/sessions/{created['id']}", json={"title": "Trip to Lyon", "system_prompt": None})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["title"], patched.json()["model"], patched.json()["system_prompt"]) == (
        "Trip to Lyon",
        "gemma-3-270m-q4_k_m",
        None,
    )

    listed = alice.get("/api/sessions").json()
    assert listed["object"] == "list" and listed["data"][0]["id"] == created["id"]  # the last one changed

    deleted = alice.delete(f"/api/sessions/{created['id']}")
    assert deleted.json() == {"id": created["id"], "object": "session.deleted", "deleted": True}
    assert_openai_error(alice.get(f"/api/sessions/{created['id']}"), 404, code="session_not_found")
    assert_openai_error(alice.delete(f"/api/sessions/{created['id']}"), 404, code="session_not_found")


def test_pages(bob: httpx.Client) -> None:
    ids = [_create(bob, title=f"page {i}")["id"] for i in range(5)]
    seen: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = bob.get("/api/sessions", params=params).json()
        seen += [session["id"] for session in page["data"]]
        after = page["last_id"]
        if not page["has_more"]:
            break
    assert seen[:5] == ids[::-1]  # newest first, nothing skipped or repeated
    assert len(seen) == len(set(seen))


def test_owners_are_isolated(alice: httpx.Client, bob: httpx.Client, keyed: ServerHandle) -> None:
    mine = _create(alice, title="alice's secret plans")
    for response in (
        bob.get(f"/api/sessions/{mine['id']}"),
        bob.patch(f"/api/sessions/{mine['id']}", json={"title": "mine now"}),
        bob.delete(f"/api/sessions/{mine['id']}"),
        bob.get(f"/api/sessions/{mine['id']}/export"),
    ):
        error = assert_openai_error(response, 404, code="session_not_found")
        assert "alice" not in error["message"]
    assert mine["id"] not in {session["id"] for session in bob.get("/api/sessions?limit=100").json()["data"]}
    assert_openai_error(bob.get("/api/sessions", params={"after": mine["id"]}), 400, param="after")
    assert alice.get(f"/api/sessions/{mine['id']}").json()["title"] == "alice's secret plans"
    with _client(keyed) as anonymous:
        assert_openai_error(anonymous.get("/api/sessions"), 401, code="invalid_api_key")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"title": 5}, "title"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"model": ["a"]}, "model"),
        ({"system_prompt": True}, "system_prompt"),
        ({"titel": "typo"}, "titel"),
        ([1, 2], None),
    ],
)
def test_bad_bodies_are_400(alice: httpx.Client, body: Any, param: str | None) -> None:
    assert_openai_error(alice.post("/api/sessions", json=body), 400, param=param)
    session = _create(alice)
    assert_openai_error(alice.patch(f"/api/sessions/{session['id']}", json=body), 400, param=param)


def test_bad_requests(alice: httpx.Client) -> None:
    assert_openai_error(alice.get("/api/sessions/sess_doesnotexist"), 404, code="session_not_found")
    assert_openai_error(alice.patch("/api/sessions/nope", json={"title": "x"}), 404, code="session_not_found")
    session = _create(alice)
    assert_openai_error(alice.patch(f"/api/sessions/{session['id']}", json={"title": None}), 400, param="title")
    response = alice.post("/api/sessions", content=b"{not json", headers={"content-type": "application/json"})
    assert_openai_error(response, 400, code="invalid_json")
    assert_openai_error(alice.get(f"/api/sessions/{session['id']}/export?format=pdf"), 400, param="format")
    assert_openai_error(alice.get("/api/sessions?limit=0"), 400)
    assert_openai_error(alice.get("/api/sessions?limit=lots"), 400)
    assert_openai_error(alice.get("/api/sessions", params={"after": "sess_unknown"}), 400, param="after")


def test_export_of_an_empty_session(alice: httpx.Client) -> None:
    session = _create(alice, title='Notes: "a/b"', model="m")
    markdown = alice.get(f"/api/sessions/{session['id']}/export")
    assert markdown.status_code == 200 and markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.headers["content-disposition"].startswith('attachment; filename="pensieve-notes-a-b-')
    assert markdown.text.startswith('# Notes: "a/b"\n')
    as_json = alice.get(f"/api/sessions/{session['id']}/export", params={"format": "json"})
    assert as_json.json()["id"] == session["id"] and as_json.json()["messages"] == []
    assert as_json.headers["content-disposition"].endswith('.json"')


def test_without_persistence_a_restart_forgets(models_folder: ModelsFolder, tmp_path: Path) -> None:
    first = launch_server("volatile", models_folder, tmp_path, NO_PRELOAD, ready_path="/health")
    with _client(first) as client:
        created = _create(client, title="gone soon")
    first.stop()
    assert not (tmp_path / "data" / "pensieve.db").exists()
    second = launch_server("volatile-2", models_folder, tmp_path, NO_PRELOAD, ready_path="/health")
    try:
        with _client(second) as client:
            assert_openai_error(client.get(f"/api/sessions/{created['id']}"), 404)
            assert client.get("/api/sessions").json()["data"] == []
    finally:
        second.stop()


def test_with_sqlite_sessions_survive_a_restart_and_kill_9(models_folder: ModelsFolder, tmp_path: Path) -> None:
    env = {**NO_PRELOAD, "PENSIEVE_PERSIST": "sqlite"}
    first = launch_server("durable", models_folder, tmp_path, env, ready_path="/health")
    with _client(first) as client:
        kept = _create(client, title="kept across a restart", system_prompt="sys")
    first.stop()  # SIGTERM: an orderly shutdown

    second = launch_server("durable-2", models_folder, tmp_path, env, ready_path="/health")
    with _client(second) as client:
        assert client.get(f"/api/sessions/{kept['id']}").json()["title"] == "kept across a restart"
        killed = _create(client, title="acknowledged, then kill -9")
    second.process.send_signal(signal.SIGKILL)  # right after the 201: no shutdown code runs
    second.process.wait(timeout=30)
    second.stop()

    # Turns written by another process into the same file, as the chat path will write them.
    database = Database(tmp_path / "data" / "pensieve.db")
    store = SessionStore(database)
    store.append_user(killed["id"], "What is the capital of France?")
    store.append_assistant(
        killed["id"], "Paris", route="local", reason="default", model="m", prompt_tokens=9, completion_tokens=2
    )
    store.append_assistant(killed["id"], "It is", route="local", reason="default", model="m", partial=True)
    database.close()

    third = launch_server("durable-3", models_folder, tmp_path, env, ready_path="/health")
    try:
        with _client(third) as client:
            ids = {session["id"] for session in client.get("/api/sessions").json()["data"]}
            assert {kept["id"], killed["id"]} <= ids
            body = client.get(f"/api/sessions/{killed['id']}").json()
            assert body["message_count"] == 3 and body["title"] == "acknowledged, then kill -9"
            turns = body["messages"]
            assert [(m["index"], m["role"]) for m in turns] == [(0, "user"), (1, "assistant"), (2, "assistant")]
            assert (turns[1]["route"], turns[1]["prompt_tokens"], turns[2]["partial"]) == ("local", 9, True)
            markdown = client.get(f"/api/sessions/{killed['id']}/export").text
            assert "### Assistant" in markdown and "partial answer" in markdown and "9 prompt + 2" in markdown
            assert client.delete(f"/api/sessions/{killed['id']}").status_code == 200
    finally:
        third.stop()
