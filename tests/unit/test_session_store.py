"""SessionStore on the shared Database, in memory and on a file: CRUD, pages, owners, privacy, purge, reopening."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pensieve.errors import InvalidRequestError
from pensieve.persistence.database import Database
from pensieve.sessions import SessionNotFoundError, SessionStore
from pensieve.sessions.store import derive_title


@pytest.fixture(params=["memory", "file"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    db = Database(None if request.param == "memory" else tmp_path / "pensieve.db")
    yield db
    db.close()


@pytest.fixture
def store(database: Database) -> SessionStore:
    return SessionStore(database)


def test_create_get_update_delete(store: SessionStore) -> None:
    created = store.create("alice", model="m1", system_prompt="Be brief.")
    assert created.id.startswith("sess_") and len(created.id) > 20
    assert created.title is None and created.message_count == 0 and not created.private
    assert store.get("alice", created.id) == created
    updated = store.update("alice", created.id, title="Trip plans", system_prompt=None)
    assert (updated.title, updated.model, updated.system_prompt) == ("Trip plans", "m1", None)
    assert updated.updated_at >= created.updated_at
    assert store.update("alice", created.id) == store.get("alice", created.id)  # nothing asked, nothing changed
    assert store.delete("alice", created.id)
    assert store.get("alice", created.id) is None
    assert not store.delete("alice", created.id)


def test_messages_are_ordered_and_carry_the_turn_facts(store: SessionStore) -> None:
    session = store.create("alice")
    user = store.append_user(session.id, "What is the capital of France?")
    answer = store.append_assistant(
        session.id,
        "Paris.",
        route="local",
        reason="default",
        model="gemma",
        prompt_tokens=12,
        completion_tokens=3,
        latency_ms=250.5,
        cost_usd=0.0,
        finish_reason="stop",
        trimmed=0,
        citations=[{"file_id": "file_1", "chunk": 2, "text": "Paris is"}],
    )
    stopped = store.append_assistant(session.id, "Par", route="cloud", reason="load", model="c/m", partial=True)
    assert [m.index for m in store.messages(session.id)] == [0, 1, 2]
    assert store.messages(session.id) == [user, answer, stopped]
    assert answer.citations == [{"file_id": "file_1", "chunk": 2, "text": "Paris is"}]
    assert (answer.route, answer.prompt_tokens, answer.latency_ms, answer.partial) == ("local", 12, 250.5, False)
    assert stopped.partial and stopped.prompt_tokens is None and user.route is None
    after = store.get("alice", session.id)
    assert after is not None and after.message_count == 3
    assert after.title == "What is the capital of France?"  # derived from the first user message


def test_an_explicit_title_is_kept_and_only_the_first_user_message_titles() -> None:
    store = SessionStore(Database(None))
    named = store.create("a", title="Mine")
    store.append_user(named.id, "hello there")
    assert store.get("a", named.id).title == "Mine"  # type: ignore[union-attr]
    untitled = store.create("a")
    store.append_user(untitled.id, "first")
    store.append_user(untitled.id, "second")
    assert store.get("a", untitled.id).title == "first"  # type: ignore[union-attr]


def test_derived_titles_are_one_short_line() -> None:
    assert derive_title("  Hello\n\n  world\t! ") == "Hello world !"
    assert derive_title(" \n ") is None
    long = derive_title("word " * 40)
    assert long is not None and len(long) <= 60 and long.endswith("…") and "\n" not in long
    unbroken = derive_title("x" * 200)
    assert unbroken == "x" * 59 + "…"


def test_pages_are_newest_activity_first_with_a_cursor(store: SessionStore) -> None:
    ids = [store.create("alice", title=f"s{i}").id for i in range(5)]
    store.append_user(ids[1], "bump")  # activity moves s1 to the front
    first = store.list("alice", limit=2)
    assert [s.id for s in first.data] == [ids[1], ids[4]] and first.has_more
    second = store.list("alice", limit=2, after=first.data[-1].id)
    assert [s.id for s in second.data] == [ids[3], ids[2]] and second.has_more
    last = store.list("alice", limit=2, after=second.data[-1].id)
    assert [s.id for s in last.data] == [ids[0]] and not last.has_more
    assert last.to_json()["last_id"] == ids[0]
    everything = store.list("alice", limit=100)
    assert len(everything.data) == 5 and not everything.has_more
    assert store.list("nobody").to_json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_owners_are_isolated(store: SessionStore) -> None:
    mine = store.create("alice")
    store.create("bob")
    assert store.get("bob", mine.id) is None
    assert [s.owner for s in store.list("bob").data] == ["bob"]
    with pytest.raises(SessionNotFoundError):
        store.update("bob", mine.id, title="stolen")
    assert not store.delete("bob", mine.id)
    with pytest.raises(InvalidRequestError):  # a foreign cursor is not a way to probe ids
        store.list("bob", after=mine.id)
    assert store.get("alice", mine.id) == mine


def test_delete_cascades_to_messages(store: SessionStore, database: Database) -> None:
    session = store.create("alice")
    store.append_user(session.id, "hi")
    store.append_assistant(session.id, "hello", route="local", reason="default", model="m")
    keep = store.create("alice")
    store.append_user(keep.id, "stay")
    store.delete("alice", session.id)
    assert store.messages(session.id) == []
    assert database.query("SELECT COUNT(*) FROM session_messages")[0][0] == 1
    with pytest.raises(SessionNotFoundError):
        store.append_user(session.id, "too late")


def test_private_is_sticky_and_keeps_kinds_only(store: SessionStore) -> None:
    session = store.create("alice")
    marked = store.mark_private(session.id, ["email"])
    assert marked.private and marked.private_kinds == ("email",)
    again = store.mark_private(session.id, ["api_key", "email"])
    assert again.private_kinds == ("api_key", "email")
    after = store.update("alice", session.id, title="x", model=None, system_prompt="s")
    assert after.private and after.private_kinds == ("api_key", "email")
    assert store.mark_private(session.id, []).private


def test_trimmed_count(store: SessionStore) -> None:
    session = store.create("alice")
    store.set_trimmed(session.id, 6)
    assert store.get("alice", session.id).trimmed == 6  # type: ignore[union-attr]
    with pytest.raises(SessionNotFoundError):
        store.set_trimmed("sess_missing", 1)


def test_purge_deletes_sessions_idle_since_the_cutoff(store: SessionStore, database: Database) -> None:
    old, recent = store.create("alice"), store.create("bob")
    store.append_user(old.id, "old words")
    with database.transaction() as cursor:  # age one session by hand: the store stamps real time
        cursor.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (time.time() - 10 * 86400, old.id))
    assert store.purge_older_than(time.time() - 86400) == 1
    assert store.get("alice", old.id) is None and store.get("bob", recent.id) is not None
    assert store.messages(old.id) == []
    assert store.purge_older_than(time.time() - 86400) == 0


def test_a_file_database_keeps_everything_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "pensieve.db"
    database = Database(path)
    store = SessionStore(database)
    session = store.create("alice", title="Kept", model="m", system_prompt="sys")
    store.append_user(session.id, "question")
    store.append_assistant(session.id, "answer", route="local", reason="default", model="m", completion_tokens=1)
    store.mark_private(session.id, ["email"])
    before, messages = store.get("alice", session.id), store.messages(session.id)
    database.close()
    reopened = Database(path)
    again = SessionStore(reopened)  # the migration is not run twice
    assert again.get("alice", session.id) == before
    assert again.messages(session.id) == messages
    assert again.list("alice").data == [before]
    reopened.close()


def test_committed_writes_are_visible_to_another_connection(tmp_path: Path) -> None:
    """What a method returned is committed: a second reader (as after a crash) sees it at once."""
    database = Database(tmp_path / "pensieve.db")
    store = SessionStore(database)
    session = store.create("alice")
    store.append_user(session.id, "durable")
    other = sqlite3.connect(tmp_path / "pensieve.db")
    assert other.execute("SELECT content FROM session_messages").fetchall() == [("durable",)]
    other.close()
    database.close()


def test_files_attached_to_a_session_are_kept_once_and_can_be_detached() -> None:
    store = SessionStore(Database(None))
    session = store.create("key:a")
    assert session.file_ids == ()
    attached = store.update("key:a", session.id, file_ids=["file-1", "file-2", "file-1"])
    assert attached.file_ids == ("file-1", "file-2")
    assert store.update("key:a", session.id, title="kept").file_ids == ("file-1", "file-2")
    assert store.update("key:a", session.id, file_ids=[]).file_ids == ()
