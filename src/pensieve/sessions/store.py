"""SessionStore: sessions and their messages in the shared SQLite database.

Every method is synchronous, short and thread-safe (the Database serialises them under one lock), so
async code may call them directly or through `asyncio.to_thread`. Every write is one transaction: when a
method returns, the write is committed, and with PENSIEVE_PERSIST=sqlite (WAL, synchronous=FULL) on disk.

Sessions are ordered by last activity with `activity`, a counter bumped by every write to a session,
rather than by timestamps: two writes in the same clock tick, or a clock set back, cannot reorder them
or make a page cursor skip a session.
"""

from __future__ import annotations

import builtins
import enum
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pensieve.engine_api import ChatMessage
from pensieve.errors import InvalidRequestError
from pensieve.persistence.database import Database
from pensieve.sessions.records import (
    MessageRole,
    RouteName,
    Session,
    SessionNotFoundError,
    SessionPage,
    StoredMessage,
    calls_json,
    new_id,
)

TITLE_CHARS = 60

MIGRATIONS = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        title TEXT,
        model TEXT,
        system_prompt TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        activity INTEGER NOT NULL,
        private INTEGER NOT NULL DEFAULT 0,
        private_kinds TEXT NOT NULL DEFAULT '[]',
        trimmed INTEGER NOT NULL DEFAULT 0,
        message_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_owner ON sessions (owner, activity);
    CREATE INDEX sessions_by_activity ON sessions (activity);
    CREATE INDEX sessions_by_update ON sessions (updated_at);
    CREATE TABLE session_messages (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        created_at REAL NOT NULL,
        route TEXT,
        reason TEXT,
        model TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency_ms REAL,
        cost_usd REAL,
        finish_reason TEXT,
        partial INTEGER NOT NULL DEFAULT 0,
        trimmed INTEGER,
        citations TEXT,
        UNIQUE (session_id, idx)
    )
    """,
    # 2: files attached to the whole session (every turn's question is answered from them too).
    "ALTER TABLE sessions ADD COLUMN file_ids TEXT NOT NULL DEFAULT '[]'",
    # 3: the tool turns of an agent loop: an answer's function calls (JSON), and the call a `tool` turn answers.
    # Both NULL on older rows, which read back as turns without calls.
    """
    ALTER TABLE session_messages ADD COLUMN tool_calls TEXT;
    ALTER TABLE session_messages ADD COLUMN tool_call_id TEXT
    """,
]


class Unset(enum.Enum):
    """The type of UNSET: 'leave this field as it is' in `update`, where None means 'clear it'."""

    UNSET = "unset"


UNSET = Unset.UNSET


def derive_title(text: str) -> str | None:
    """A title from a first user message: one line, at most TITLE_CHARS characters, cut at a word."""
    line = " ".join(text.split())
    if not line:
        return None
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1]
    if " " in cut[TITLE_CHARS // 2 :]:  # a word boundary late enough to keep most of the line
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


class SessionStore:
    """Sessions and messages of every caller; a caller sees only its own (`owner` = `Caller.id`)."""

    def __init__(self, database: Database) -> None:
        self._db = database
        database.migrate("sessions", MIGRATIONS)

    def create(
        self, owner: str, title: str | None = None, model: str | None = None, system_prompt: str | None = None
    ) -> Session:
        """A new, empty session of `owner`."""
        session_id, now = new_id("sess"), time.time()
        with self._db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO sessions (id, owner, title, model, system_prompt, created_at, updated_at, activity) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(activity), 0) + 1 FROM sessions))",
                (session_id, owner, title, model, system_prompt, now, now),
            )
            return _session(_fetch(cursor, session_id))

    def list(self, owner: str, limit: int = 20, after: str | None = None) -> SessionPage:
        """`owner`'s sessions, most recently active first; `after` is the last id of the previous page.

        An `after` that is not one of `owner`'s sessions (deleted meanwhile, or foreign) is a 400.
        """
        bound = None
        if after is not None:
            rows = self._db.query("SELECT activity FROM sessions WHERE id = ? AND owner = ?", (after, owner))
            if not rows:
                raise InvalidRequestError(
                    f"'after' must be the id of one of your sessions; no session found with id '{after}'.",
                    param="after",
                    code="invalid_value",
                )
            bound = int(rows[0]["activity"])
        rows = self._db.query(
            "SELECT * FROM sessions WHERE owner = ? AND activity < ? ORDER BY activity DESC LIMIT ?",
            (owner, bound if bound is not None else 2**62, limit + 1),
        )
        return SessionPage([_session(row) for row in rows[:limit]], has_more=len(rows) > limit)

    def get(self, owner: str, session_id: str) -> Session | None:
        """`owner`'s session `session_id`, or None (unknown, or another caller's)."""
        rows = self._db.query("SELECT * FROM sessions WHERE id = ? AND owner = ?", (session_id, owner))
        return _session(rows[0]) if rows else None

    def messages(self, session_id: str) -> builtins.list[StoredMessage]:
        """The session's messages in order (check the owner with `get` first)."""
        rows = self._db.query("SELECT * FROM session_messages WHERE session_id = ? ORDER BY idx", (session_id,))
        return [_message(row) for row in rows]

    def update(
        self,
        owner: str,
        session_id: str,
        *,
        title: str | Unset | None = UNSET,
        model: str | Unset | None = UNSET,
        system_prompt: str | Unset | None = UNSET,
        file_ids: Sequence[str] | Unset = UNSET,
    ) -> Session:
        """Change the fields given (None clears one); SessionNotFoundError when not `owner`'s."""
        files = UNSET if isinstance(file_ids, Unset) else json.dumps(list(dict.fromkeys(file_ids)))
        fields = (("title", title), ("model", model), ("system_prompt", system_prompt), ("file_ids", files))
        changes = {name: value for name, value in fields if not isinstance(value, Unset)}
        with self._db.transaction() as cursor:
            _owned(cursor, owner, session_id)
            if changes:
                assignments = ", ".join(f"{name} = :{name}" for name in changes)  # names from the fixed list above
                cursor.execute(
                    f"UPDATE sessions SET {assignments}, updated_at = :now, activity = {_NEXT_ACTIVITY} WHERE id = :id",
                    {**changes, "now": time.time(), "id": session_id},
                )
            return _session(_fetch(cursor, session_id))

    def delete(self, owner: str, session_id: str) -> bool:
        """Delete the session and its messages; False when there was no such session of `owner`."""
        with self._db.transaction() as cursor:
            cursor.execute("DELETE FROM sessions WHERE id = ? AND owner = ?", (session_id, owner))
            return cursor.rowcount > 0

    def append_user(
        self, session_id: str, content: str, *, citations: builtins.list[dict[str, Any]] | None = None
    ) -> StoredMessage:
        """Store a user turn (the first one titles an untitled session); SessionNotFoundError if it is gone."""
        return self._append(session_id, "user", content, {"citations": citations})

    def append_assistant(
        self,
        session_id: str,
        content: str,
        *,
        route: RouteName,
        reason: str,
        model: str,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        latency_ms: float | None = None,
        cost_usd: float | None = None,
        finish_reason: str | None = None,
        partial: bool = False,
        trimmed: int | None = None,
        citations: builtins.list[dict[str, Any]] | None = None,
    ) -> StoredMessage:
        """Store an assistant turn with where it ran, why, its usage and cost; `partial` if the client stopped it."""
        facts = {
            "route": route,
            "reason": reason,
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "latency_ms": latency_ms,
            "cost_usd": cost_usd,
            "finish_reason": finish_reason,
            "partial": partial,
            "trimmed": trimmed,
            "citations": citations,
        }
        return self._append(session_id, "assistant", content, facts)

    def append_system(self, session_id: str, content: str) -> StoredMessage:
        """Store a system turn (a system message a client sent mid-conversation)."""
        return self._append(session_id, "system", content, {})

    def mark_private(self, session_id: str, kinds: Iterable[str]) -> Session:
        """Mark the session private for good and add `kinds` to the kinds of private data it has held."""
        with self._db.transaction() as cursor:
            row = _fetch(cursor, session_id)
            merged = sorted(set(json.loads(row["private_kinds"])) | set(kinds))
            cursor.execute(
                "UPDATE sessions SET private = 1, private_kinds = ? WHERE id = ?", (json.dumps(merged), session_id)
            )
            return _session(_fetch(cursor, session_id))

    def set_trimmed(self, session_id: str, count: int) -> None:
        """Record how many stored messages the last prompt left out (the UI says so)."""
        with self._db.transaction() as cursor:
            cursor.execute("UPDATE sessions SET trimmed = ? WHERE id = ?", (max(0, count), session_id))
            if cursor.rowcount == 0:
                raise SessionNotFoundError.for_id(session_id)

    def purge_older_than(self, cutoff: float) -> int:
        """Delete every session (of every owner) last active before `cutoff` (epoch seconds); how many went."""
        with self._db.transaction() as cursor:
            cursor.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,))
            return cursor.rowcount

    def record_turn(
        self, session_id: str, sent: Sequence[ChatMessage], answer: str, facts: dict[str, Any], trimmed: int
    ) -> StoredMessage:
        """Store a whole turn in ONE transaction: the client's new messages (questions, and in an agent loop
        the calls it relays and the tools' results), then the answer with its `facts` (the keyword arguments
        of `append_assistant`, plus `tool_calls` as `calls_json` gives them), and the trimmed count. A crash
        never leaves a question stored without its answer (chat templates need the turns to alternate)."""
        with self._db.transaction() as cursor:
            for message in sent:
                role: MessageRole = message.role if message.role in ("assistant", "tool") else "user"
                extra = {"tool_calls": calls_json(message.tool_calls) or None, "tool_call_id": message.tool_call_id}
                self._insert(cursor, session_id, role, message.content, {"citations": None, **extra})
            stored = self._insert(cursor, session_id, "assistant", answer, {"citations": None, **facts})
            cursor.execute("UPDATE sessions SET trimmed = ? WHERE id = ?", (max(0, trimmed), session_id))
            return stored

    def _append(self, session_id: str, role: MessageRole, content: str, facts: dict[str, Any]) -> StoredMessage:
        """Insert one message at the end and bump the session's count, update time and activity, atomically."""
        with self._db.transaction() as cursor:
            return self._insert(cursor, session_id, role, content, facts)

    def _insert(
        self, cursor: sqlite3.Cursor, session_id: str, role: MessageRole, content: str, facts: dict[str, Any]
    ) -> StoredMessage:
        """`_append` inside the caller's transaction."""
        now = time.time()
        session = _session(_fetch(cursor, session_id))
        values = {
            **facts,
            "id": new_id("msg"),
            "session_id": session_id,
            "idx": session.message_count,
            "role": role,
            "content": content,
            "created_at": now,
            "citations": json.dumps(facts["citations"]) if facts.get("citations") is not None else None,
            "tool_calls": json.dumps(facts["tool_calls"]) if facts.get("tool_calls") else None,
        }
        columns = ", ".join(values)
        cursor.execute(
            f"INSERT INTO session_messages ({columns}) VALUES ({', '.join(':' + name for name in values)})",
            values,
        )
        title = session.title
        if title is None and role == "user":
            title = derive_title(content)
        cursor.execute(
            f"UPDATE sessions SET message_count = message_count + 1, updated_at = ?, title = ?, "
            f"activity = {_NEXT_ACTIVITY} WHERE id = ?",
            (now, title, session_id),
        )
        row = cursor.execute("SELECT * FROM session_messages WHERE id = ?", (values["id"],)).fetchone()
        return _message(row)


