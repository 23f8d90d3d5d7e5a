"""The client's calls for what the server stores: sessions (conversations) and uploaded files.

A mixin of `PensieveClient` (kept apart so `client.py` stays short); it uses only the client's own
`_call` (JSON answers) and `_raw` (downloads, plain text), so every failure is a `ServerError` in plain words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

# How long one upload may take: a 20 MB file read, stored and indexed on a loaded machine.
UPLOAD_TIMEOUT = 300.0


class RecordCalls:
    """GET/POST/PATCH/DELETE of /api/sessions and /api/files."""

    def _call(self, method: str, path: str, *, ok_statuses: tuple[int, ...] = (), **options: Any) -> Any:
        raise NotImplementedError  # the client's own, which turns failures into ServerError

    def _raw(self, method: str, path: str, **options: Any) -> httpx.Response:
        raise NotImplementedError

    # --- Sessions -------------------------------------------------------------------------------

    def create_session(
        self, title: str | None = None, model: str | None = None, system_prompt: str | None = None
    ) -> dict[str, Any]:
        """POST /api/sessions: a new, empty conversation (the server titles it from the first message)."""
        fields = {"title": title, "model": model, "system_prompt": system_prompt}
        return dict(self._call("POST", "/api/sessions", json={k: v for k, v in fields.items() if v is not None}))

    def sessions(self, limit: int = 50) -> list[dict[str, Any]]:
        """GET /api/sessions: the caller's conversations, most recently active first (one page)."""
        return list(self._call("GET", "/api/sessions", params={"limit": limit})["data"])

    def session(self, session_id: str) -> dict[str, Any]:
        """GET /api/sessions/{id}: the session with its `messages` and each answer's record."""
        return dict(self._call("GET", f"/api/sessions/{session_id}"))

    def update_session(self, session_id: str, **fields: str | list[str] | None) -> dict[str, Any]:
        """PATCH /api/sessions/{id}: change `title`, `model`, `system_prompt` (None clears the last two) or
        `file_ids` (the files every turn of the conversation is answered from)."""
        return dict(self._call("PATCH", f"/api/sessions/{session_id}", json=fields))

    def delete_session(self, session_id: str) -> None:
        """DELETE /api/sessions/{id}: the session and its messages."""
        self._call("DELETE", f"/api/sessions/{session_id}")

    def export_session(self, session_id: str, format: str = "md") -> tuple[str, bytes]:
        """GET /api/sessions/{id}/export: the file name the server suggests and the bytes (`md` or `json`)."""
        response = self._raw("GET", f"/api/sessions/{session_id}/export", params={"format": format})
        disposition = response.headers.get("content-disposition", "")
        name = disposition.split("filename=", 1)[1].strip('"') if "filename=" in disposition else ""
        return name or f"{session_id}.{format}", response.content

    # --- Files ----------------------------------------------------------------------------------

    def upload_files(self, files: Sequence[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """POST /api/files (multipart, one `file` field per file): their records; all are kept or none."""
        parts = [("file", (name, content)) for name, content in files]
        return list(self._call("POST", "/api/files", files=parts, timeout=UPLOAD_TIMEOUT)["data"])

    def files(self) -> list[dict[str, Any]]:
        """GET /api/files: the caller's files, newest first."""
        return list(self._call("GET", "/api/files")["data"])

    def file(self, file_id: str) -> dict[str, Any]:
        """GET /api/files/{id}: one record (kind, size, pages, privacy verdict, notes)."""
        return dict(self._call("GET", f"/api/files/{file_id}"))

    def file_text(self, file_id: str) -> str:
        """GET /api/files/{id}/content?format=text: the text read from the file (PDF pages split by form feeds)."""
        return self._raw("GET", f"/api/files/{file_id}/content", params={"format": "text"}).text

    def delete_file(self, file_id: str) -> None:
        """DELETE /api/files/{id}."""
        self._call("DELETE", f"/api/files/{file_id}")
