"""GracefulServer's start-up: the code and the app are frozen out of the collector's sight (a full collection
then walks only the rest, instead of stopping the event loop 50-90 ms); what the lifespan builds is not, so
what the services drop later (an unloaded model) can still be collected."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from pensieve.api.drain import Drain
from pensieve.graceful import GracefulServer


def test_startup_freezes_the_app_but_not_what_its_lifespan_builds() -> None:
    built: list[object] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built.append({"service": [object()]})  # stands for the services a real lifespan builds
        yield

    app = FastAPI(lifespan=lifespan)
    server = GracefulServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None), Drain(timeout_seconds=1.0))

    async def start_and_stop() -> tuple[int, bool]:
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
                await asyncio.sleep(0.01)
            # gc.get_objects() lists what collections still walk: not the frozen objects.
            return gc.get_freeze_count(), any(obj is built[0] for obj in gc.get_objects())
        finally:
            server.should_exit = True
            await serving

    gc.unfreeze()
    try:
        frozen, service_collectable = asyncio.run(start_and_stop())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert frozen > 1000  # the modules, the app, FastAPI's and pydantic's objects
    assert built and service_collectable
