"""/api/files: upload documents, list, read, download and delete them, and search their passages.

Every route needs an inference key when keys are set; a file belongs to the caller that uploaded it
(`Caller.id`), and any other caller gets 404 for it. Limits and errors: docs/api.md#files.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from pensieve.api.access import CallerDep
from pensieve.api.deps import FilesDep
from pensieve.files.records import FileRecord
from pensieve.files.store import FileStore
from pensieve.files.upload import receive_upload

router = APIRouter(prefix="/api/files", tags=["Files"])


def content_response(store: FileStore, record: FileRecord) -> Response:
    """The original bytes as a download: never rendered in the server's origin (an uploaded HTML page could
    run script there), hence attachment, nosniff and a sandboxing CSP."""
    return FileResponse(
        store.path_of(record),
        media_type=record.media_type,
        filename=record.filename,
        content_disposition_type="attachment",
        headers={"x-content-type-options": "nosniff", "content-security-policy": "sandbox"},
    )


@router.post("")
async def upload_files(request: Request, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """Upload one or more files (multipart field `file`, repeated); answers their records."""
    upload = await receive_upload(request.headers.get("content-type", ""), request.stream(), store)
    purpose = upload.fields.get("purpose", "user_data")
    records = await asyncio.to_thread(store.add, upload.files, caller.id, purpose)
    return {"object": "list", "data": [record.to_api() for record in records]}


@router.get("")
async def list_files(caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """The caller's files, newest first."""
    records = await asyncio.to_thread(store.files_of, caller.id)
    return {"object": "list", "data": [record.to_api() for record in records]}


class SearchRequest(BaseModel):
    """A query over some of the caller's files."""

    file_ids: list[str] = Field(min_length=1, max_length=50)
    query: str = Field(max_length=20_000)
    token_budget: int | None = Field(None, ge=1, le=100_000)


@router.post("/search")
async def search_files(body: SearchRequest, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """The passages of `file_ids` that best match `query`, best first, within `token_budget` tokens
    (default PENSIEVE_FILE_CONTEXT_TOKENS): what a chat request naming these files would get."""
    budget = body.token_budget or store.settings.file_context_tokens
    context = await asyncio.to_thread(store.context_for, body.file_ids, caller.id, body.query, budget)
    return {
        "object": "list",
        "tokens": context.tokens,
        "token_budget": context.token_budget,
        "data": [
            {
                "file_id": chunk.file_id,
                "filename": chunk.filename,
                "page": chunk.page,
                "line_start": chunk.line_start,
                "line_end": chunk.line_end,
                "location": chunk.location,
                "score": chunk.score,
                "tokens": chunk.tokens,
                "text": chunk.text,
            }
            for chunk in context.chunks
        ],
    }


@router.get("/{file_id}")
async def get_file(file_id: str, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """One of the caller's files."""
    record = await asyncio.to_thread(store.get, file_id, caller.id)
    return record.to_api()


@router.delete("/{file_id}")
async def delete_file(file_id: str, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """Delete one of the caller's files: record, text, index and bytes."""
    record = await asyncio.to_thread(store.delete, file_id, caller.id)
    return {"id": record.id, "object": "file", "deleted": True}


@router.get("/{file_id}/content")
async def file_content(
    file_id: str, caller: CallerDep, store: FilesDep, format: Literal["original", "text"] = Query("original")
) -> Response:
    """The original bytes (with the type detected at upload), or `?format=text`: the text read from them."""
    record = await asyncio.to_thread(store.get, file_id, caller.id)
    if format == "text":
        return PlainTextResponse(await asyncio.to_thread(store.text_of, record))
    return content_response(store, record)
