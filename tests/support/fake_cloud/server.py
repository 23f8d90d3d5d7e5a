"""`FakeCloud`: starts and stops the fake provider, keeps its request log and its queue of faults."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from support.fake_cloud.faults import CHUNK_DELAY_SECONDS, HANG_SECONDS, Fault, make_fault
from support.fake_cloud.handler import CloudHTTPServer


class FakeCloud:
    """A fake OpenAI-compatible cloud provider on loopback that records requests and injects faults."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        models: tuple[str, ...] = ("big-model",),
        hang_seconds: float = HANG_SECONDS,
        chunk_delay: float = CHUNK_DELAY_SECONDS,
        responder: Callable[[dict[str, Any]], str] | None = None,
    ) -> None:
        """Configure the fake; nothing listens until `start()`.

        `api_key`: the bearer key every request must carry (None accepts any). `models`: what `/v1/models`
        lists. `hang_seconds`: how long a hang fault lasts at most. `chunk_delay`: pause between streamed events.
        `responder`: the answer text for a request body, instead of the echo (the routing bench's oracle).
        """
        self.api_key = api_key
        self.models = tuple(models)
        self.hang_seconds = hang_seconds
        self.chunk_delay = chunk_delay
        self.responder = responder
        # (name, arguments JSON) set by `call_tool`: requests with tools get this call instead of text.
        self.tool_call: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._bills: list[dict[str, int]] = []
        self._faults: deque[Fault] = deque()
        self._wake = threading.Event()
        self._server: CloudHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server thread (idempotent). After `stop()`, starts again on the same port."""
        with self._lock:
            if self._server is not None:
                return
            self._wake = threading.Event()
            server = CloudHTTPServer(self._port, self)
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

    def provider_env(self, **extra: str) -> dict[str, str]:
        """PENSIEVE_* settings of a server whose cloud is this fake (provider `fake`, model `fake/big-model`),
        plus `extra`."""
        return {
            "PENSIEVE_CLOUD_NAME": "fake",
            "PENSIEVE_CLOUD_BASE_URL": self.base_url,
            "PENSIEVE_CLOUD_API_KEY": self.api_key or "",
            "PENSIEVE_CLOUD_MODEL": "big-model",
            **extra,
        }

    # --- the request log and faults ----------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received on a generation endpoint, in order (a copy).

        Each entry: ``{"path": ..., "headers": {lower-cased name: value}, "body": parsed JSON}``; a body
        that is not a JSON object is recorded as ``{"_raw": ...}``.
        """
        with self._lock:
            return list(self._requests)

    def call_tool(self, name: str, arguments: str) -> None:
        """Answer every request that offers tools with a call of `name` (id FAKE_CALL_ID) until `reset()`.

        Streamed, the call comes as OpenAI sends it: a first delta with index, id, type, name and empty
        arguments, then the arguments in two pieces, then finish_reason `tool_calls`.
        """
        self.tool_call = (name, arguments)

    def reset(self) -> None:
        """Forget recorded requests, queued faults and a tool call, and wake every request currently hanging."""
        with self._lock:
            self.tool_call = None
            self._requests.clear()
            self._bills.clear()
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
        stall_after_chunks: int | None = None,
        end_after_chunks: int | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """Queue a fault for the next `times` generation requests (faults are consumed in order).

        `status`: answer with that HTTP status and an OpenAI error body. `hang`: send nothing until
        `reset()`/`stop()` or `hang_seconds`, then close. `rate_limit_retry_after`: answer 429 with that
        `Retry-After`. `drop_after_chunks`: streamed, send that many content chunks then close the connection
        (no ``[DONE]``); not streamed, close without a response. `latency`: wait that long first. Keywords
        combine: latency applies first, then hang, then status / rate limit, then the normal answer (dropped).
        `stall_after_chunks`: streamed, send that many content chunks, then send nothing more until the client
        closes the connection (or `reset()`/`stop()`/`hang_seconds`): a client that gives up mid-stream has
        then received exactly what was billed. `end_after_chunks`: streamed, send that many content chunks, then
        end the response cleanly (a well-formed end of body) without a finish_reason or ``[DONE]``; not streamed,
        close without a response. `finish_reason`: the answer ends with this finish_reason instead of ``stop``.
        """
        fault = make_fault(
            status=status,
            hang=hang,
            rate_limit_retry_after=rate_limit_retry_after,
            drop_after_chunks=drop_after_chunks,
            latency=latency,
            times=times,
            stall_after_chunks=stall_after_chunks,
            end_after_chunks=end_after_chunks,
            finish_reason=finish_reason,
        )
        with self._lock:
            self._faults.append(fault)

    @property
    def bills(self) -> list[dict[str, int]]:
        """What the fake billed, one entry per answer that sent any text: ``prompt_tokens``, ``completion_tokens``.

        As a real provider does, an answer is billed for its prompt and every token it sent, including a
        stream the client abandoned or that a fault cut (completion tokens: one per four characters sent).
        An answer cut before its first piece of text bills nothing.
        """
        with self._lock:
            return [dict(bill) for bill in self._bills]

    def billed_tokens(self) -> tuple[int, int]:
        """(prompt tokens, completion tokens) billed since the last `reset()`."""
        bills = self.bills
        return sum(b["prompt_tokens"] for b in bills), sum(b["completion_tokens"] for b in bills)

    def _bill(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one answer's billed tokens."""
        with self._lock:
            self._bills.append({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})

    def _record(self, entry: dict[str, Any]) -> None:
        """Append one request to the log."""
        with self._lock:
            self._requests.append(entry)

    def _take_fault(self) -> Fault | None:
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
