"""FileStore on a real SQLite database and a real folder: atomic adds, caps, owners, retention, persistence,
the streaming upload reader, and retrieval (a fact on page 7 of 10 is found)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from pensieve.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError, UnsupportedFileTypeError
from pensieve.files.chunks import CHUNK_CHARS, chunk_text
from pensieve.files.records import display_name
from pensieve.files.store import FileStore
from pensieve.files.upload import receive_upload
from pensieve.persistence.database import Database
from pensieve.privacy.scanner import PrivacyConfig, PrivacyScanner
from pensieve.settings_sections import FilesSettings
from support.documents import SAMPLES, elf_executable, make_pdf

SCANNER = PrivacyScanner(PrivacyConfig())
TOPICS = [
    "orchards",
    "rivers",
    "railways",
    "glaciers",
    "markets",
    "lighthouses",
    "harbours",
    "bridges",
    "deserts",
    "caves",
]


def _store(tmp_path: Path, database: Database | None = None, **settings: float) -> FileStore:
    return FileStore(database or Database(None), FilesSettings(**settings), SCANNER, tmp_path / "data")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    files = _store(tmp_path)
    yield files
    files.close()


def _stage(store: FileStore, data: bytes) -> Path:
    path, handle = store.stage()
    with handle:
        handle.write(data)
    return path


def _add(store: FileStore, data: bytes, name: str = "doc.txt", owner: str = "key:a") -> str:
    return store.add([(_stage(store, data), name)], owner, "user_data")[0].id


def _ten_page_pdf() -> bytes:
    pages = []
    for number, topic in enumerate(TOPICS, 1):
        lines = [f"Chapter {number} is about {topic} and the people who look after the {topic}."] * 30
        if number == 7:
            lines[12] = "The harbour master keeps the spare key to the blue lighthouse under the third stone."
        pages.append(lines)
    return make_pdf(pages)


def test_display_names_are_never_paths() -> None:
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\Windows\\system32\\evil.exe") == "evil.exe"
    assert display_name("..") == "upload"
    assert display_name("a\x00b\nc.txt") == "a_b_c.txt"
    assert len(display_name("x" * 500 + ".pdf")) <= 200 and display_name("x" * 500 + ".pdf").endswith(".pdf")


def test_chunks_keep_pages_and_line_ranges() -> None:
    paged = chunk_text("page one\fpage two line\nsecond line", paged=True)
    assert [(c.page, c.text) for c in paged] == [(1, "page one"), (2, "page two line\nsecond line")]
    lines = chunk_text("\n".join(f"line number {n} " + "x" * 80 for n in range(1, 101)), paged=False)
    assert lines[0].line_start == 1 and lines[-1].line_end == 100
    assert all(len(c.text) <= CHUNK_CHARS for c in lines)
    assert lines[1].line_start <= lines[0].line_end  # consecutive chunks overlap
    long_line = chunk_text("y" * 5000, paged=False)
    assert len(long_line) > 4 and all(c.line_start == c.line_end == 1 for c in long_line)


def test_a_fact_on_page_seven_of_ten_is_retrieved(store: FileStore) -> None:
    file_id = _add(store, _ten_page_pdf(), "atlas.pdf")
    context = store.context_for([file_id], "key:a", "Where is the spare key to the blue lighthouse kept?", 300)
    assert context.chunks, "nothing retrieved"
    best = context.chunks[0]
    assert best.page == 7 and best.location == "page 7" and best.filename == "atlas.pdf"
    assert "third stone" in best.text
    assert context.tokens <= 300 == context.token_budget
    assert [c.score for c in context.chunks] == sorted((c.score for c in context.chunks), reverse=True)


def test_no_matching_word_gives_the_beginning_within_budget(store: FileStore) -> None:
    file_id = _add(store, "\n".join(f"line {n}: plain prose here" for n in range(400)).encode())
    context = store.context_for([file_id], "key:a", "zyzzyva", 400, count_tokens=lambda text: len(text.split()))
    assert context.chunks[0].line_start == 1
    assert 0 < context.tokens <= 400


def test_a_record_says_what_was_found_and_keeps_nothing_private(store: FileStore) -> None:
    record = store.add(
        [(_stage(store, b"Write to ana.silva@example.org about the plan."), "../x/n.txt")], "key:a", "p"
    )[0]
    assert record.private and record.private_kinds == ("email",)
    assert record.filename == "n.txt" and record.kind == "text" and record.bytes == 46
    assert "ana.silva" not in json.dumps(record.to_api())
    assert store.path_of(record).read_bytes().startswith(b"Write to")
    assert store.path_of(record).parent == store.folder and store.path_of(record).name == f"{record.id}.bin"


def test_a_failed_check_leaves_no_bytes_and_no_record(store: FileStore) -> None:
    good = _stage(store, SAMPLES["text"])
    with pytest.raises(UnsupportedFileTypeError):
        store.add([(good, "fine.txt"), (_stage(store, elf_executable()), "report.pdf")], "key:a", "user_data")
    assert list(store.folder.iterdir()) == []
    assert store.files_of("key:a") == []


def test_storage_cap_refuses_and_leaves_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path, max_storage_mb=0.001)  # ~1 KB
    _add(store, b"a short note that fits.")
    with pytest.raises(PayloadTooLargeError) as caught:
        _add(store, b"many words " * 100)
    assert caught.value.code == "storage_full" and caught.value.status_code == 413
    assert len(store.files_of("key:a")) == 1 and len(list(store.folder.iterdir())) == 1
    store.close()


def test_files_are_visible_to_their_owner_only(store: FileStore) -> None:
    first = _add(store, SAMPLES["json"], "a.json", owner="key:a")
    second = _add(store, SAMPLES["csv"], "b.csv", owner="key:a")
    assert [r.id for r in store.files_of("key:a")] == [second, first]
    with pytest.raises(NotFoundError) as caught:
        store.get(first, "key:b")
    assert first in caught.value.message
    with pytest.raises(NotFoundError):
        store.context_for([first], "key:b", "pensieve", 100)
    with pytest.raises(NotFoundError):
        store.delete(first, "key:b")
    store.delete(first, "key:a")
    assert [r.id for r in store.files_of("key:a")] == [second]
    assert [p.name for p in store.folder.iterdir()] == [f"{second}.bin"]


def test_purge_older_than(store: FileStore) -> None:
    old = _add(store, b"old note")
    cutoff = store.get(old, "key:a").created_at + 0.001
    assert store.purge_older_than(cutoff) == 1
    assert store.files_of("key:a") == [] and list(store.folder.iterdir()) == []


def test_temporary_folder_is_removed_at_close(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _add(store, b"note")
    folder = store.folder
    store.close()
    assert not folder.exists()


def test_persistent_store_survives_a_restart_and_cleans_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "data" / "pensieve.db"
    store = _store(tmp_path, Database(path))
    file_id = _add(store, _ten_page_pdf(), "atlas.pdf")
    (store.folder / ".partial-crashed").write_bytes(b"half an upload")
    (store.folder / "file-orphan.bin").write_bytes(b"renamed, never committed")
    store.close()
    store.database.close()
    assert (tmp_path / "data" / "uploads" / f"{file_id}.bin").exists()

    again = _store(tmp_path, Database(path))
    assert sorted(p.name for p in again.folder.iterdir()) == [f"{file_id}.bin"]
    assert again.rebuild_indexes() == 1
    context = again.context_for([file_id], "key:a", "spare key blue lighthouse", 300)
    assert context.chunks[0].page == 7
    again.database.close()


async def _chunks(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[str, bytes]:
    boundary = "testboundary42"
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def test_upload_is_streamed_and_refused_at_the_cap(tmp_path: Path) -> None:
    store = _store(tmp_path, max_upload_mb=0.01)  # ~10 KB
    content_type, body = _multipart([("purpose", None, b"assistants"), ("file", "../a.txt", b"ok " * 10_000)])
    with pytest.raises(PayloadTooLargeError) as caught:
        asyncio.run(receive_upload(content_type, _chunks(body), store))
    assert caught.value.code == "file_too_large"
    assert list(store.folder.iterdir()) == []
    content_type, body = _multipart([("purpose", None, b"assistants"), ("file", "../a.txt", b"ok " * 100)])
    upload = asyncio.run(receive_upload(content_type, _chunks(body), store))
    assert upload.fields == {"purpose": "assistants"} and upload.files[0][1] == "../a.txt"
    assert upload.files[0][0].read_bytes() == b"ok " * 100
    store.close()


def test_upload_without_a_file_or_in_a_wrong_field_is_a_400(store: FileStore) -> None:
    for parts in ([("purpose", None, b"x")], [("attachment", "a.txt", b"x")]):
        content_type, body = _multipart(parts)
        with pytest.raises(InvalidRequestError):
            asyncio.run(receive_upload(content_type, _chunks(body), store))
    with pytest.raises(InvalidRequestError):
        asyncio.run(receive_upload("application/json", _chunks(b"{}"), store))
    assert list(store.folder.iterdir()) == []
