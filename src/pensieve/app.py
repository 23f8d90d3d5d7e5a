"""The FastAPI application factory; the lifespan builds every service and keeps it on `app.state`.

Nothing happens at import time: `create_app(settings)` is the only way in, so tests and the CLI can
build servers with different settings in one process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from pensieve import __version__
from pensieve.api import health, models, openai_v1
from pensieve.api.errors import install_error_handlers
from pensieve.api.limits import BodySizeLimitMiddleware
from pensieve.config import Settings
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import ModelRegistry
from pensieve.errors import PensieveError
from pensieve.inference import InferenceService

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Pensieve runs GGUF models on this machine and speaks the OpenAI API: point any `openai` SDK, "
    "LangChain or curl client at `/v1`."
)


async def _preload_default(pool: ModelPool, settings: Settings) -> None:
    """Load the default model so the first request does not pay for it; a failure is logged, not fatal."""
    try:
        engine = await pool.get(settings.default_model)
    except PensieveError as exc:
        logger.error("default model not loaded: %s", exc.message)
        return
    logger.info("default model %s ready (context %d tokens)", engine.model_id, engine.context_length)


def create_app(settings: Settings) -> FastAPI:
    """Build the Pensieve server for `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ModelPool(settings, ModelRegistry(settings.models_dir))
        app.state.settings = settings
        app.state.pool = pool
        app.state.inference = InferenceService(settings, pool)
        if settings.preload_default_model:
            await _preload_default(pool, settings)
        try:
            yield
        finally:
            await pool.close()

    # The docs pages are served from the package, not a CDN: they must work offline.
    app = FastAPIOffline(title="Pensieve", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(openai_v1.router)
    app.include_router(models.router)
    app.include_router(health.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=["x-pensieve-route", "x-pensieve-reason", "x-pensieve-model"],
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    return app
