"""Files on the real server: /api/files and the official SDK's client.files, limits, owners, persistence.

Every allowed kind goes in through both APIs; an oversized file, an executable renamed .pdf and a hostile
file name are refused or tamed with nothing left behind; another API key cannot see a file; the temporary
upload folder is gone after a stop; with PENSIEVE_PERSIST=sqlite a file and its index survive a restart.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import openai
import pytest

from support.checks import assert_openai_error, make_client
from support.documents import SAMPLES, elf_executable, make_docx, make_pdf
from support.server import ServerFactory, ServerHandle

ALL_KINDS: dict[str, tuple[str, bytes]] = {
    **{kind: (f"sample.{kind}", data) for kind, data in SAMPLES.items()},
    "pdf": ("sample.pdf", make_pdf([["Quarterly report"], ["The heron count rose to 412 this spring."]])),
    "docx": ("sample.docx", make_docx(["Minutes of the meeting.", "The budget was approved."])),
}


def _upload(http: httpx.Client, name: str, data: bytes, **headers: str) -> httpx.Response:
    return http.post("/api/files", files={"file": (name, data)}, headers=headers)


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_each_kind_through_api_files(http: httpx.Client, kind: str) -> None:
    name, data = ALL_KINDS[kind]
    response = _upload(http, name, data)
    assert response.status_code == 200, response.text
    record = response.json()["data"][0]
    assert record["kind"] == kind and record["bytes"] == len(data) and record["filename"] == name
    assert record["id"].startswith("file-") and record["chars"] > 0
    original = http.get(f"/api/files/{record['id']}/content")
    assert original.content == data and original.headers["content-type"].startswith(record["content_type"][:10])
    assert original.headers["x-content-type-options"] == "nosniff"
    text = http.get(f"/api/files/{record['id']}/content", params={"format": "text"}).text
    assert text and "<script" not in text
    assert http.get(f"/api/files/{record['id']}").json()["id"] == record["id"]
    assert record["id"] in [f["id"] for f in http.get("/api/files").json()["data"]]


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_each_kind_through_the_openai_sdk(client: openai.OpenAI, kind: str, tmp_path: Path) -> None:
    name, data = ALL_KINDS[kind]
    path = tmp_path / name
    path.write_bytes(data)
    with path.open("rb") as handle:
        created = client.files.create(file=handle, purpose="assistants")
    assert created.object == "file" and created.bytes == len(data) and created.filename == name
    assert created.purpose == "assistants" and created.status == "processed"
    assert client.files.retrieve(created.id).id == created.id
    assert created.id in [f.id for f in client.files.list()]
    assert client.files.content(created.id).read() == data
    assert client.files.delete(created.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_search_finds_the_passage(http: httpx.Client) -> None:
    file_id = _upload(http, "report.pdf", ALL_KINDS["pdf"][1]).json()["data"][0]["id"]
    found = http.post("/api/files/search", json={"file_ids": [file_id], "query": "how many herons?"}).json()
    assert found["data"][0]["page"] == 2 and "412" in found["data"][0]["text"]
    missing = http.post("/api/files/search", json={"file_ids": ["file-nope"], "query": "x"})
    assert "file-nope" in assert_openai_error(missing, 404, code="file_not_found")["message"]


def test_upload_larger_than_the_request_body_limit_is_accepted(http: httpx.Client) -> None:
    data = b"A line of plain prose about rivers and bridges.\n" * 200_000  # ~9.6 MB, over the 8 MB body limit
    response = _upload(http, "big.txt", data)
    assert response.status_code == 200, response.text
    record = response.json()["data"][0]
    assert record["bytes"] == len(data) and record["truncated"] is True  # 2M characters are kept
    assert http.delete(f"/api/files/{record['id']}").json()["deleted"] is True


def test_executable_renamed_pdf_is_refused(http: httpx.Client) -> None:
    before = http.get("/api/files").json()["data"]
    error = assert_openai_error(_upload(http, "invoice.pdf", elf_executable()), 415, code="unsupported_file_type")
    assert "ELF" in error["message"]
    assert http.get("/api/files").json()["data"] == before


def test_pdf_named_txt_is_a_pdf(http: httpx.Client) -> None:
    record = _upload(http, "notes.txt", ALL_KINDS["pdf"][1]).json()["data"][0]
    assert record["kind"] == "pdf" and record["pages"] == 2


def test_path_in_the_name_is_tamed(http: httpx.Client, server: ServerHandle) -> None:
    record = _upload(http, "../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n").json()["data"][0]
    assert record["filename"] == "passwd"
    work = Path(server.env["PENSIEVE_DATA_DIR"]).parent
    assert not (work / "etc").exists() and not (work.parent / "etc" / "passwd").exists()
    download = http.get(f"/api/files/{record['id']}/content")
    assert 'filename="passwd"' in download.headers["content-disposition"]


def test_v1_files_needs_a_purpose(http: httpx.Client) -> None:
    response = http.post("/v1/files", files={"file": ("a.txt", b"hello there")})
    assert_openai_error(response, 400, code="missing_required_parameter", param="purpose")


def test_limits_owners_and_the_temporary_folder(server_factory: ServerFactory, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"PENSIEVE_API_KEYS": "a,b", "PENSIEVE_MAX_UPLOAD_MB": "1", "TMPDIR": str(temp)}
    with server_factory("files-keys", env) as srv, httpx.Client(base_url=srv.base_url, timeout=60) as http:
        folders = list(temp.glob("pensieve-uploads-*"))
        assert len(folders) == 1
        too_big = _upload(http, "big.txt", b"x" * 1_500_000, authorization="Bearer a")
        assert "PENSIEVE_MAX_UPLOAD_MB" in assert_openai_error(too_big, 413, code="file_too_large")["message"]
        assert list(folders[0].iterdir()) == []
        record = _upload(http, "mine.txt", b"only for a", authorization="Bearer a").json()["data"][0]
        as_b = {"authorization": "Bearer b"}
        assert_openai_error(http.get(f"/api/files/{record['id']}", headers=as_b), 404, code="file_not_found")
        assert_openai_error(http.delete(f"/api/files/{record['id']}", headers=as_b), 404)
        assert http.get("/api/files", headers=as_b).json()["data"] == []
        b_client = make_client(srv.base_url, api_key="b")
        with pytest.raises(openai.NotFoundError):
            b_client.files.content(record["id"])
        assert http.get("/api/files").status_code == 401
        assert len(list(folders[0].iterdir())) == 1
    assert not folders[0].exists()


def test_a_file_and_its_index_survive_a_restart(server_factory: ServerFactory, tmp_path: Path) -> None:
    env = {"PENSIEVE_PERSIST": "sqlite", "PENSIEVE_DATA_DIR": str(tmp_path / "data")}
    pdf = make_pdf([[f"Page {n} is about nothing in particular."] for n in range(1, 7)] + [["The vault code is 7781."]])
    with server_factory("files-persist-1", env) as srv:
        file_id = httpx.post(f"{srv.base_url}/api/files", files={"file": ("vault.pdf", io.BytesIO(pdf))}).json()[
            "data"
        ][0]["id"]
    with server_factory("files-persist-2", env) as srv, httpx.Client(base_url=srv.base_url, timeout=60) as http:
        assert http.get(f"/api/files/{file_id}").json()["pages"] == 7
        assert http.get(f"/api/files/{file_id}/content").content == pdf
        found = http.post("/api/files/search", json={"file_ids": [file_id], "query": "vault code"}).json()
        assert found["data"][0]["page"] == 7 and "7781" in found["data"][0]["text"]
        assert "indexed from" in srv.log_tail(400)
