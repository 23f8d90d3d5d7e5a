"""Reading a multipart upload as it streams in: each file goes straight to a staging file, counted.

Starlette's `request.form()` would spool every part to disk before the route could look at its size; here
the body is parsed chunk by chunk (python-multipart's streaming parser), so a file over
PENSIEVE_MAX_UPLOAD_MB, or an upload that would fill PENSIEVE_MAX_STORAGE_MB, is refused as soon as the
byte that crosses the limit arrives, with at most one chunk in memory. When a check fails, the staged
files are removed and the rest of the body is read and dropped, so the client gets the 413 (a server that
stops reading mid-body makes most clients report a broken connection instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from pensieve.errors import InvalidRequestError, PensieveError
from pensieve.files.store import MB, FileStore
from pensieve.settings_sections import FilesSettings

FILE_FIELDS = frozenset({"file", "files"})
MAX_FILES_PER_UPLOAD = 20
MAX_FIELD_BYTES = 64 * 1024


def upload_body_limit(settings: FilesSettings) -> int:
    """The largest upload request body: MAX_FILES_PER_UPLOAD full-size files, but never more than the whole
    storage, plus room for the multipart framing."""
    return int(min(settings.max_upload_mb * MAX_FILES_PER_UPLOAD, settings.max_storage_mb) * MB) + MB


@dataclass
class Upload:
    """What a multipart body held: staged files (path, client name) and the plain form fields."""

    files: list[tuple[Path, str | None]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks writing file parts to staging files and checking every limit."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.upload = Upload()
        self.storage_left = store.max_storage_bytes - store.used_bytes()
        self.received = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[str, bytes] = {}
        self._name = ""
        self._file: BinaryIO | None = None
        self._size = 0
        self._value = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add_header_field(data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header_value(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self._part_data(data[start:end]),
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers, self._name, self._file, self._size, self._value = {}, "", None, 0, bytearray()

    def _add_header_field(self, data: bytes) -> None:
        self._header_field += data

    def _add_header_value(self, data: bytes) -> None:
        self._header_value += data

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = self._header_value
        self._header_field = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", errors="replace")
        if b"filename" not in options:
            return
        if self._name not in FILE_FIELDS:
            raise InvalidRequestError(
                f"Unexpected file field '{self._name}': send files in the multipart field 'file'.",
                param=self._name,
                code="invalid_file_field",
            )
        if len(self.upload.files) >= MAX_FILES_PER_UPLOAD:
            raise InvalidRequestError(
                f"Too many files in one upload: at most {MAX_FILES_PER_UPLOAD}.", param="file", code="too_many_files"
            )
        path, self._file = self.store.stage()
        self.upload.files.append((path, options[b"filename"].decode("utf-8", errors="replace")))

    def _part_data(self, data: bytes) -> None:
        if self._file is None:
            if len(self._value) + len(data) > MAX_FIELD_BYTES:
                raise InvalidRequestError(
                    f"The form field '{self._name}' is longer than {MAX_FIELD_BYTES} bytes.", param=self._name
                )
            self._value += data
            return
        self._size += len(data)
        self.received += len(data)
        if self._size > self.store.max_file_bytes:
            raise self.store.file_too_large(self._size)
        if self.received > self.storage_left:
            raise self.store.storage_full()
        self._file.write(data)

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name:
            self.upload.fields[self._name] = self._value.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Close a file left open by a body that stopped mid-part."""
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_upload(content_type: str, body: AsyncIterator[bytes], store: FileStore) -> Upload:
    """Parse a multipart/form-data `body`, staging its files; on any failure nothing staged is left."""
    media, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise InvalidRequestError(
            "Upload files as multipart/form-data (a 'file' field per file).", code="invalid_content_type"
        )
    receiver = _Receiver(store)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        try:
            async for chunk in body:
                # Parsing and writing are blocking work: off the event loop, one chunk at a time.
                await asyncio.to_thread(parser.write, chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidRequestError(f"The multipart body is malformed: {exc}", code="invalid_multipart") from exc
        finally:
            receiver.close()
    except PensieveError:
        store.discard([path for path, _ in receiver.upload.files])
        async for _ in body:  # read and drop the rest, so the client reads our answer (bounded by the body limit)
            pass
        raise
    except BaseException:
        store.discard([path for path, _ in receiver.upload.files])
        raise
    if not receiver.upload.files:
        raise InvalidRequestError("The upload holds no file: send it in the multipart field 'file'.", param="file")
    return receiver.upload
