"""Request guards: a body-size limit enforced while reading, a deadline, and cancellation when a client leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import TypeVar

import anyio
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pensieve.api.drain import Drain
from pensieve.errors import PayloadTooLargeError, PensieveError, RequestTimeoutError, ServiceUnavailableError

T = TypeVar("T")


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, by Content-Length or by counting streamed chunks.

    File uploads (POST to one of `upload_paths`) get `upload_limit()` instead, read per request so a
    settings change applies at once: the upload route enforces the per-file and storage caps itself,
    while streaming, and this limit only bounds the body as a whole.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        upload_paths: frozenset[str] = frozenset(),
        upload_limit: Callable[[], int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_paths = upload_paths
        self.upload_limit = upload_limit

    def _limit(self, scope: Scope) -> int:
        if self.upload_limit is not None and scope.get("method") == "POST" and scope["path"] in self.upload_paths:
            return max(self.max_bytes, self.upload_limit())
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        too_large = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise PayloadTooLargeError(self._message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            # Once the body overflowed, whatever the app makes of the exception (FastAPI reports a body it
            # could not read as a 400) is dropped: the client gets the 413 below.
            if too_large:
                return
            response_started = True
            await send(message)

        with contextlib.suppress(PayloadTooLargeError):
            await self.app(scope, counting_receive, guarded_send)
        if too_large and not response_started:
            await self._refuse(send, limit)

    def _message(self, limit: int) -> str:
        if limit > self.max_bytes:
            return (
                f"The upload is larger than the server's limit of {limit} bytes for one upload request "
                "(PENSIEVE_MAX_UPLOAD_MB per file): send fewer files at a time."
            )
        return f"The request body is larger than the server's limit of {limit} bytes (PENSIEVE_MAX_REQUEST_BYTES)."

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(PayloadTooLargeError(self._message(limit)).to_body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# 499 is nginx's "client closed request": logged, never seen by the (gone) client.
CLIENT_CLOSED = 499


class ClientDisconnectedError(Exception):
    """The client went away before its (non-streamed) answer was ready."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client disconnects first (so generation stops)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request itself was cancelled (server shutdown): so is its work
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientDisconnectedError
    return task.result()


class Deadline:
    """When a request must stop: PENSIEVE_REQUEST_TIMEOUT_SECONDS after its start (0 = never), or when the
    shutdown's drain time is over (`drain.stopped`), whichever comes first.

    The work runs in the caller's own task under an anyio cancel scope (not in a task of its own, as
    `asyncio.wait_for` would): a stream's generator is then never closed while another task still runs it,
    which a client leaving at the same moment used to cause ("aclose(): asynchronous generator is already
    running").
    """

    def __init__(self, seconds: float, drain: Drain | None = None) -> None:
        self.seconds = seconds
        self._at = asyncio.get_running_loop().time() + seconds if seconds > 0 else math.inf
        self._drain = drain

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None without a deadline."""
        if math.isinf(self._at):
            return None
        return max(0.0, self._at - asyncio.get_running_loop().time())

    def error(self) -> PensieveError:
        """What a client gets when the request is stopped."""
        if self._drain is not None and self._drain.stopped.is_set():
            return ServiceUnavailableError(
                "The server is shutting down and this request ran past PENSIEVE_SHUTDOWN_TIMEOUT; retry it.",
                code="shutting_down",
                retry_after_seconds=5,
            )
        return RequestTimeoutError(
            f"The request did not finish within the server's limit of {self.seconds:g} s "
            "(PENSIEVE_REQUEST_TIMEOUT_SECONDS) and was stopped. Ask for fewer tokens, or try again when the "
            "server is less busy."
        )

    @contextlib.contextmanager
    def _scope(self) -> Iterator[anyio.CancelScope]:
        scope = anyio.CancelScope(deadline=self._at)
        if self._drain is not None:
            self._drain.watch(scope)
        try:
            with scope:
                yield scope
        finally:
            if self._drain is not None:
                self._drain.unwatch(scope)

    async def within(self, work: Awaitable[T]) -> T:
        """Await `work` in this task; when the deadline passes or the drain stops it, cancel it, raise `error()`."""
        with self._scope():
            return await work
        raise self.error()  # reached only when the scope cancelled the work

    async def limit(self, payloads: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
        """`payloads` until the deadline or the drain's stop; then the stream is closed (its work cancelled)
        and the error raised (the SSE layer sends it as an error event before [DONE])."""
        async with contextlib.aclosing(payloads):
            while True:
                try:
                    payload = await self.within(anext(payloads))
                except StopAsyncIteration:
                    return
                yield payload
