"""The fake cloud's HTTP side: a threading server and the handler that answers, records and misbehaves."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from support.fake_cloud.bodies import (
    chat_logprobs,
    chat_prompt_tokens,
    completion_logprobs,
    error_body,
    prompt_of,
    text_of,
    token_count,
    word_pieces,
)
from support.fake_cloud.faults import ConnectionDroppedError, Fault

if TYPE_CHECKING:
    from support.fake_cloud.server import FakeCloud

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"
GENERATION_PATHS = frozenset({CHAT_PATH, COMPLETIONS_PATH})
_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


FAKE_CALL_ID = "call_fake0000000000000001"  # the id of the tool call FakeCloud.call_tool answers with


class CloudHTTPServer(ThreadingHTTPServer):
    """The HTTP server: daemon handler threads, a link back to its `FakeCloud`, open connections tracked."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256  # the default (5) drops connections under a burst of concurrent clients

    def __init__(self, port: int, cloud: FakeCloud) -> None:
        self.cloud = cloud
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)

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


class Handler(BaseHTTPRequestHandler):
    """One connection of the fake cloud (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    stall_after: int | None = None  # the current request's stall fault (content chunks before the stall)
    end_after: int | None = None  # the current request's early-end fault (events before the clean end)
    finish_reason = "stop"  # how the current request's answer ends
    server_version = "FakeCloud/1.0"
    server: CloudHTTPServer

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
        except (ConnectionDroppedError, *_CONNECTION_ERRORS):
            self.close_connection = True

    def _read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    raise ConnectionDroppedError
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
        self._send_json(status, error_body(status, message), headers)

    def _drop(self) -> None:
        """Close the connection now, without sending anything more."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_RDWR)
        raise ConnectionDroppedError

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
            self.stall_after = fault.stall_after_chunks if fault is not None else None
            end = fault.end_after_chunks if fault is not None else None
            self.finish_reason = (fault.finish_reason if fault is not None else None) or "stop"
            if end is not None and not body.get("stream"):
                drop = end  # not streamed, an early end is a closed connection
            # The role chunk is not a content chunk (see `_chat`): an early end keeps it and `end` pieces.
            self.end_after = None if end is None else end + (path == CHAT_PATH)
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

    def _apply_fault(self, fault: Fault) -> bool:
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
        responder = self.server.cloud.responder
        text = responder(body) if responder is not None else f"Echo: {text_of(last_user)}"
        prompt_tokens = chat_prompt_tokens(messages)
        completion_tokens = token_count(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        call = self.server.cloud.tool_call if body.get("tools") else None
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if call is not None:
            self.finish_reason = "tool_calls"
            function = {"name": call[0], "arguments": call[1]}
            message = {"role": "assistant", "content": None, "tool_calls": [{"id": FAKE_CALL_ID, "type": "function",
                                                                             "function": function}]}  # fmt: skip
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
                            "message": message,
                            "logprobs": None,
                            "finish_reason": self.finish_reason,
                        }
                    ],
                    "usage": usage,
                },
            )
            self.server.cloud._bill(prompt_tokens, completion_tokens)
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
        if call is not None:
            name, arguments = call
            head = {"index": 0, "id": FAKE_CALL_ID, "type": "function", "function": {"name": name, "arguments": ""}}
            events = [chunk({"role": "assistant", "content": None, "tool_calls": [head]}, None)]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None))
            pieces = []
        events += [chunk({"content": piece}, None) for piece in pieces]
        events.append(chunk({}, self.finish_reason))
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
        self._stream(events, None if drop is None else 1 + drop, prompt_tokens)

    def _completion(self, body: dict[str, Any], drop: int | None) -> None:
        """POST /v1/completions: echo the prompt (the first one of a list)."""
        model = body.get("model")
        if not isinstance(model, str) or "prompt" not in body:
            self._send_error(400, "'model' and 'prompt' are required properties.")
            return
        prompt = prompt_of(body.get("prompt"))
        responder = self.server.cloud.responder
        text = responder(body) if responder is not None else f"Echo: {prompt}"
        prompt_tokens = token_count(prompt)
        completion_tokens = token_count(text)
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
            self._send_json(200, {**chunk(text, self.finish_reason), "usage": usage})
            self.server.cloud._bill(prompt_tokens, completion_tokens)
            return
        pieces = word_pieces(text)
        offsets = [sum(len(piece) for piece in pieces[:index]) for index in range(len(pieces))]
        events = [chunk(piece, None, offset) for piece, offset in zip(pieces, offsets, strict=True)]
        events.append(chunk("", self.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk("", None), "choices": [], "usage": usage})
        self._stream(events, drop, prompt_tokens)

    def _stream(self, events: list[dict[str, Any]], drop_after: int | None, prompt_tokens: int) -> None:
        """Send SSE events over chunked transfer encoding; with `drop_after`, close after that many events.

        Bills the prompt and the text of every event written, however the stream ends (finished, cut by a
        fault, abandoned by the client), once any text was sent.
        """
        sent: list[str] = []
        billed = False
        try:
            if self.end_after is not None:
                events = events[: self.end_after]  # a clean but early end: no finish_reason, no [DONE]
            self._send_events(events, drop_after, sent)
            # Billed before the end marker, so a client that has read the whole stream sees the bill.
            billed = True
            self._bill_sent(prompt_tokens, sent)
            if self.end_after is None:
                self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            if not billed:
                self._bill_sent(prompt_tokens, sent)

    def _bill_sent(self, prompt_tokens: int, sent: list[str]) -> None:
        """Bill the prompt and the text sent, if any text was sent."""
        if "".join(sent):
            self.server.cloud._bill(prompt_tokens, token_count("".join(sent)))

    def _stall_until_closed(self) -> None:
        """Send nothing more until the client closes the connection (or reset/stop/hang_seconds), then drop it."""
        cloud = self.server.cloud
        wake, deadline = cloud._wake_event(), time.monotonic() + cloud.hang_seconds
        while not wake.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self.request], [], [], 0.05)
            if readable:
                try:
                    if not self.request.recv(1, socket.MSG_PEEK):
                        break  # end of file: the client went away
                except OSError:
                    break
        self._drop()

    def _send_events(self, events: list[dict[str, Any]], drop_after: int | None, sent: list[str]) -> None:
        """Write the events (applying the drop and stall faults), appending each one's text to `sent`."""
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
            if self.stall_after is not None and len([text for text in sent if text]) >= self.stall_after:
                self._stall_until_closed()
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
            sent.append(_event_text(event))
            if delay > 0:
                time.sleep(delay)
        if drop_after is not None:
            self._drop()

    def _write_chunk(self, data: bytes) -> None:
        """Write one HTTP chunk and flush it."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _event_text(event: dict[str, Any]) -> str:
    """The generated text a streamed event carries (chat delta content or completion text)."""
    text = ""
    for choice in event.get("choices") or ():
        delta = choice.get("delta")
        text += str((delta.get("content") if isinstance(delta, dict) else choice.get("text")) or "")
    return text
