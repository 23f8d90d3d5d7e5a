"""FileStore: uploaded files' bytes on disk, their records and text in the shared database, their indexes.

- Bytes live under a generated name (`<id>.bin`) in the upload folder: `data_dir/uploads` when the
  database is persistent, else a temporary folder removed by `close()` at shutdown.
- An upload is staged in that folder while it streams in (`stage()`); `add()` then checks it (type, text,
  caps), fsyncs it, renames it to its final name and writes the record and text in one transaction. Any
  failure removes the staged or renamed file and writes no record: nothing is left behind.
- A persistent store removes staging leftovers and bytes without a record at start-up (a crash between
  rename and commit) and rebuilds each file's index from the stored text (`rebuild_indexes`).
- Files are visible to their owner only: another caller's file id answers 404, like an unknown one.

Every method does blocking I/O or CPU work: the API calls them through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from pensieve.errors import NotFoundError, PayloadTooLargeError
from pensieve.files.detect import detect
from pensieve.files.extract import extract
from pensieve.files.index import FileIndex
from pensieve.files.records import MIGRATIONS, FileRecord, display_name, new_file_id
from pensieve.files.retrieval import NamedIndex, RetrievedContext, TokenCounter, estimate_tokens, select
from pensieve.persistence.database import Database
from pensieve.privacy.scanner import PrivacyScanner
from pensieve.settings_sections import FilesSettings

MB = 1024 * 1024
UPLOADS_FOLDER = "uploads"
STAGING_PREFIX = ".partial-"


@dataclass(frozen=True)
class _Prepared:
    staged: Path
    record: FileRecord
    text: str
    index: FileIndex


class FileStore:
    """Uploaded files of every caller, each visible to its owner only."""

    def __init__(self, database: Database, settings: FilesSettings, scanner: PrivacyScanner, data_dir: Path) -> None:
        self.database = database
        self.settings = settings
        self.scanner = scanner
        self.temporary = not database.persistent
        if self.temporary:
            self.folder = Path(tempfile.mkdtemp(prefix="pensieve-uploads-"))
        else:
            self.folder = data_dir / UPLOADS_FOLDER
            self.folder.mkdir(parents=True, exist_ok=True)
        database.migrate("files", MIGRATIONS)
        self._indexes: dict[str, FileIndex] = {}
        self._lock = threading.Lock()
        if not self.temporary:
            self._remove_leftovers()

    # --- limits --------------------------------------------------------------------------------------

    @property
    def max_file_bytes(self) -> int:
        """The largest file accepted (PENSIEVE_MAX_UPLOAD_MB)."""
        return int(self.settings.max_upload_mb * MB)

    @property
    def max_storage_bytes(self) -> int:
        """All files together at most (PENSIEVE_MAX_STORAGE_MB)."""
        return int(self.settings.max_storage_mb * MB)

    def used_bytes(self) -> int:
        """Bytes of every stored file."""
        return int(self.database.query("SELECT COALESCE(SUM(bytes), 0) AS used FROM files")[0]["used"])

    def file_too_large(self, size: int | None = None) -> PayloadTooLargeError:
        """The 413 for a file over PENSIEVE_MAX_UPLOAD_MB."""
        got = f" ({size} bytes received so far)" if size is not None else ""
        return PayloadTooLargeError(
            f"The file is larger than the limit of {self.settings.max_upload_mb:g} MB{got} (PENSIEVE_MAX_UPLOAD_MB).",
            param="file",
            code="file_too_large",
        )

    def storage_full(self) -> PayloadTooLargeError:
        """The 413 for an upload that would take the store past PENSIEVE_MAX_STORAGE_MB."""
        return PayloadTooLargeError(
            f"The server's file storage would go past its limit of {self.settings.max_storage_mb:g} MB "
            "(PENSIEVE_MAX_STORAGE_MB): delete files you no longer need, then retry.",
            param="file",
            code="storage_full",
        )

    # --- writing ---------------------------------------------------------------------------------------

    def stage(self) -> tuple[Path, BinaryIO]:
        """A new staging file in the upload folder, open for writing (removed by `add` or `discard`)."""
        fd, name = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=self.folder)
        return Path(name), os.fdopen(fd, "wb")

    @staticmethod
    def discard(staged: list[Path]) -> None:
        """Remove staging files (an upload that failed)."""
        for path in staged:
            path.unlink(missing_ok=True)

    def add(self, uploads: list[tuple[Path, str | None]], owner: str, purpose: str) -> list[FileRecord]:
        """Check, index and keep each staged (path, client name) upload: all of them, or none (then the error)."""
        try:
            prepared = [self._prepare(path, name, owner, purpose) for path, name in uploads]
            return self._commit(prepared)
        finally:
            self.discard([path for path, _ in uploads])

    def _prepare(self, staged: Path, name: str | None, owner: str, purpose: str) -> _Prepared:
        data = staged.read_bytes()
        if len(data) > self.max_file_bytes:
            raise self.file_too_large(len(data))
        detected = detect(data)
        extracted = extract(
            data, detected, max_chars=self.settings.max_extract_chars, max_pdf_pages=self.settings.max_pdf_pages
        )
        kinds = tuple(sorted({finding.kind for finding in self.scanner.scan([extracted.text])}))
        record = FileRecord(
            id=new_file_id(),
            owner=owner,
            filename=display_name(name),
            kind=detected.kind,
            media_type=detected.media_type,
            purpose=purpose,
            bytes=len(data),
            pages=extracted.pages,
            total_pages=extracted.total_pages,
            chars=len(extracted.text),
            notes=tuple(extracted.notes),
            private=bool(kinds),
            private_kinds=kinds,
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=time.time(),
        )
        index = FileIndex.build(extracted.text, paged=detected.kind == "pdf")
        return _Prepared(staged, record, extracted.text, index)

    def _commit(self, prepared: list[_Prepared]) -> list[FileRecord]:
        """fsync and rename every file, then write every record in one transaction; undo the renames on failure."""
        placed: list[Path] = []
        try:
            for item in prepared:
                with item.staged.open("rb+") as handle:
                    os.fsync(handle.fileno())
                final = self.folder / item.record.stored_name
                item.staged.replace(final)
                placed.append(final)
            _fsync_folder(self.folder)
            with self.database.transaction() as cursor:
                used = int(cursor.execute("SELECT COALESCE(SUM(bytes), 0) FROM files").fetchone()[0])
                if used + sum(item.record.bytes for item in prepared) > self.max_storage_bytes:
                    raise self.storage_full()
                for item in prepared:
                    cursor.execute(f"INSERT INTO files VALUES ({', '.join('?' * 15)})", item.record.row())
                    cursor.execute("INSERT INTO file_texts VALUES (?, ?)", (item.record.id, item.text))
        except BaseException:
            self.discard(placed)
            raise
        with self._lock:
            self._indexes.update({item.record.id: item.index for item in prepared})
        return [item.record for item in prepared]

    def delete(self, file_id: str, owner: str) -> FileRecord:
        """Remove a file: its record and text first (then it is gone for every reader), then its bytes."""
        record = self.get(file_id, owner)
        with self.database.transaction() as cursor:
            cursor.execute("DELETE FROM files WHERE id = ?", (record.id,))
        self._forget(record)
        return record

    def purge_older_than(self, cutoff_epoch: float) -> int:
        """Delete every file created before `cutoff_epoch` (the retention loop); how many were deleted."""
        rows = self.database.query("SELECT * FROM files WHERE created_at < ?", (cutoff_epoch,))
        records = [FileRecord.from_row(row) for row in rows]
        with self.database.transaction() as cursor:
            cursor.executemany("DELETE FROM files WHERE id = ?", [(record.id,) for record in records])
        for record in records:
            self._forget(record)
        return len(records)

    def _forget(self, record: FileRecord) -> None:
        with self._lock:
            self._indexes.pop(record.id, None)
        (self.folder / record.stored_name).unlink(missing_ok=True)

    # --- reading ---------------------------------------------------------------------------------------

    def get(self, file_id: str, owner: str) -> FileRecord:
        """The caller's file; 404 naming the id when it does not exist or belongs to someone else."""
        rows = self.database.query("SELECT * FROM files WHERE id = ? AND owner = ?", (file_id, owner))
        if not rows:
            raise NotFoundError(f"No such file: '{file_id}'.", param="file_id", code="file_not_found")
        return FileRecord.from_row(rows[0])

    def files_of(self, owner: str, purpose: str | None = None) -> list[FileRecord]:
        """The caller's files, newest first."""
        sql = "SELECT * FROM files WHERE owner = ?" + (" AND purpose = ?" if purpose else "")
        rows = self.database.query(sql + " ORDER BY created_at DESC, id", (owner, purpose) if purpose else (owner,))
        return [FileRecord.from_row(row) for row in rows]

    def path_of(self, record: FileRecord) -> Path:
        """Where the file's original bytes are."""
        return self.folder / record.stored_name

    def text_of(self, record: FileRecord) -> str:
        """The text extracted from the file (a PDF's pages separated by form feeds)."""
        rows = self.database.query("SELECT text FROM file_texts WHERE file_id = ?", (record.id,))
        return str(rows[0]["text"]) if rows else ""

    def context_for(
        self,
        file_ids: list[str],
        owner: str,
        query: str,
        token_budget: int,
        count_tokens: TokenCounter = estimate_tokens,
    ) -> RetrievedContext:
        """The passages of the caller's `file_ids` that best match `query`, best first, within `token_budget`.

        An unknown id, or one of another caller, is a 404 naming it.
        """
        records = self._records(file_ids, owner)
        named = [NamedIndex(record.id, record.filename, self._index(record)) for record in records]
        private = {kind for record in records if record.private for kind in record.private_kinds or ("private",)}
        return replace(select(named, query, token_budget, count_tokens), private_kinds=tuple(sorted(private)))

    def _records(self, file_ids: list[str], owner: str) -> list[FileRecord]:
        return [self.get(file_id, owner) for file_id in dict.fromkeys(file_ids)]

    def _index(self, record: FileRecord) -> FileIndex:
        with self._lock:
            index = self._indexes.get(record.id)
        if index is None:  # built from the stored text: a restart, or a purge race
            index = FileIndex.build(self.text_of(record), paged=record.kind == "pdf")
            with self._lock:
                self._indexes[record.id] = index
        return index

    def index_bytes(self) -> int:
        """Memory held by the loaded indexes (an estimate)."""
        with self._lock:
            return sum(index.nbytes for index in self._indexes.values())

    # --- start and stop --------------------------------------------------------------------------------

    def rebuild_indexes(self) -> int:
        """Index every stored file from its text (a persistent store's start-up); how many were indexed."""
        records = [FileRecord.from_row(row) for row in self.database.query("SELECT * FROM files")]
        for record in records:
            self._index(record)
        return len(records)

    def _remove_leftovers(self) -> None:
        """Remove staging files and bytes without a record: what a crash during an upload left."""
        known = {f"{row['id']}.bin" for row in self.database.query("SELECT id FROM files")}
        for path in self.folder.iterdir():
            if path.is_file() and (path.name.startswith(STAGING_PREFIX) or path.name not in known):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove the temporary upload folder (a persistent one stays)."""
        if self.temporary:
            shutil.rmtree(self.folder, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable (directories cannot be opened on Windows: skipped there)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
