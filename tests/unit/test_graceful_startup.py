"""GracefulServer's start-up: once the app has started, its objects are frozen out of the collector's sight
(a full collection then walks only what was made since, instead of stopping the event loop 50-90 ms)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from pensieve.api.drain import Drain
from pensieve.graceful import GracefulServer


def test_startup_freezes_what_the_app_built() -> None:
    built: list[object] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built.append({"service": object()})  # stands for the services a real lifespan builds
        yield

    app = FastAPI(lifespan=lifespan)
    server = GracefulServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None), Drain(timeout_seconds=1.0))

    async def start_and_stop() -> int:
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
            return gc.get_freeze_count()
        finally:
            server.should_exit = True
            await serving

    gc.unfreeze()
    try:
        frozen = asyncio.run(start_and_stop())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert built and frozen > 1000  # the app, FastAPI's and pydantic's objects, and what the lifespan built
