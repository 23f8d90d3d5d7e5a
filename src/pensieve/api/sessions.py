"""/api/sessions: a caller's conversations, as ChatGPT-style apps keep them (list, read, rename, delete, export).

Every caller sees only its own sessions (the owner is `Caller.id`: the API key's fingerprint, or the peer
address without keys); another caller's session id answers 404, exactly like an unknown one, so ids
cannot be probed. The chat path stores the turns; these routes never generate anything.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from pensieve.api.access import CallerDep
from pensieve.api.deps import FilesDep, SessionsDep
from pensieve.errors import InvalidRequestError
from pensieve.files.store import FileStore
from pensieve.sessions import UNSET, Session, SessionNotFoundError, SessionStore
from pensieve.sessions.export import EXPORT_FORMATS, MEDIA_TYPES, filename, render

router = APIRouter(prefix="/api/sessions", tags=["Sessions"])

MAX_TITLE = 200
MAX_MODEL = 256
MAX_SYSTEM_PROMPT = 100_000
MAX_PAGE = 100

Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE)]
ModelId = Annotated[str, Field(min_length=1, max_length=MAX_MODEL)]
SystemPrompt = Annotated[str, Field(max_length=MAX_SYSTEM_PROMPT)]


class SessionFields(BaseModel):
    """Body of POST /api/sessions and PATCH /api/sessions/{id}: strict types, unknown fields refused.

    Unknown fields are refused (unlike /v1's) because a misspelt field would otherwise be a silent no-op.
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    title: Title | None = None
    model: ModelId | None = None
    system_prompt: SystemPrompt | None = None
    file_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_MODEL)]] | None = Field(
        default=None, max_length=20
    )


async def _owned(store: SessionStore, owner: str, session_id: str) -> Session:
    """The caller's session, or the 404 that an unknown id gets too."""
    session = await asyncio.to_thread(store.get, owner, session_id)
    if session is None:
        raise SessionNotFoundError.for_id(session_id)
    return session


@router.post("", status_code=201)
async def create_session(
    store: SessionsDep, files: FilesDep, caller: CallerDep, body: SessionFields | None = None
) -> dict[str, Any]:
    """Start a session (all fields optional; the first user message titles an untitled one)."""
    fields = body or SessionFields()
    session = await asyncio.to_thread(store.create, caller.id, fields.title, fields.model, fields.system_prompt)
    if fields.file_ids:
        await _check_files(files, caller.id, fields.file_ids)
        session = await asyncio.to_thread(lambda: store.update(caller.id, session.id, file_ids=fields.file_ids or []))
    return session.to_json()


async def _check_files(files: FileStore, owner: str, file_ids: list[str]) -> None:
    """404 `file_not_found` naming the first of `file_ids` that is not the caller's."""
    for file_id in file_ids:
        await asyncio.to_thread(files.get, file_id, owner)


@router.get("")
async def list_sessions(
    store: SessionsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: Annotated[str | None, Query(min_length=1, max_length=MAX_MODEL)] = None,
) -> dict[str, Any]:
    """The caller's sessions, most recently active first; pass the page's `last_id` as `after` for the next."""
    page = await asyncio.to_thread(store.list, caller.id, limit, after)
    return page.to_json()


@router.get("/{session_id}")
async def get_session(session_id: str, store: SessionsDep, caller: CallerDep) -> dict[str, Any]:
    """The session and its messages, with where each answer ran, its tokens, cost and time."""
    session = await _owned(store, caller.id, session_id)
    messages = await asyncio.to_thread(store.messages, session_id)
    return {**session.to_json(), "messages": [message.to_json() for message in messages]}


@router.patch("/{session_id}")
async def update_session(
    session_id: str, body: SessionFields, store: SessionsDep, files: FilesDep, caller: CallerDep
) -> dict[str, Any]:
    """Change the title, model, system prompt or attached files; fields left out stay, `model`/`system_prompt`:
    null clears, `file_ids: []` detaches every file."""
    sent = body.model_fields_set
    if body.file_ids:
        await _check_files(files, caller.id, body.file_ids)
    if "title" in sent and body.title is None:
        raise InvalidRequestError(
            "'title' cannot be null: send a non-empty string.", param="title", code="invalid_value"
        )
    session = await asyncio.to_thread(
        lambda: store.update(
            caller.id,
            session_id,
            title=body.title if "title" in sent else UNSET,
            model=body.model if "model" in sent else UNSET,
            system_prompt=body.system_prompt if "system_prompt" in sent else UNSET,
            file_ids=(body.file_ids or []) if "file_ids" in sent else UNSET,
        )
    )
    return session.to_json()


@router.delete("/{session_id}")
async def delete_session(session_id: str, store: SessionsDep, caller: CallerDep) -> dict[str, Any]:
    """Delete the session and all its messages (OpenAI's deletion shape)."""
    if not await asyncio.to_thread(store.delete, caller.id, session_id):
        raise SessionNotFoundError.for_id(session_id)
    return {"id": session_id, "object": "session.deleted", "deleted": True}


@router.get("/{session_id}/export")
async def export_session(
    session_id: str,
    store: SessionsDep,
    caller: CallerDep,
    requested: Annotated[str, Query(alias="format", max_length=16)] = "md",
) -> Response:
    """The session as a Markdown or JSON download (`?format=md|json`)."""
    format = EXPORT_FORMATS.get(requested.lower())
    if format is None:
        raise InvalidRequestError(
            f"Unknown export format {requested!r}: use md (Markdown) or json.", param="format", code="invalid_value"
        )
    session = await _owned(store, caller.id, session_id)
    messages = await asyncio.to_thread(store.messages, session_id)
    disposition = f'attachment; filename="{filename(session, format)}"'
    return Response(
        render(session, messages, format), media_type=MEDIA_TYPES[format], headers={"content-disposition": disposition}
    )
