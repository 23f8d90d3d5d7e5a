"""Defence against DNS rebinding and cross-site requests, checked before any route runs.

A web page can reach a server on the user's loopback in two ways a plain Bearer key does not stop when
no key is set (the default): it rebinds its own DNS name to 127.0.0.1, so the browser sends requests
with `Host: attacker.example` that it treats as same-origin; or it sends "simple" cross-site requests
(a form POST, a bodiless fetch) whose answers it cannot read but whose effects happen.

- Host: IP literals, `localhost` and `*.localhost` are always allowed (rebinding needs a DNS name, as
  Vite's dev server reasons); other names only when listed in PENSIEVE_ALLOWED_HOSTS (`name`, or
  `.example.com` for a domain and its subdomains, or `*` for any). Otherwise 403 `host_not_allowed`.
- State-changing methods (POST, PUT, PATCH, DELETE) from a browser must be same-origin: an `Origin`
  other than the request's own (or `null`), or `Sec-Fetch-Site: cross-site/same-site`, is refused with
  403 `cross_site_request` unless the origin is one of PENSIEVE_CORS_ORIGINS. Clients that are not
  browsers (the SDKs, curl) send neither header and are not affected.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from pensieve.errors import ForbiddenRequestError

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(host_header: str) -> str:
    """The name in a Host header, lower-cased, without its port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    if host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def is_ip_literal(name: str) -> bool:
    """True for `127.0.0.1`, `::1`, `10.0.0.7` ...: names DNS rebinding cannot use."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str, allowed: Iterable[str]) -> bool:
    """Whether a request's Host header is one this server answers (see the module docstring)."""
    name = host_name(host_header)
    if not name:
        return True  # no Host at all (an HTTP/1.0 probe) is no browser: rebinding always sends one
    if is_ip_literal(name) or name == "localhost" or name.endswith(".localhost"):
        return True
    for entry in (item.strip().lower().rstrip(".") for item in allowed):
        if entry == "*" or entry == name or (entry.startswith(".") and (name.endswith(entry) or name == entry[1:])):
            return True
    return False


def _origin_key(origin: str) -> str:
    """`https://Example.com:443/` -> `https://example.com:443` (scheme, host, explicit or default port)."""
    parts = urlsplit(origin.strip())
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    except ValueError:  # a port that is not a number or out of range: matches nothing
        return f"invalid:{origin!r}"
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def cross_site(
    *, origin: str | None, fetch_site: str | None, host_header: str, scheme: str, cors_origins: Iterable[str]
) -> bool:
    """Whether a state-changing request comes from another site and no setting allows that site."""
    allowed = {_origin_key(item) for item in cors_origins if item.strip() and item.strip() != "*"}
    if "*" in (item.strip() for item in cors_origins):
        return False
    if origin is not None:
        if origin.strip().lower() == "null":
            return True  # sandboxed frames and file:// pages
        key = _origin_key(origin)
        return not (key in allowed or key == _origin_key(f"{scheme}://{host_header}"))
    return (fetch_site or "").strip().lower() in ("cross-site", "same-site")


class RequestOriginGuard:
    """ASGI middleware: 403 for a Host name not allowed, and for cross-site state-changing requests."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str], cors_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.cors_origins = tuple(cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers") or []}
        host = headers.get("host", "")
        error: ForbiddenRequestError | None = None
        if not host_allowed(host, self.allowed_hosts):
            error = ForbiddenRequestError(
                f"Host {host_name(host)!r} is not allowed. Add it to PENSIEVE_ALLOWED_HOSTS if this server should "
                "answer to that name (a web page that renames itself to 127.0.0.1 sends such requests).",
                code="host_not_allowed",
            )
        elif scope["method"] in UNSAFE_METHODS and cross_site(
            origin=headers.get("origin"),
            fetch_site=headers.get("sec-fetch-site"),
            host_header=host,
            scheme=scope.get("scheme", "http"),
            cors_origins=self.cors_origins,
        ):
            error = ForbiddenRequestError(
                "Cross-site requests may not change anything here. Add the calling site to "
                "PENSIEVE_CORS_ORIGINS if it should be allowed.",
                code="cross_site_request",
            )
        if error is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(error.to_body()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
