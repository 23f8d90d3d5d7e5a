"""What the server keeps: folders, sessions and files, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from pensieve.settings_sections.base import RESTART, Section


class PersistenceSettings(Section):
    """What the server keeps on disk between runs: the spend ledger always; sessions and files on request."""

    title: ClassVar[str] = "Persistence"

    data_dir: Path = Field(
        Path("data"), description="Folder for uploads and persistent state.", json_schema_extra=RESTART
    )
    persist: Literal["none", "sqlite"] = Field(
        "none",
        description="none: sessions in memory and uploads in a temporary folder, gone at shutdown; sqlite: "
        "sessions and file records in data/pensieve.db, uploads in data/uploads.",
        json_schema_extra=RESTART,
    )
    retention_days: float = Field(
        0.0, ge=0, description="Delete sessions and files older than this many days (0 = keep them)."
    )


class FilesSettings(Section):
    """Uploaded files: what is accepted, how much is kept, how much of them goes into a prompt."""

    title: ClassVar[str] = "Files"

    max_upload_mb: float = Field(20.0, gt=0, le=1024, description="Largest file accepted, in MB (HTTP 413 above).")
    max_storage_mb: float = Field(
        500.0, gt=0, description="All uploaded files together, in MB: an upload past it is refused (HTTP 413)."
    )
    max_extract_chars: int = Field(
        2_000_000, ge=1000, description="Text kept from one file at most (characters); the rest is cut, and said."
    )
    max_pdf_pages: int = Field(500, ge=1, description="Pages read from one PDF at most.")
    file_context_tokens: int = Field(
        1024, ge=64, description="Tokens of retrieved file text a chat request may get in its prompt."
    )
