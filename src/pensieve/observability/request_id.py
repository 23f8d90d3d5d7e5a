"""Request ids, the access log and the HTTP response counters: one pure ASGI middleware, outermost in the app.

Each HTTP request gets an id: the client's `x-request-id` when it is sane (1-128 characters of
`A-Z a-z 0-9 . _ : -`, so a hostile value cannot forge log lines or bloat them), else `req_` + 32 hex
digits. The id is kept in a context variable while the request runs, so every log record made for it
carries the id (`pensieve.observability.logging`), and it is sent back in the `x-request-id` header of
every response, the guards' 403 and 413 refusals and unhandled 500s included. When the response ends,
one access-log line (id, method, path, status, duration; never a body or a header) is written and the
response is counted by route template and status code (`Metrics.http_response`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.routing import Mount, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pensieve.errors import PensieveError

if TYPE_CHECKING:
    from pensieve.observability.metrics import Metrics

HEADER = "x-request-id"
MAX_ID_LENGTH = 128
UNMATCHED_ROUTE = "unmatched"  # the route label of every path no route serves (404s), one label for all
_SANE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_ID_LENGTH}}}")
_MAX_LOGGED_PATH = 200
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("pensieve_request_id", default=None)
access_logger = logging.getLogger("pensieve.access")


def current_request_id() -> str | None:
    """The id of the HTTP request being served in this context, or None outside requests."""
    return _request_id.get()


def new_request_id() -> str:
    """A fresh id: `req_` and a random UUID's 32 hex digits."""
    return f"req_{uuid.uuid4().hex}"


def sane_request_id(value: str | None) -> str | None:
    """`value` stripped, when it is a usable id (1-128 of A-Z a-z 0-9 . _ : -); None otherwise."""
    if value is None:
        return None
    value = value.strip()
    return value if _SANE_ID.fullmatch(value) else None


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's `x-request-id` (the first one) when sane, else a new id."""
    for key, value in headers:
        if key.lower() == HEADER.encode():
            return sane_request_id(value.decode("latin-1")) or new_request_id()
    return new_request_id()


def route_templates(app: Any) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, template) of every path the app serves, literal paths before those with parameters.

    Read from the OpenAPI paths and the top-level routes (public API: FastAPI wraps included routers in
    private types that match differently from version to version).
    """
    try:
        paths = set(app.openapi().get("paths", {}))
    except Exception:  # a schema that cannot be built leaves the top-level routes
        paths = set()
    for route in getattr(app, "routes", ()):
        if isinstance(path := getattr(route, "path", None), str):
            # A mount (the offline docs' files) serves everything under its path.
            paths.add(f"{path}/{{path:path}}" if isinstance(route, Mount) else path)
    ordered = sorted(paths, key=lambda template: (template.count("{"), template))
    return [(compile_path(template)[0], template) for template in ordered if template.startswith("/")]


def route_label(scope: Scope, templates: list[tuple[re.Pattern[str], str]]) -> str:
    """The template of the route that served (or would serve) the request, e.g. `/api/admin/models/{model_id}`.

    Raw paths would give Prometheus one series per URL a client invents; templates are few and fixed.
    """
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    # The guards refuse before routing: the path is matched against the templates here.
    raw = str(scope.get("path", ""))
    return next((template for pattern, template in templates if pattern.match(raw)), UNMATCHED_ROUTE)


def loggable(text: str, limit: int = _MAX_LOGGED_PATH) -> str:
    """`text` with control characters escaped and cut to `limit`: a path must not forge log lines."""
    shown = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


class RequestContextMiddleware:
    """ASGI middleware: request id (context and response header), access log, HTTP response counters.

    `metrics` returns the app's metrics once its services exist (None before start-up finished).
    """

    def __init__(self, app: ASGIApp, *, metrics: Callable[[], Metrics | None] = lambda: None) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: list[tuple[re.Pattern[str], str]] | None = None  # built at the first response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers") or ())
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), request_id.encode())]}
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            failed = True
            if status is None:
                # Starlette's error middleware sits outside this one; answering here puts the id on the 500.
                # A client already gone cannot be answered: the original error matters more.
                with contextlib.suppress(Exception):
                    await _send_internal_error(send_with_id)
            raise
        finally:
            # Also when the request is cancelled: its access line is written, with '-' if nothing was sent.
            self._account(scope, status, started)
            # After an error the variable stays set: the handler outside logs the traceback, and that line
            # should name the request too. Each request runs in its own task, so the value ends with it.
            if not failed:
                _request_id.reset(token)

    def _account(self, scope: Scope, status: int | None, started: float) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        method, path = loggable(str(scope.get("method", "")), 16), loggable(str(scope.get("path", "")))
        fields: dict[str, Any] = {"method": method, "path": path, "status": status}
        fields["duration_ms"] = round(duration_ms, 1)
        # status None: the client left before any answer was sent.
        shown = status if status is not None else "-"
        access_logger.info("%s %s %s %.1f ms", method, path, shown, duration_ms, extra={"fields": fields})
        metrics = self.metrics()
        if metrics is not None and status is not None:
            if self._templates is None:
                self._templates = route_templates(scope.get("app"))
            metrics.http_response(route_label(scope, self._templates), status)


async def _send_internal_error(send: Send) -> None:
    """The 500 the app's own handler would send (OpenAI's error shape), sent from here with the id."""
    body = json.dumps(PensieveError("The server had an internal error; see its log for details.").to_body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
