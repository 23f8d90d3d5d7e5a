"""The FastAPI application factory; the lifespan builds every service and keeps it on `app.state`.

Nothing happens at import time: `create_app(settings)` is the only way in, so tests and the CLI can
build servers with different settings in one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from pensieve import __version__
from pensieve.api import (
    admin,
    burst,
    embeddings,
    files,
    health,
    hub,
    metrics,
    models,
    openai_files,
    openai_v1,
    ps,
    sessions,
)
from pensieve.api.aliases import add_unprefixed_aliases
from pensieve.api.drain import Drain, DrainMiddleware
from pensieve.api.errors import install_error_handlers
from pensieve.api.limits import BodySizeLimitMiddleware
from pensieve.api.openapi_errors import install_openai_error_docs
from pensieve.api.security import RequestOriginGuard
from pensieve.burst.options import check_burst_settings
from pensieve.config import Settings
from pensieve.files.upload import upload_body_limit
from pensieve.observability.metrics import Metrics
from pensieve.observability.request_id import RequestContextMiddleware
from pensieve.services import Services
from pensieve.settings_sections import FilesSettings

DESCRIPTION = (
    "Pensieve runs GGUF models on this machine and speaks the OpenAI API: point any `openai` SDK, "
    "LangChain or curl client at `/v1`."
)


def create_app(settings: Settings, env_file: Path = Path(".env")) -> FastAPI:
    """Build the Pensieve server for `settings` (SettingsError when the burst settings are inconsistent).

    `env_file` is where POST /api/admin/settings/save writes.
    """
    check_burst_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.build(settings, env_file)
        app.state.services = services
        try:
            await services.start()
            yield
        finally:
            await services.close()

    # The docs pages are served from the package, not a CDN: they must work offline.
    app = FastAPIOffline(title="Pensieve", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    install_openai_error_docs(app)
    app.include_router(openai_v1.router)
    app.include_router(embeddings.router)
    app.include_router(openai_files.router)
    app.include_router(files.router)
    app.include_router(models.router)
    app.include_router(burst.router)
    app.include_router(admin.router)
    app.include_router(hub.router)
    app.include_router(ps.router)
    app.include_router(sessions.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # /chat/completions, /models...: llama-server's paths, for its clients.
    add_unprefixed_aliases(app, openai_v1.router, embeddings.router, models.router)
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=[
                "x-pensieve-route",
                "x-pensieve-tier",
                "x-pensieve-reason",
                "x-pensieve-model",
                "x-pensieve-confidence",
                "x-pensieve-session",
                "x-pensieve-trimmed-messages",
                "x-request-id",
            ],
        )
    # While shutting down, new requests get 503 and running ones are counted (pensieve.graceful drains them).
    app.state.drain = Drain(settings.server.shutdown_timeout)
    app.add_middleware(DrainMiddleware, drain=app.state.drain)
    # Uploads may be larger than other requests: their caps are checked while the file streams in.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.server.max_request_bytes,
        upload_paths=frozenset({"/api/files", "/v1/files"}),
        upload_limit=lambda: upload_body_limit(_files_settings(app, settings)),
    )
    # Outside the routes: a request from a rebinding page or another site is refused before anything else runs.
    app.add_middleware(
        RequestOriginGuard, allowed_hosts=settings.server.allowed_hosts, cors_origins=settings.server.cors_origins
    )
    # Outside even the guards: their refusals carry x-request-id too, and every response is logged and counted.
    app.add_middleware(RequestContextMiddleware, metrics=lambda: _metrics(app))
    return app


def _services(app: FastAPI) -> Services | None:
    """The running app's services (None before the lifespan has built them)."""
    services: Services | None = getattr(app.state, "services", None)
    return services


def _files_settings(app: FastAPI, initial: Settings) -> FilesSettings:
    """The files settings in force (the initial ones before the lifespan has built the services)."""
    services = _services(app)
    return services.settings.files if services is not None else initial.files


def _metrics(app: FastAPI) -> Metrics | None:
    """The running app's metrics (None before the lifespan has built the services)."""
    services = _services(app)
    return services.metrics if services is not None else None
