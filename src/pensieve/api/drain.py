"""Graceful shutdown: on SIGTERM or Ctrl-C the server drains instead of dropping what it is doing.

`Drain.begin()` (called by `pensieve.graceful.GracefulServer` on the first signal) turns /ready to 503
and makes `DrainMiddleware` answer every new request with 503 `shutting_down`, while requests already
running go on. When they are all done, or after PENSIEVE_SHUTDOWN_TIMEOUT, `stopped` is set: requests
still running are cut (a stream ends with an error event and [DONE], a whole answer gets 503), and the
server exits: workers stopped, ledger closed. The probes (/health, /ready, /metrics) keep answering.
"""

from __future__ import annotations

import asyncio
import json
import logging

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pensieve.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

PROBES = frozenset({"/health", "/ready", "/metrics"})
# After the drain time is over, how long the cut requests get to send their last event and finish.
CUT_GRACE_SECONDS = 5.0


class Drain:
    """The shutdown state of one server: draining or not, and the requests still running."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.draining = False
        self.stopped = asyncio.Event()  # set when running requests must stop
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._scopes: set[anyio.CancelScope] = set()  # the running requests' deadlines, cut when stopped

    def started(self) -> None:
        """A request began (probes are not counted)."""
        self.in_flight += 1
        self._idle.clear()

    def finished(self) -> None:
        """A request ended (its whole response was sent, or it failed)."""
        self.in_flight -= 1
        if self.in_flight <= 0:
            self.in_flight = 0
            self._idle.set()

    def watch(self, scope: anyio.CancelScope) -> None:
        """Cancel `scope` when running requests must stop (at once if they already must)."""
        if self.stopped.is_set():
            scope.cancel()
        else:
            self._scopes.add(scope)

    def unwatch(self, scope: anyio.CancelScope) -> None:
        """`scope` ended: forget it."""
        self._scopes.discard(scope)

    def stop(self) -> None:
        """Stop every running request now (the drain time is over, or a second signal came)."""
        self.stopped.set()
        for scope in list(self._scopes):
            scope.cancel()

    def begin(self) -> None:
        """Stop taking requests; the running ones may finish (see `run`)."""
        if not self.draining:
            self.draining = True
            logger.info(
                "shutting down: %d request(s) running, waiting up to %g s for them (PENSIEVE_SHUTDOWN_TIMEOUT)",
                self.in_flight,
                self.timeout_seconds,
            )

    async def run(self) -> None:
        """Wait for the running requests up to the timeout, then cut the rest and give them time to end."""
        self.begin()
        if not await self._wait_idle(self.timeout_seconds):
            logger.warning("shutdown timeout: stopping %d request(s) still running", self.in_flight)
        self.stop()
        await self._wait_idle(CUT_GRACE_SECONDS)

    async def _wait_idle(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def refusal(self) -> ServiceUnavailableError:
        """What a request arriving during the drain gets."""
        return ServiceUnavailableError(
            "The server is shutting down; retry on another instance or when it is back.",
            code="shutting_down",
            retry_after_seconds=5,
        )


class DrainMiddleware:
    """ASGI middleware: counts running requests and refuses new ones (except probes) while draining."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in PROBES:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await _refuse(send, self.drain.refusal())
            return
        self.drain.started()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.finished()


async def _refuse(send: Send, error: ServiceUnavailableError) -> None:
    body = json.dumps(error.to_body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(key.encode(), value.encode()) for key, value in error.headers.items()]
    headers.append((b"connection", b"close"))
    start: Message = {"type": "http.response.start", "status": error.status_code, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
