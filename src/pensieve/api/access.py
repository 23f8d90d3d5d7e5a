"""Who may call what: inference keys for `/v1`, the admin key for whatever changes the server.

- Inference routes (`/v1`, the read-only `/api` views, `/metrics`) need one of PENSIEVE_API_KEY /
  PENSIEVE_API_KEYS when any is set; the admin key works there too. Without keys they are open (the
  server then listens on loopback only: `exposure_problem` refuses anything else at start-up).
- Admin routes (settings, model load/unload/install, circuit resets) need PENSIEVE_ADMIN_KEY when it is
  set; an inference key gets 403 `admin_key_required`. Without an admin key they answer only requests
  made on this machine (loopback peer, no proxy forwarding headers) and same-origin (no foreign `Origin`,
  no cross-site `Sec-Fetch-Site`), plus the inference key when one is set, so nothing gets weaker than it was.
- State-changing admin calls must carry a JSON content type, an Authorization header or the custom header
  `X-Requested-With`: a browser sends none of these in a "simple" cross-site request (form posts and
  bodiless fetches), so such requests cannot reach them even without preflight.

Every caller gets an identity (`Caller.id`): the key's fingerprint, or the peer address when no key is
needed. Rate limits and the prompt cache are kept per identity.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from pensieve.api.deps import SettingsDep
from pensieve.errors import AuthenticationError, ForbiddenRequestError, InvalidRequestError
from pensieve.settings_sections import ServerSettings

ADMIN_HEADER = "x-requested-with"
_FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """Who is calling: a stable, non-secret id (key fingerprint or peer address) and admin rights."""

    id: str
    admin: bool


def key_fingerprint(key: str) -> str:
    """A short non-reversible name for a key (logs, rate-limit buckets, cache partitions)."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _matches(token: str, keys: list[str]) -> bool:
    """Constant-time membership: every key is compared, so timing does not tell which one matched."""
    found = False
    for key in keys:
        found |= hmac.compare_digest(token.encode(), key.encode())
    return found


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def is_loopback_peer(request: Request) -> bool:
    """The request was made on this machine, directly: a loopback peer and no proxy forwarding headers.

    A reverse proxy on the same machine makes every request look local; the headers it adds give it away.
    """
    if any(name in request.headers for name in _FORWARDING_HEADERS):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_same_origin(request: Request) -> bool:
    """No browser header says this request comes from another page than the server's own."""
    site = request.headers.get("sec-fetch-site", "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    own = request.headers.get("host", "").strip().lower()
    return parts.scheme == request.url.scheme and parts.netloc.lower() == own


def exposure_problem(server: ServerSettings) -> str | None:
    """Why serving on `server.host` would expose an open API to the network, or None when it would not."""
    host = server.host.strip().strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if loopback or server.inference_keys() or server.insecure_no_auth:
        return None
    return (
        f"refusing to serve on {server.host} without an API key: anyone on the network could use it. "
        "Set PENSIEVE_API_KEY (and PENSIEVE_ADMIN_KEY for remote administration), bind to 127.0.0.1, "
        "or pass --insecure-no-auth (PENSIEVE_INSECURE_NO_AUTH=true) if the network is trusted."
    )


def _caller(request: Request, server: ServerSettings) -> Caller:
    """The caller's identity and rights from its Bearer token; 401 when a needed key is missing or wrong."""
    token = bearer_token(request)
    admin_key = server.admin_key.get_secret_value() if server.admin_key is not None else None
    inference = server.inference_keys()
    if token is not None and admin_key is not None and _matches(token, [admin_key]):
        return Caller(key_fingerprint(token), admin=True)
    if token is not None and _matches(token, inference):
        return Caller(key_fingerprint(token), admin=False)
    if inference:
        raise AuthenticationError(
            "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>' "
            "(the server's PENSIEVE_API_KEY, one of PENSIEVE_API_KEYS, or PENSIEVE_ADMIN_KEY)."
        )
    return Caller("ip:" + (request.client.host if request.client else "unknown"), admin=False)


def inference_caller(request: Request, settings: SettingsDep) -> Caller:
    """Dependency of the inference routes: the caller, after checking its key when keys are configured."""
    caller = _caller(request, settings.server)
    request.state.caller = caller
    return caller


def admin_caller(request: Request, settings: SettingsDep) -> Caller:
    """Dependency of the admin routes: the admin key, or (without one) a same-origin call from this machine."""
    server = settings.server
    caller = _caller(request, server)
    if server.admin_key is not None and not caller.admin:
        token = bearer_token(request)
        if token is not None and _matches(token, server.inference_keys()):
            raise ForbiddenRequestError(
                "This is an admin call and the key sent is an inference key: use PENSIEVE_ADMIN_KEY.",
                code="admin_key_required",
            )
        raise AuthenticationError(
            "This is an admin call: send the admin key as 'Authorization: Bearer <key>' (PENSIEVE_ADMIN_KEY)."
        )
    if server.admin_key is None and not (is_loopback_peer(request) and is_same_origin(request)):
        raise ForbiddenRequestError(
            "Admin calls are answered only from this machine (same origin) while PENSIEVE_ADMIN_KEY is unset; "
            "set it on the server to administer Pensieve from elsewhere.",
            code="admin_local_only",
        )
    if request.method not in _SAFE_METHODS and not _not_simple(request):
        raise InvalidRequestError(
            "Admin calls that change something need a JSON body ('Content-Type: application/json'), an "
            f"Authorization header or an '{ADMIN_HEADER}' header, so a web page cannot send them blindly.",
            code="admin_header_required",
        )
    caller = Caller(caller.id, admin=True)
    request.state.caller = caller
    return caller


def _not_simple(request: Request) -> bool:
    """The request could not have been a CORS "simple request" (those need no preflight)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or "authorization" in request.headers or ADMIN_HEADER in request.headers


CallerDep = Annotated[Caller, Depends(inference_caller)]
AdminDep = Annotated[Caller, Depends(admin_caller)]
