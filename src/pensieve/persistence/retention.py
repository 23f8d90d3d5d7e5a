"""PENSIEVE_RETENTION_DAYS: sessions and files older than that are deleted, bytes included, on a schedule.

The sweep runs at start-up and then every `interval` seconds in the background (in a worker thread: a
sweep may delete many files). `days` is read at each sweep, so a live settings change (Services sets it)
applies from the next one; 0 keeps everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 3600.0
DAY_SECONDS = 86400.0

Purger = Callable[[float], int]  # deletes what is older than the cutoff (epoch seconds); how many went


class RetentionSweeper:
    """Deletes old sessions and files with each store's `purge_older_than`."""

    def __init__(self, purgers: Sequence[Purger], days: float, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
        self.purgers = list(purgers)
        self.days = days
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def sweep(self, now: float | None = None) -> int:
        """Delete what is older than the retention period now; how many records went (0 when it is off)."""
        days = self.days
        if days <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - days * DAY_SECONDS
        deleted = sum(purge(cutoff) for purge in self.purgers)
        if deleted:
            logger.info("retention: deleted %d session(s)/file(s) older than %g day(s)", deleted, days)
        return deleted

    def start(self) -> None:
        """Sweep now and then every `interval` seconds until `close`."""
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except Exception:  # a failed sweep is retried at the next one; serving goes on
                logger.exception("retention sweep failed")
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """Stop the background sweeps."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
