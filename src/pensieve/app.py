"""The FastAPI application factory; the lifespan builds every service and keeps it on `app.state`.

Nothing happens at import time: `create_app(settings)` is the only way in, so tests and the CLI can
build servers with different settings in one process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from pensieve import __version__
from pensieve.api import admin, burst, embeddings, health, metrics, models, openai_v1, ps
from pensieve.api.admin import install_admin_state
from pensieve.api.errors import install_error_handlers
from pensieve.api.limits import BodySizeLimitMiddleware
from pensieve.burst.controller import BurstController, check_burst_settings
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.stats import BurstStats
from pensieve.cloud.registry import CloudRegistry, providers_from_settings
from pensieve.config import Settings
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import ModelRegistry
from pensieve.errors import PensieveError
from pensieve.inference import InferenceService

logger = logging.getLogger(__name__)

# The cloud spend ledger (numbers only) under PENSIEVE_DATA_DIR; it survives restarts.
LEDGER_FILE = "spend.sqlite3"

DESCRIPTION = (
    "Pensieve runs GGUF models on this machine and speaks the OpenAI API: point any `openai` SDK, "
    "LangChain or curl client at `/v1`."
)


async def _preload_default(pool: ModelPool, settings: Settings) -> None:
    """Load the default model so the first request does not pay for it; a failure is logged, not fatal."""
    try:
        engine = await pool.get(settings.default_model, reserve=False)
    except PensieveError as exc:
        logger.error("default model not loaded: %s", exc.message)
        return
    logger.info("default model %s ready (context %d tokens)", engine.model_id, engine.context_length)


def _cloud_registry(settings: Settings) -> CloudRegistry:
    return CloudRegistry(
        providers_from_settings(settings),
        circuit_failures=settings.cloud_circuit_failures,
        circuit_cooldown=settings.cloud_circuit_cooldown_seconds,
    )


def create_app(settings: Settings, env_file: Path = Path(".env")) -> FastAPI:
    """Build the Pensieve server for `settings` (SettingsError when the burst settings are inconsistent).

    `env_file` is where POST /api/admin/settings/save writes.
    """
    check_burst_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ModelPool(settings, ModelRegistry(settings.models_dir))
        cloud = _cloud_registry(settings)
        ledger = SpendLedger(settings.data_dir / LEDGER_FILE)
        controller = BurstController(settings, pool, cloud, ledger, BurstStats())
        app.state.settings = settings
        app.state.pool = pool
        app.state.controller = controller
        inference = InferenceService(settings, controller)
        app.state.inference = inference
        install_admin_state(app.state, env_file)

        async def apply_settings(new: Settings) -> None:
            """Switch the running services to `new` settings (validated by the caller)."""
            check_burst_settings(new)
            old = app.state.settings
            cloud_changed = any(
                getattr(old, f) != getattr(new, f) for f in Settings.model_fields if f.startswith("cloud_")
            )
            old_cloud = controller.cloud
            controller.reconfigure(new, _cloud_registry(new) if cloud_changed else None)
            pool.settings = inference.settings = app.state.settings = new
            if cloud_changed:
                await old_cloud.close()

        app.state.apply_settings = apply_settings
        pool.start()  # the keep-alive task; pool.close() stops it
        if cloud.configured:
            logger.info("cloud models: %s (auto bursts to %s)", ", ".join(cloud.model_ids()), cloud.default_model_id)
        if settings.preload_default_model:
            await _preload_default(pool, settings)
        try:
            yield
        finally:
            await pool.close()
            await controller.cloud.close()
            ledger.close()

    # The docs pages are served from the package, not a CDN: they must work offline.
    app = FastAPIOffline(title="Pensieve", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(openai_v1.router)
    app.include_router(embeddings.router)
    app.include_router(models.router)
    app.include_router(burst.router)
    app.include_router(admin.router)
    app.include_router(ps.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
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
