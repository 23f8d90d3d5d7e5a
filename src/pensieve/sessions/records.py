"""The records a session store hands out: plain frozen data, free of SQL and HTTP."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pensieve.engine_api import ChatMessage, ToolCall
from pensieve.errors import NotFoundError

MessageRole = Literal["system", "user", "assistant", "tool"]
RouteName = Literal["local", "cloud"]


class SessionNotFoundError(NotFoundError):
    """No session with this id, or one that belongs to another caller (the two look the same on purpose)."""

    default_code = "session_not_found"

    @classmethod
    def for_id(cls, session_id: str) -> SessionNotFoundError:
        """The 404 for `session_id`, worded like OpenAI's 'No thread found with id ...'."""
        return cls(f"No session found with id '{session_id}'.", param="session_id")


def calls_json(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Tool calls in OpenAI's `tool_calls` shape, as they are stored and returned."""
    return [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in calls
    ]


def new_id(prefix: str) -> str:
    """A random, URL-safe id such as `sess_3kTq...` (unguessable: ids are not a secret, but need not leak order)."""
    return f"{prefix}_{secrets.token_urlsafe(18)}"


@dataclass(frozen=True)
class Session:
    """One conversation of one caller.

    `private` is sticky: once a message held private data the session is never sent to the cloud again,
    even after that message scrolls out of the prompt. `private_kinds` names the kinds found (email,
    api_key, ...), never the text. `trimmed` is how many stored messages the last prompt left out.
    """

    id: str
    owner: str
    title: str | None
    model: str | None
    system_prompt: str | None
    created_at: float
    updated_at: float
    private: bool
    private_kinds: tuple[str, ...]
    trimmed: int
    message_count: int
    file_ids: tuple[str, ...] = ()  # files attached to the whole session: every turn is answered from them too

    def to_json(self) -> dict[str, Any]:
        """The API shape (`object: "session"`; the owner is the caller itself, so it is not repeated)."""
        body = asdict(self)
        body.pop("owner")
        body["private_kinds"] = list(self.private_kinds)
        body["file_ids"] = list(self.file_ids)
        return {"object": "session", **body}


@dataclass(frozen=True)
class StoredMessage:
    """One stored turn; the route, usage and cost fields are set on assistant turns only.

    `partial` marks an answer the client stopped while it streamed; `trimmed` is how many stored
    messages were left out of the prompt that produced this answer; `citations` holds what the chat
    path wants to keep about the files it used (file ids, cited chunks), as JSON objects. An assistant
    turn that called tools has `tool_calls` (OpenAI's shape; its content may be empty), and a `tool` turn
    (a function's result, sent by the client) has the `tool_call_id` it answers.
    """

    id: str
    session_id: str
    index: int
    role: MessageRole
    content: str
    created_at: float
    route: RouteName | None = None
    reason: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    partial: bool = False
    trimmed: int | None = None
    citations: list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API shape (`object: "session.message"`)."""
        return {"object": "session.message", **asdict(self)}

    def as_chat(self) -> ChatMessage:
        """The turn as the engine takes it in a prompt, its tool calls or answered call id kept."""
        calls = tuple(
            ToolCall(str(call["id"]), str(call["function"]["name"]), str(call["function"].get("arguments") or ""))
            for call in self.tool_calls or ()
        )
        return ChatMessage(self.role, self.content, tool_calls=calls, tool_call_id=self.tool_call_id)


@dataclass(frozen=True)
class SessionPage:
    """One page of a caller's sessions, newest activity first, as OpenAI pages its lists."""

    data: list[Session]
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        """`{"object": "list", "data", "first_id", "last_id", "has_more"}`; pass `last_id` as `after`."""
        return {
            "object": "list",
            "data": [session.to_json() for session in self.data],
            "first_id": self.data[0].id if self.data else None,
            "last_id": self.data[-1].id if self.data else None,
            "has_more": self.has_more,
        }
