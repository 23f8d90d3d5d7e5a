"""A local fake Hugging Face Hub on loopback, for the real `huggingface_hub` client (HF_ENDPOINT points here).

It implements what `pensieve models pull` asks of a hub, the way huggingface.co answers:

- `GET /api/models/{owner}/{name}[/revision/{rev}]?blobs=true`: the repository's commit (`sha`) and its files
  (`siblings`: `rfilename`, `size`, `blobId`, `lfs: {sha256, size, pointerSize}`); 404 with
  `X-Error-Code: RepoNotFound` for an unknown repository (401 for a private one without the token);
- `HEAD|GET /{owner}/{name}/resolve/{rev}/{file}`: a 302 to the "CDN" (`/cdn/...` on `localhost` instead of
  `127.0.0.1`, so the client sees another host) carrying `X-Repo-Commit`, `X-Linked-Etag` and `X-Linked-Size`,
  as the Hub does for LFS files; `EntryNotFound` for a missing file;
- `GET /cdn/{owner}/{name}/{file}`: the bytes, with `Range: bytes=N-` answered 206 + `Content-Range`.

Faults a test can ask for: `drop_after[file] = n` sends n bytes of the next GET of that file, then closes the
connection (once); `fail_downloads = k` answers the next k resumed (Range) GETs 503; `declared_sha256[file]` lists a
wrong hash. Every request is logged in `requests` (method, path, Range header, Authorization present).
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from support.hostile_gguf import BASE_KVS, gguf_file, gguf_string, kv_string, tensor_info

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_gguf(size_bytes: int = 4 * 1024 * 1024, name: str = "tiny") -> bytes:
    """A structurally valid GGUF of about `size_bytes` (one float32 tensor of varied values)."""
    count = max(8, size_bytes // 4)
    data = struct.pack("<256f", *range(256)) * (count // 256) + struct.pack(f"<{count % 256}f", *range(count % 256))
    kvs = [BASE_KVS[0], kv_string("general.name", name)]
    return gguf_file(kvs, [tensor_info("weight", [count])], data)


def tiny_split(count: int, size_bytes: int = 2 * 1024 * 1024, name: str = "tiny split") -> list[bytes]:
    """The parts of a split GGUF as `llama-gguf-split` writes them: each part a GGUF with one tensor of its
    own and `split.no` (uint16, from 0), `split.count` (uint16) and `split.tensors.count` (int32)."""
    count_floats = max(8, size_bytes // 4)
    parts = []
    for number in range(count):
        data = struct.pack(f"<{count_floats}f", *(float((i + number) % 251) for i in range(count_floats)))
        kvs = [
            BASE_KVS[0],
            kv_string("general.name", name),
            gguf_string("split.no") + struct.pack("<IH", 2, number),
            gguf_string("split.count") + struct.pack("<IH", 2, count),
            gguf_string("split.tensors.count") + struct.pack("<Ii", 5, count),
        ]
        parts.append(gguf_file(kvs, [tensor_info(f"weight.{number}", [count_floats])], data))
    return parts


@dataclass
class RequestRecord:
    """One request the fake hub saw."""

    method: str
    path: str
    range: str | None
    authorized: bool


@dataclass
class FakeHub:
    """The fake hub's content, faults and request log; `start()` serves it on 127.0.0.1."""

    repos: dict[str, dict[str, bytes | Path]] = field(default_factory=dict)
    private: dict[str, str] = field(default_factory=dict)  # repo -> the token it needs
    declared_sha256: dict[str, str] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    fail_downloads: int = 0
    requests: list[RequestRecord] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _hashes: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The endpoint to put in HF_ENDPOINT."""
        return f"http://127.0.0.1:{self.port}"

    def add(self, repo: str, filename: str, content: bytes | Path) -> None:
        """Serve `content` (bytes, or a file read on demand) as `repo`'s `filename`."""
        self.repos.setdefault(repo, {})[filename] = content

    def size(self, repo: str, filename: str) -> int:
        """The byte size of a served file."""
        content = self.repos[repo][filename]
        return content.stat().st_size if isinstance(content, Path) else len(content)

    def sha256(self, repo: str, filename: str) -> str:
        """The sha256 the hub lists for a file (the real one unless `declared_sha256` lies)."""
        if filename in self.declared_sha256:
            return self.declared_sha256[filename]
        key = (repo, filename)
        if key not in self._hashes:
            content = self.repos[repo][filename]
            digest = hashlib.sha256()
            if isinstance(content, Path):
                with content.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
            else:
                digest.update(content)
            self._hashes[key] = digest.hexdigest()
        return self._hashes[key]

    def read(self, repo: str, filename: str, start: int) -> bytes:
        """A served file's bytes from `start`."""
        content = self.repos[repo][filename]
        if isinstance(content, Path):
            with content.open("rb") as handle:
                handle.seek(start)
                return handle.read()
        return content[start:]

    def start(self) -> FakeHub:
        """Serve on a free loopback port in a daemon thread."""
        hub = self

        class Handler(_HubHandler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def downloads(self, filename: str) -> list[RequestRecord]:
        """The GETs of a file's bytes, in order."""
        gets = [r for r in self.requests if r.method == "GET" and r.path.startswith("/cdn/")]
        return [r for r in gets if r.path.endswith(filename)]


class _HubHandler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"})

    def _repo_allowed(self, repo: str) -> bool:
        token = self.fake.private.get(repo)
        if repo not in self.fake.repos:
            self._error(404, "RepoNotFound", "Repository not found")
            return False
        if token is not None and self.headers.get("authorization") != f"Bearer {token}":
            self._error(401, "RepoNotFound", "Invalid credentials in Authorization header")
            return False
        return True

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.fake.requests.append(
            RequestRecord(self.command, path, self.headers.get("range"), "authorization" in self.headers)
        )
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            self._model_info("/".join(parts[2:4]))
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve("/".join(parts[:2]), "/".join(parts[4:]))
        elif parts[0] == "cdn" and len(parts) >= 4:
            self._bytes("/".join(parts[1:3]), "/".join(parts[3:]))
        else:
            self._error(404, "NotFound", f"no route {path}")

    def _model_info(self, repo: str) -> None:
        if not self._repo_allowed(repo):
            return
        siblings = []
        for filename in self.fake.repos[repo]:
            size = self.fake.size(repo, filename)
            sha = self.fake.sha256(repo, filename)
            lfs = {"sha256": sha, "size": size, "pointerSize": 134}
            siblings.append({"rfilename": filename, "size": size, "blobId": sha[:40], "lfs": lfs})
        body = {"id": repo, "modelId": repo, "sha": COMMIT, "private": repo in self.fake.private, "siblings": siblings}
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo: str, filename: str) -> None:
        if not self._repo_allowed(repo):
            return
        if filename not in self.fake.repos[repo]:
            self._error(
                404,
                "EntryNotFound",
                f"{filename} does not exist",
            )
            return
        headers = {
            "X-Repo-Commit": COMMIT,
            "X-Linked-Etag": f'"{self.fake.sha256(repo, filename)}"',
            "X-Linked-Size": str(self.fake.size(repo, filename)),
            "ETag": '"pointer-etag"',
            "Location": f"http://localhost:{self.fake.port}/cdn/{repo}/{filename}",
        }
        self._send(302, b"", headers)

    def _bytes(self, repo: str, filename: str) -> None:
        if repo not in self.fake.repos or filename not in self.fake.repos[repo]:
            self._error(404, "EntryNotFound", "no such blob")
            return
        if self.command == "GET" and self.headers.get("range") and self.fake.fail_downloads > 0:
            self.fake.fail_downloads -= 1
            self._error(503, "ServiceUnavailable", "try again later")
            return
        size = self.fake.size(repo, filename)
        start = 0
        wanted = self.headers.get("range")
        if wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[len("bytes=") : -1])
            if start >= size:
                self._send(416, b"", {"Content-Range": f"bytes */{size}"})
                return
        status = 206 if wanted else 200
        self.send_response(status)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{self.fake.sha256(repo, filename)}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        body = self.fake.read(repo, filename, start)
        cut = self.fake.drop_after.pop(filename, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        view = memoryview(body)
        for offset in range(0, len(view), 1 << 20):
            self.wfile.write(view[offset : offset + (1 << 20)])
