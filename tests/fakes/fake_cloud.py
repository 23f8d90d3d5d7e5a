"""A fake cloud provider: a real OpenAI-compatible HTTP server on loopback, for integration tests.

`FakeCloud` runs a `ThreadingHTTPServer` on 127.0.0.1 (a free port picked by the OS) in a background
thread. Every connection is served by its own daemon thread, so a hanging request never blocks the others.

What it does:

- `POST /v1/chat/completions` and `POST /v1/completions` answer by echoing the last user message (or the
  prompt) as ``"Echo: <text>"``, streamed (SSE over chunked transfer encoding) or not, with deterministic
  token counts. `max_tokens` is ignored on purpose: tests rely on the full text coming back. Streamed
  answers carry logprobs when asked (`logprobs` / `top_logprobs`): every echoed piece counts as one token
  of log-probability `ECHO_LOGPROB`, with `ALTERNATIVE` as its runner-up.
- `GET /v1/models` (and `GET /v1/models/<id>`) list the configured models.
- Every request on a generation endpoint is recorded in `requests`, faulted or not.
- `set_fault` queues faults for the next generation requests: an HTTP status, a 429 with `Retry-After`,
  a hang, a connection dropped mid-stream, added latency.

Faults and the request log only concern the two generation endpoints; `/v1/models` is always answered
normally (after the API key check).

Example::

    fake = FakeCloud(api_key="sk-test")
    fake.start()
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    fake.set_fault(status=500)
    ...
    fake.stop()
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FakeCloud", "chat_prompt_tokens", "word_pieces"]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"
GENERATION_PATHS = frozenset({CHAT_PATH, COMPLETIONS_PATH})
HANG_SECONDS = 60.0
CHUNK_DELAY_SECONDS = 0.005
_WORD_PIECES = re.compile(r"\S+\s*|\s+")
_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _ConnectionDroppedError(Exception):
    """Raised inside a handler when the client went away (or a fault closed the connection)."""


@dataclass
class _Fault:
    """One queued fault; `remaining` counts the requests it still applies to."""

    status: int | None
    hang: bool
    retry_after: float | None
    drop_after_chunks: int | None
    latency: float
    remaining: int


def _error_body(status: int, message: str) -> dict[str, Any]:
    """The OpenAI error object for an HTTP status."""
    kinds: dict[int, tuple[str, str | None]] = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("permission_error", None),
        404: ("invalid_request_error", "unknown_url"),
        429: ("requests", "rate_limit_exceeded"),
    }
    error_type, code = kinds.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _text_of(content: Any) -> str:
    """The text of an OpenAI message content: a string, a list of content parts, or nothing."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def _prompt_of(prompt: Any) -> str:
    """The text of a legacy completions prompt: a string, or the first item of a list."""
    if isinstance(prompt, list):
        return str(prompt[0]) if prompt else ""
    return "" if prompt is None else str(prompt)


def _completion_tokens(text: str) -> int:
    """Deterministic completion token count: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


def chat_prompt_tokens(messages: list[Any]) -> int:
    """Deterministic prompt token count of chat messages: 3 + sum(4 + ceil(len(content) / 4))."""
    total = 3
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += 4 + math.ceil(len(_text_of(content)) / 4)
    return total


# The log-probability the fake cloud reports for every token it echoes, and for its one alternative.
ECHO_LOGPROB = -0.25
ALTERNATIVE = (" maybe", -2.5)


def chat_logprobs(piece: str, top: int) -> dict[str, Any]:
    """A chat chunk's `logprobs` for one echoed piece (one token), with `top` alternatives at most."""
    tops = [(piece, ECHO_LOGPROB), ALTERNATIVE][:top]
    entry = {"token": piece, "logprob": ECHO_LOGPROB, "bytes": list(piece.encode())}
    entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops]
    return {"content": [entry]}


