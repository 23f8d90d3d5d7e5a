"""The file record (what /api/files shows), its table, and the display name made safe to show.

The display name is what the client called the file, cleaned for showing; it is never used as a path:
the bytes are stored under `<id>.bin`, a name the server generates.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import unicodedata
from dataclasses import dataclass
from typing import Any

MIGRATIONS = [
    """
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        filename TEXT NOT NULL,
        kind TEXT NOT NULL,
        media_type TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        pages INTEGER,
        total_pages INTEGER,
        chars INTEGER NOT NULL,
        notes TEXT NOT NULL,
        private INTEGER NOT NULL,
        private_kinds TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX files_owner_created ON files (owner, created_at);
    CREATE TABLE file_texts (
        file_id TEXT PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        text TEXT NOT NULL
    )
    """
]

MAX_NAME_CHARS = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"|?*]")


def new_file_id() -> str:
    """A fresh, unguessable file id in OpenAI's style."""
    return "file-" + secrets.token_urlsafe(18).replace("-", "a").replace("_", "b")


def display_name(raw: str | None) -> str:
    """The last part of a client's file name, without control or path characters ("../../etc/passwd" -> "passwd")."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if len(name) > MAX_NAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        name = (
            (stem[: MAX_NAME_CHARS - len(suffix) - 1] + dot + suffix)
            if dot and len(suffix) < 16
            else name[:MAX_NAME_CHARS]
        )
    return name or "upload"


@dataclass(frozen=True)
class FileRecord:
    """One stored file: who owns it, what it is, what was read from it, and whether it holds private data."""

    id: str
    owner: str
    filename: str
    kind: str
    media_type: str
    purpose: str
    bytes: int
    pages: int | None
    total_pages: int | None
    chars: int
    notes: tuple[str, ...]
    private: bool
    private_kinds: tuple[str, ...]  # the kinds of private data found, never the data
    sha256: str
    created_at: float

    @property
    def stored_name(self) -> str:
        """The name of the bytes on disk: generated, nothing of the client's."""
        return f"{self.id}.bin"

    def row(self) -> tuple[Any, ...]:
        """The values of the `files` row, in column order."""
        return (
            self.id, self.owner, self.filename, self.kind, self.media_type, self.purpose, self.bytes, self.pages,
            self.total_pages, self.chars, json.dumps(list(self.notes)), int(self.private),
            json.dumps(list(self.private_kinds)), self.sha256, self.created_at,
        )  # fmt: skip

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> FileRecord:
        """The record of a `files` row."""
        return cls(
            id=row["id"],
            owner=row["owner"],
            filename=row["filename"],
            kind=row["kind"],
            media_type=row["media_type"],
            purpose=row["purpose"],
            bytes=int(row["bytes"]),
            pages=row["pages"],
            total_pages=row["total_pages"],
            chars=int(row["chars"]),
            notes=tuple(json.loads(row["notes"])),
            private=bool(row["private"]),
            private_kinds=tuple(json.loads(row["private_kinds"])),
            sha256=row["sha256"],
            created_at=float(row["created_at"]),
        )

    def to_api(self) -> dict[str, Any]:
        """The record as /api/files shows it (the owner is the caller, so it is left out)."""
        return {
            "id": self.id,
            "object": "file",
            "filename": self.filename,
            "kind": self.kind,
            "content_type": self.media_type,
            "purpose": self.purpose,
            "bytes": self.bytes,
            "pages": self.pages,
            "total_pages": self.total_pages,
            "chars": self.chars,
            "truncated": bool(self.notes),
            "notes": list(self.notes),
            "private": self.private,
            "private_kinds": list(self.private_kinds),
            "sha256": self.sha256,
            "created_at": int(self.created_at),
        }

    def to_openai(self) -> dict[str, Any]:
        """The record in OpenAI's FileObject shape."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }
