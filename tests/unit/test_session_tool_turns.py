"""Tool turns in sessions: an answer's calls and the client's tool results are stored, survive a reopen and an
upgrade of an old database, come back as engine messages, render in an export, and are not stored twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pensieve.engine.tool_prompt import history
from pensieve.engine_api import ChatMessage, ToolCall
from pensieve.persistence.database import Database
from pensieve.serving.conversation import _not_stored, open_turn
from pensieve.sessions import SessionStore
from pensieve.sessions.export import to_json, to_markdown
from pensieve.sessions.history import fit_history
from pensieve.sessions.records import calls_json
from pensieve.sessions.store import MIGRATIONS

CALL = ToolCall("call_abc", "get_weather", '{"city": "Paris", "unit": "celsius"}')
FACTS: dict[str, Any] = {"route": "local", "reason": "default", "model": "gemma", "finish_reason": "tool_calls"}


def _agent_loop(store: SessionStore, session_id: str) -> None:
    """Turn 1: a question answered by a call; turn 2: the call's result answered in text."""
    question = [ChatMessage("user", "Weather in Paris?")]
    store.record_turn(session_id, question, "", {**FACTS, "tool_calls": calls_json([CALL])}, 0)
    result = [ChatMessage("tool", '{"temperature": 21}', tool_call_id=CALL.id)]
    store.record_turn(session_id, result, "It is 21 C.", {**FACTS, "finish_reason": "stop"}, 0)


def test_calls_and_results_round_trip_through_a_file_database(tmp_path: Path) -> None:
    path = tmp_path / "pensieve.db"
    database = Database(path)
    store = SessionStore(database)
    session = store.create("alice")
    _agent_loop(store, session.id)
    database.close()
    reopened = Database(path)
    messages = SessionStore(reopened).messages(session.id)
    reopened.close()
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    call = messages[1]
    assert call.content == "" and call.finish_reason == "tool_calls" and call.tool_call_id is None
    assert call.tool_calls == [
        {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": CALL.arguments}}
    ]
    assert (messages[2].tool_call_id, messages[2].content, messages[2].tool_calls) == (
        "call_abc",
        '{"temperature": 21}',
        None,
    )
    assert messages[0].tool_calls is None and messages[3].tool_calls is None
    # The API shape carries both fields; the engine form keeps them for the next prompt.
    assert messages[1].to_json()["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2].to_json()["tool_call_id"] == "call_abc"
    assert messages[1].as_chat() == ChatMessage("assistant", "", tool_calls=(CALL,))
    assert messages[2].as_chat() == ChatMessage("tool", '{"temperature": 21}', tool_call_id="call_abc")


def test_the_replayed_history_renders_as_a_stateless_one() -> None:
    store = SessionStore(Database(None))
    session = store.create("alice")
    _agent_loop(store, session.id)
    replayed = [m.as_chat() for m in store.messages(session.id)]
    stateless = [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(CALL,)),
        ChatMessage("tool", '{"temperature": 21}', tool_call_id="call_abc"),
        ChatMessage("assistant", "It is 21 C."),
    ]
    assert replayed == stateless
    rendered = history(replayed)
    assert json.loads(rendered[1].content) == {
        "tool_calls": [{"name": "get_weather", "arguments": json.loads(CALL.arguments)}]
    }
    assert rendered[2] == ChatMessage("user", 'Tool result (get_weather, call_abc):\n{"temperature": 21}')


def test_an_old_database_is_upgraded_and_its_turns_read_without_calls(tmp_path: Path) -> None:
    path = tmp_path / "pensieve.db"
    old = Database(path)
    assert old.migrate("sessions", MIGRATIONS[:2]) == 2  # the schema before tool turns
    with old.transaction() as cursor:
        cursor.execute(
            "INSERT INTO sessions (id, owner, created_at, updated_at, activity, message_count) "
            "VALUES ('sess_old', 'alice', 1, 1, 1, 1)"
        )
        cursor.execute(
            "INSERT INTO session_messages (id, session_id, idx, role, content, created_at) "
            "VALUES ('msg_old', 'sess_old', 0, 'user', 'Hello', 1)"
        )
    old.close()
    database = Database(path)
    store = SessionStore(database)  # runs migration 3
    (message,) = store.messages("sess_old")
    assert (message.content, message.tool_calls, message.tool_call_id) == ("Hello", None, None)
    _agent_loop(store, "sess_old")
    assert [m.role for m in store.messages("sess_old")] == ["user", "user", "assistant", "tool", "assistant"]
    version = database.query("SELECT version FROM schema_versions WHERE component = 'sessions'")[0]["version"]
    assert version == len(MIGRATIONS) == 3
    database.close()


def test_what_the_session_holds_is_not_stored_twice() -> None:
    store = SessionStore(Database(None))
    session = store.create("alice")
    store.record_turn(session.id, [ChatMessage("user", "Weather?")], "", {**FACTS, "tool_calls": calls_json([CALL])}, 0)
    stored = store.messages(session.id)
    echoed = ChatMessage("assistant", "", tool_calls=(CALL,))  # the answer, sent back by the client
    result = ChatMessage("tool", "21 C", tool_call_id=CALL.id)
    other = ChatMessage("assistant", "", tool_calls=(ToolCall("call_new", "get_weather", "{}"),))
    assert _not_stored([echoed, result], stored) == [result]
    assert _not_stored([other], stored) == [other]
    store.record_turn(session.id, [result], "21 C it is.", FACTS, 0)
    assert _not_stored([result, ChatMessage("user", "Thanks")], store.messages(session.id)) == [
        ChatMessage("user", "Thanks")
    ]


def test_an_export_shows_the_calls_and_results() -> None:
    store = SessionStore(Database(None))
    session = store.create("alice")
    _agent_loop(store, session.id)
    session_now, messages = store.get("alice", session.id), store.messages(session.id)
    assert session_now is not None
    markdown = to_markdown(session_now, messages)
    assert "Calls `get_weather` (`call_abc`):" in markdown and CALL.arguments in markdown
    assert "### Tool (result of `call_abc`)" in markdown
    exported = json.loads(to_json(session_now, messages))
    assert exported["messages"][1]["tool_calls"][0]["id"] == "call_abc"


@pytest.mark.parametrize("role", ["user", "assistant"])
def test_plain_turns_store_no_tool_fields(role: str) -> None:
    store = SessionStore(Database(None))
    session = store.create("alice")
    store.record_turn(session.id, [ChatMessage("user", "Hi")], "Hello", FACTS, 0)
    message = next(m for m in store.messages(session.id) if m.role == role)
    assert (message.tool_calls, message.tool_call_id) == (None, None)


def test_a_result_keeps_the_turn_of_its_call_when_history_is_trimmed() -> None:
    old = [ChatMessage("user", "Hi " * 50), ChatMessage("assistant", "Hello " * 50)]
    calling = [ChatMessage("user", "Weather?"), ChatMessage("assistant", "", tool_calls=(CALL,))]
    result = [ChatMessage("tool", "21 C", tool_call_id=CALL.id)]

    def words(messages: list[ChatMessage]) -> int:
        return sum(len(m.content.split()) + len(m.tool_calls) for m in messages)

    older, kept = open_turn([*old, *calling], result)
    assert (older, kept) == (old, [*calling, *result])
    # A budget that fits only the last messages: the call stays with its result, the older turn goes.
    fitted, left_out = fit_history(None, older, kept, words, budget=10)
    assert (fitted, left_out) == ([*calling, *result], 2)
    question = [ChatMessage("user", "And tomorrow?")]
    assert open_turn([*old, *calling], question) == ([*old, *calling], question)  # no result: all may go
