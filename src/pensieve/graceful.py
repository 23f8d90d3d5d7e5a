"""Uvicorn with a drain: the first SIGTERM or Ctrl-C lets running requests finish, a second one forces.

Plain uvicorn closes its sockets at once and gives running requests a few seconds: a 30-second stream
would be cut and a load balancer polling /ready would see a refused connection instead of a 503. Here
the first signal starts `Drain.run()` (see `pensieve.api.drain`) and uvicorn's own shutdown starts only
when it is over; the process then exits with status 0 (the signal is handled, not re-raised).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from pensieve.api.drain import Drain
from pensieve.settings_sections import ServerSettings

logger = logging.getLogger(__name__)


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose exit signals drain the app first."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signalled = False
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Remember the loop the signal handler must schedule the drain on; move the code and the app out of
        the garbage collector's sight, then start the app."""
        self._loop = asyncio.get_running_loop()
        # The modules, classes, routes and pydantic schemas (most of a server's ~190k objects) live as long
        # as the process. Left in the oldest generation, every full collection walked them all: 50-90 ms with
        # the event loop stopped, mid-stream, every few hundred tokens (and that CPU taken from llama.cpp's
        # threads). Frozen, a full collection walks only the rest. The services are built after the freeze:
        # what they drop later (an unloaded model, replaced settings) must stay collectable.
        gc.collect()
        gc.freeze()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain, then exit. Second: exit now (uvicorn's force exit)."""
        if self._loop is None or not self.started:
            self.should_exit = True  # still starting: nothing to drain
            return
        if self._signalled:
            logger.warning("second %s: stopping now", signal.Signals(sig).name)
            self.should_exit = self.force_exit = True
            self._loop.call_soon_threadsafe(self.drain.stop)
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        self.drain.begin()
        self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        await self.drain.run()
        self.should_exit = True


def serve(app: FastAPI, server: ServerSettings) -> None:
    """Run `app` (from `create_app`) on the configured address until a signal has drained and stopped it."""
    config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,
        # Our access log (pensieve.access) names the request id; uvicorn's would repeat each line without it.
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    GracefulServer(config, app.state.drain).run()
