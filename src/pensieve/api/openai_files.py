"""/v1/files: OpenAI's Files API (create, list, retrieve, delete, content) on the same store as /api/files.

Answers are OpenAI FileObjects, so `client.files.create(file=open(path, "rb"), purpose="assistants")` and
the rest of the official SDK's `files` resource work unchanged. Files belong to the caller that uploaded
them, as on /api/files.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from pensieve.api.access import CallerDep
from pensieve.api.deps import FilesDep
from pensieve.errors import InvalidRequestError
from pensieve.files.upload import receive_upload

router = APIRouter(prefix="/v1/files", tags=["OpenAI"])

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@router.post("")
async def create_file(request: Request, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """Upload a file (multipart `file` and `purpose`); answers its FileObject."""
    upload = await receive_upload(request.headers.get("content-type", ""), request.stream(), store)
    purpose = upload.fields.get("purpose")
    if purpose not in PURPOSES:
        store.discard([path for path, _ in upload.files])
        if purpose is None:
            raise InvalidRequestError(
                "Missing required parameter: 'purpose'.", param="purpose", code="missing_required_parameter"
            )
        raise InvalidRequestError(
            f"Invalid value for 'purpose': {purpose!r}; use one of {', '.join(PURPOSES)}.",
            param="purpose",
            code="invalid_value",
        )
    if len(upload.files) != 1:
        store.discard([path for path, _ in upload.files])
        raise InvalidRequestError("Send exactly one file per /v1/files request.", param="file")
    records = await asyncio.to_thread(store.add, upload.files, caller.id, purpose)
    return records[0].to_openai()


@router.get("")
async def list_files(
    caller: CallerDep,
    store: FilesDep,
    purpose: str | None = None,
    limit: int = Query(10_000, ge=1, le=10_000),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> dict[str, Any]:
    """The caller's files (newest first unless `order=asc`), paged with `limit` and `after`."""
    records = await asyncio.to_thread(store.files_of, caller.id, purpose)
    if order == "asc":
        records.reverse()
    if after is not None:
        ids = [record.id for record in records]
        records = records[ids.index(after) + 1 :] if after in ids else []
    page = records[:limit]
    data = [record.to_openai() for record in page]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(records) > limit,
    }


@router.get("/{file_id}")
async def retrieve_file(file_id: str, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """One of the caller's files as a FileObject."""
    record = await asyncio.to_thread(store.get, file_id, caller.id)
    return record.to_openai()


@router.delete("/{file_id}")
async def delete_file(file_id: str, caller: CallerDep, store: FilesDep) -> dict[str, Any]:
    """Delete one of the caller's files."""
    record = await asyncio.to_thread(store.delete, file_id, caller.id)
    return {"id": record.id, "object": "file", "deleted": True}


@router.get("/{file_id}/content")
async def file_content(file_id: str, caller: CallerDep, store: FilesDep) -> Response:
    """The file's original bytes, as a download (never rendered in the server's origin)."""
    record = await asyncio.to_thread(store.get, file_id, caller.id)
    return FileResponse(
        store.path_of(record),
        media_type=record.media_type,
        filename=record.filename,
        content_disposition_type="attachment",
        headers={"x-content-type-options": "nosniff", "content-security-policy": "sandbox"},
    )
