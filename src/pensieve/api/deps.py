"""Typed FastAPI dependencies: one `Annotated` dependency per service and the route header (keys: access.py).

The lifespan keeps one `Services` on `app.state.services`; a route names the services it uses as
parameters (`pool: PoolDep`) and never reaches through one service into another.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Request

from pensieve.api.drain import Drain
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.planner import RouteHeader
from pensieve.burst.stats import DecisionLog
from pensieve.cloud.registry import CloudRegistry
from pensieve.config import Settings
from pensieve.engine.pool import ModelPool
from pensieve.errors import InvalidRequestError
from pensieve.files.store import FileStore
from pensieve.observability import Metrics, ProcessClock
from pensieve.pull_jobs import PullJobs
from pensieve.rate_limits import RateLimiter
from pensieve.services import Services
from pensieve.serving import ChatServing, CompletionServing
from pensieve.sessions import SessionStore

ROUTE_HEADER = "x-pensieve-route"


def get_services(request: Request) -> Services:
    """All services of the running server (for the one route that reconfigures them all)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    """The running server's settings."""
    return services.settings


def get_pool(services: ServicesDep) -> ModelPool:
    """The local model pool."""
    return services.pool


def get_cloud(services: ServicesDep) -> CloudRegistry:
    """The cloud providers and their circuit breakers."""
    return services.cloud


def get_ledger(services: ServicesDep) -> SpendLedger:
    """The cloud spend and local savings ledger."""
    return services.ledger


def get_decisions(services: ServicesDep) -> DecisionLog:
    """The routing decision log (counts and recent decisions)."""
    return services.decisions


def get_metrics(services: ServicesDep) -> Metrics:
    """The Prometheus metrics."""
    return services.metrics


def get_process(services: ServicesDep) -> ProcessClock:
    """Uptime and CPU use of the server process."""
    return services.process


def get_chat(services: ServicesDep) -> ChatServing:
    """The chat completions serving class."""
    return services.chat


def get_completions(services: ServicesDep) -> CompletionServing:
    """The text completions serving class."""
    return services.completions


def get_sessions(services: ServicesDep) -> SessionStore:
    """The stored conversations (sessions and their messages)."""
    return services.sessions


def get_pulls(services: ServicesDep) -> PullJobs:
    """The model download jobs."""
    return services.pulls


def get_files(services: ServicesDep) -> FileStore:
    """The uploaded files: records, bytes and their indexes."""
    return services.files


def get_drain(request: Request) -> Drain:
    """The shutdown state: draining or not, and when running requests must stop."""
    drain: Drain = request.app.state.drain
    return drain


def get_rate_limiter(services: ServicesDep) -> RateLimiter:
    """The per-caller request and token limits."""
    return services.rate_limiter


def route_header(request: Request) -> RouteHeader | None:
    """The X-Pensieve-Route override (local, cloud or auto), validated."""
    value = request.headers.get(ROUTE_HEADER)
    if value is None or not value.strip():
        return None
    cleaned = value.strip().lower()
    if cleaned not in ("local", "cloud", "auto"):
        raise InvalidRequestError(
            f"Invalid {ROUTE_HEADER} header {value!r}: use local, cloud or auto.", code="invalid_route_header"
        )
    route: Literal["local", "cloud", "auto"] = cleaned  # type: ignore[assignment]
    return route


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[ModelPool, Depends(get_pool)]
CloudDep = Annotated[CloudRegistry, Depends(get_cloud)]
LedgerDep = Annotated[SpendLedger, Depends(get_ledger)]
DecisionsDep = Annotated[DecisionLog, Depends(get_decisions)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ProcessDep = Annotated[ProcessClock, Depends(get_process)]
ChatDep = Annotated[ChatServing, Depends(get_chat)]
CompletionsDep = Annotated[CompletionServing, Depends(get_completions)]
DrainDep = Annotated[Drain, Depends(get_drain)]
FilesDep = Annotated[FileStore, Depends(get_files)]
PullsDep = Annotated[PullJobs, Depends(get_pulls)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
SessionsDep = Annotated[SessionStore, Depends(get_sessions)]
RouteHeaderDep = Annotated[RouteHeader | None, Depends(route_header)]