# Bumped on every write to a session: it orders sessions by last activity (see the module docstring).
_NEXT_ACTIVITY = "(SELECT COALESCE(MAX(activity), 0) + 1 FROM sessions)"


def _fetch(cursor: sqlite3.Cursor, session_id: str) -> sqlite3.Row:
    """The session's row inside a transaction; SessionNotFoundError when it does not exist."""
    row: sqlite3.Row | None = cursor.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise SessionNotFoundError.for_id(session_id)
    return row


def _owned(cursor: sqlite3.Cursor, owner: str, session_id: str) -> None:
    """SessionNotFoundError unless the session exists and is `owner`'s (a foreign one is 'not found' too)."""
    if cursor.execute("SELECT 1 FROM sessions WHERE id = ? AND owner = ?", (session_id, owner)).fetchone() is None:
        raise SessionNotFoundError.for_id(session_id)


def _session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        owner=row["owner"],
        title=row["title"],
        model=row["model"],
        system_prompt=row["system_prompt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        private=bool(row["private"]),
        private_kinds=tuple(json.loads(row["private_kinds"])),
        trimmed=row["trimmed"],
        message_count=row["message_count"],
        file_ids=tuple(json.loads(row["file_ids"])),
    )


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"],
        session_id=row["session_id"],
        index=row["idx"],
        role=row["role"],
        content=row["content"],
        created_at=row["created_at"],
        route=row["route"],
        reason=row["reason"],
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        latency_ms=row["latency_ms"],
        cost_usd=row["cost_usd"],
        finish_reason=row["finish_reason"],
        partial=bool(row["partial"]),
        trimmed=row["trimmed"],
        citations=json.loads(row["citations"]) if row["citations"] is not None else None,
        tool_calls=json.loads(row["tool_calls"]) if row["tool_calls"] is not None else None,
        tool_call_id=row["tool_call_id"],
    )