def completion_logprobs(piece: str, offset: int, top: int) -> dict[str, Any]:
    """A text completion chunk's legacy `logprobs` for one echoed piece."""
    return {
        "tokens": [piece],
        "token_logprobs": [ECHO_LOGPROB],
        "top_logprobs": [dict([(piece, ECHO_LOGPROB), ALTERNATIVE][:top])],
        "text_offset": [offset],
    }


def word_pieces(text: str) -> list[str]:
    """`text` split into word pieces that keep their spaces: joining them gives `text` back exactly."""
    return _WORD_PIECES.findall(text)


class _Server(ThreadingHTTPServer):
    """The HTTP server: daemon handler threads, a link back to its `FakeCloud`, open connections tracked."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # the default (5) drops connections under a burst of concurrent clients

    def __init__(self, port: int, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else (a bug in the fake)."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """Shut down every open connection, waking the handler threads blocked on them."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One connection of the fake cloud (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeCloud/1.0"
    server: _Server

    # --- plumbing ------------------------------------------------------------------------------------

    def setup(self) -> None:
        """Track the connection so `stop()` can close it."""
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.request)

    def finish(self) -> None:
        """Untrack the connection; never fail on a connection the client already closed."""
        with self.server.connections_lock:
            self.server.connections.discard(self.request)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: tests read stderr."""

    def do_GET(self) -> None:
        """Handle a GET request."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Handle a POST request."""
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        """Route one request; a dropped connection ends it quietly."""
        try:
            self._route(method)
        except (_ConnectionDroppedError, *_CONNECTION_ERRORS):
            self.close_connection = True

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    raise _ConnectionDroppedError
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """Send a complete JSON response (with Content-Length, so the connection can be reused)."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        """Send an OpenAI-shaped error."""
        self._send_json(status, _error_body(status, message), headers)

    def _drop(self) -> None:
        """Close the connection now, without sending anything more."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)
        raise _ConnectionDroppedError

    def _authorized(self) -> bool:
        """Whether the request carries the expected bearer key (any key when none is configured)."""
        expected = self.server.cloud.api_key
        return expected is None or self.headers.get("Authorization", "") == f"Bearer {expected}"

    # --- routing ---------------------------------------------------------------------------------------

    def _route(self, method: str) -> None:
        """Record, apply faults, check the key, then answer."""
        path = urlsplit(self.path).path.rstrip("/") or "/"
        raw = self._read_body()
        cloud = self.server.cloud
        if method == "POST" and path in GENERATION_PATHS:
            body: Any
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = None
                recorded: dict[str, Any] = {"_raw": raw.decode("utf-8", "replace")}
            else:
                recorded = body if isinstance(body, dict) else {"_raw": body}
            headers = {name.lower(): value for name, value in self.headers.items()}
            cloud._record({"path": path, "headers": headers, "body": recorded})
            fault = cloud._take_fault()
            if fault is not None and self._apply_fault(fault):
                return
            if not self._authorized():
                self._send_error(401, "Incorrect API key provided.")
                return
            if not isinstance(body, dict):
                self._send_error(400, "We could not parse the JSON body of your request.")
                return
            drop = fault.drop_after_chunks if fault is not None else None
            if path == CHAT_PATH:
                self._chat(body, drop)
            else:
                self._completion(body, drop)
            return
        if method == "GET" and (path == MODELS_PATH or path.startswith(MODELS_PATH + "/")):
            if not self._authorized():
                self._send_error(401, "Incorrect API key provided.")
                return
            self._models(path)
            return
        self._send_error(404, f"Invalid URL ({method} {path})")

    def _apply_fault(self, fault: _Fault) -> bool:
        """Apply the latency, hang, status and rate-limit parts of a fault; True when the request is done."""
        cloud = self.server.cloud
        if fault.latency > 0:
            cloud._wake_event().wait(fault.latency)
        if fault.hang:
            cloud._wake_event().wait(cloud.hang_seconds)
            self._drop()
        if fault.retry_after is not None or fault.status is not None:
            status = fault.status if fault.status is not None else 429
            headers: dict[str, str] = {}
            if fault.retry_after is not None:
                value = fault.retry_after
                headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
            message = "Rate limit reached. Please retry later." if status == 429 else f"Injected fault ({status})."
            self._send_error(status, message, headers)
            return True
        return False

    # --- answers ---------------------------------------------------------------------------------------

    def _models(self, path: str) -> None:
        """GET /v1/models and GET /v1/models/<id>."""
        models = self.server.cloud.models
        entries = [{"id": model, "object": "model", "created": 0, "owned_by": "fake"} for model in models]
        if path == MODELS_PATH:
            self._send_json(200, {"object": "list", "data": entries})
            return
        wanted = path[len(MODELS_PATH) + 1 :]
        for entry in entries:
            if entry["id"] == wanted:
                self._send_json(200, entry)
                return
        self._send_json(
            404,
            {
                "error": {
                    "message": f"The model '{wanted}' does not exist",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
            },
        )

    def _chat(self, body: dict[str, Any], drop: int | None) -> None:
        """POST /v1/chat/completions: echo the last user message."""
        messages = body.get("messages")
        model = body.get("model")
        if not isinstance(messages, list) or not isinstance(model, str):
            self._send_error(400, "'model' and 'messages' are required properties.")
            return
        last_user = next(
            (m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), ""
        )
        text = f"Echo: {_text_of(last_user)}"
        prompt_tokens = chat_prompt_tokens(messages)
        completion_tokens = _completion_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not body.get("stream"):
            if drop is not None:
                self._drop()
            self._send_json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        want_logprobs = bool(body.get("logprobs"))
        top = int(body.get("top_logprobs") or 0)

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            """One chat.completion.chunk event (with logprobs for its content when they were asked for)."""
            content = delta.get("content")
            logprobs = chat_logprobs(content, top) if want_logprobs and content else None
            event: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
            }
            if include_usage:
                event["usage"] = None
            return event

        pieces = word_pieces(text)
        events = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in pieces]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        # The role chunk is not a content chunk: dropping after N keeps the role chunk and N pieces.
        self._stream(events, None if drop is None else 1 + drop)

    def _completion(self, body: dict[str, Any], drop: int | None) -> None:
        """POST /v1/completions: echo the prompt (the first one of a list)."""
        model = body.get("model")
        if not isinstance(model, str) or "prompt" not in body:
            self._send_error(400, "'model' and 'prompt' are required properties.")
            return
        prompt = _prompt_of(body.get("prompt"))
        text = f"Echo: {prompt}"
        prompt_tokens = _completion_tokens(prompt)
        completion_tokens = _completion_tokens(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        top = body.get("logprobs")  # the legacy API's count of alternatives (0 to 5); None: no logprobs

        def chunk(piece: str, finish_reason: str | None, offset: int = 0) -> dict[str, Any]:
            """One text_completion object (a streamed event, or the whole answer)."""
            logprobs = completion_logprobs(piece, offset, int(top)) if top is not None and piece else None
            return {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"text": piece, "index": 0, "logprobs": logprobs, "finish_reason": finish_reason}],
            }

        if not body.get("stream"):
            if drop is not None:
                self._drop()
            self._send_json(200, {**chunk(text, "stop"), "usage": usage})
            return
        pieces = word_pieces(text)
        offsets = [sum(len(piece) for piece in pieces[:index]) for index in range(len(pieces))]
        events = [chunk(piece, None, offset) for piece, offset in zip(pieces, offsets, strict=True)]
        events.append(chunk("", "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk("", None), "choices": [], "usage": usage})
        self._stream(events, drop)

    def _stream(self, events: list[dict[str, Any]], drop_after: int | None) -> None:
        """Send SSE events over chunked transfer encoding; with `drop_after`, close after that many events."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        self.end_headers()
        self.wfile.flush()
        delay = self.server.cloud.chunk_delay
        for index, event in enumerate(events):
            if drop_after is not None and index >= drop_after:
                self._drop()
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
            if delay > 0:
                time.sleep(delay)
        if drop_after is not None:
            self._drop()
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        """Write one HTTP chunk and flush it."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class FakeCloud:
    """A fake OpenAI-compatible cloud provider on loopback that records requests and injects faults."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        models: tuple[str, ...] = ("big-model",),
        hang_seconds: float = HANG_SECONDS,
        chunk_delay: float = CHUNK_DELAY_SECONDS,
    ) -> None:
        """Configure the fake; nothing listens until `start()`.

        `api_key`: the bearer key every request must carry (None accepts any). `models`: what `/v1/models`
        lists. `hang_seconds`: how long a hang fault lasts at most. `chunk_delay`: pause between streamed events.
        """
        self.api_key = api_key
        self.models = tuple(models)
        self.hang_seconds = hang_seconds
        self.chunk_delay = chunk_delay
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._faults: deque[_Fault] = deque()
        self._wake = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server thread (idempotent). After `stop()`, starts again on the same port."""
        with self._lock:
            if self._server is not None:
                return
            self._wake = threading.Event()
            server = _Server(self._port, self)
            self._port = int(server.server_address[1])
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-cloud", daemon=True
            )
            self._server, self._thread = server, thread
        thread.start()

    def stop(self) -> None:
        """Shut the server down, waking hanging handlers and closing open connections (idempotent)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
            self._wake.set()
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeCloud:
        """Start the server: `with FakeCloud() as fake: ...`."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port the server listens on (only meaningful once started)."""
        if not self._port:
            raise RuntimeError("FakeCloud is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of the fake: ``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # --- the request log and faults ----------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received on a generation endpoint, in order (a copy).

        Each entry: ``{"path": ..., "headers": {lower-cased name: value}, "body": parsed JSON}``; a body
        that is not a JSON object is recorded as ``{"_raw": ...}``.
        """
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and queued faults, and wake every request currently hanging."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._wake.set()
            self._wake = threading.Event()

    def set_fault(
        self,
        *,
        status: int | None = None,
        hang: bool = False,
        rate_limit_retry_after: float | None = None,
        drop_after_chunks: int | None = None,
        latency: float = 0.0,
        times: int = 1,
    ) -> None:
        """Queue a fault for the next `times` generation requests (faults are consumed in order).

        `status`: answer with that HTTP status and an OpenAI error body. `hang`: send nothing until
        `reset()`/`stop()` or `hang_seconds`, then close. `rate_limit_retry_after`: answer 429 with that
        `Retry-After`. `drop_after_chunks`: streamed, send that many content chunks then close the connection
        (no ``[DONE]``); not streamed, close without a response. `latency`: wait that long first. Keywords
        combine: latency applies first, then hang, then status / rate limit, then the normal answer (dropped).
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if latency < 0 or (drop_after_chunks is not None and drop_after_chunks < 0):
            raise ValueError("latency and drop_after_chunks cannot be negative")
        if status is None and not hang and rate_limit_retry_after is None and drop_after_chunks is None and not latency:
            raise ValueError("set_fault needs at least one fault")
        fault = _Fault(status, hang, rate_limit_retry_after, drop_after_chunks, latency, times)
        with self._lock:
            self._faults.append(fault)

    def _record(self, entry: dict[str, Any]) -> None:
        """Append one request to the log."""
        with self._lock:
            self._requests.append(entry)

    def _take_fault(self) -> _Fault | None:
        """Consume one application of the oldest queued fault, if any."""
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.popleft()
            return fault

    def _wake_event(self) -> threading.Event:
        """The event set by the next `reset()` or `stop()`."""
        with self._lock:
            return self._wake
