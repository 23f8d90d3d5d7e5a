"""The server's side of a model worker process: start it, talk to it, notice when it dies, stop it.

Everything here runs in the server process; the messages it exchanges with the worker are those of
`worker_protocol`.

The worker is spawned (never forked: the server has threads) and loads the model itself, so an
unload really returns the model's memory to the operating system and a crash in llama.cpp takes down
only the worker. A worker that dies is reported with how it ended, in plain words ("killed by SIGILL
(illegal instruction: ...)"), to the requests it was serving, in the log and in its `crash` record.
One reader thread receives the worker's messages and hands them to the event loop; sends go through
one sender thread, in order, so a full pipe never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pensieve.diagnostics.exit_status import describe_exit
from pensieve.engine.failures import ModelFailure, is_transient_exit
from pensieve.engine.llamacpp.runtime import LlamaConfig, LlamaLoadError
from pensieve.engine.worker import worker_main
from pensieve.engine.worker_protocol import (
    DoneEvent,
    Event,
    Job,
    Message,
    MessageReader,
    ToServer,
    ToWorker,
    WorkerFacts,
)
from pensieve.errors import EngineError, WorkerCrashedError

logger = logging.getLogger(__name__)

# Loading a model takes about a second; a huge file on a slow disk may take much longer.
LOAD_TIMEOUT_SECONDS = 300.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class WorkerCrashError(LlamaLoadError):
    """The worker process died before it reported its model loaded; `exit_code` says how (-4: SIGILL)."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @property
    def transient(self) -> bool:
        """True when the worker was killed from outside (the OOM killer's SIGKILL): loading again may work."""
        return is_transient_exit(self.exit_code)


class WorkerLoadTimeoutError(LlamaLoadError):
    """The worker did not report its model loaded in time and was killed; a later load may well succeed."""


def how_it_ended(exit_code: int | None) -> str:
    """How a worker that is gone ended: "killed by SIGILL (illegal instruction: ...)", "exit code 1"."""
    return describe_exit(exit_code) if exit_code is not None else "its exit status is unknown"


class WorkerClient:
    """One running worker process and the requests in flight on it."""

    def __init__(self, model_id: str, process: Any, conn: Connection, facts: WorkerFacts) -> None:
        self.model_id = model_id
        self.facts = facts
        self._process = process
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._streams: dict[int, asyncio.Queue[Event | BaseException]] = {}
        self._embeds: dict[int, asyncio.Future[list[list[float]]]] = {}
        self._ids = itertools.count(1)
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"send-{model_id}")
        self.alive = True
        self.failure: str | None = None
        self.crash: ModelFailure | None = None  # set when the process died without being asked to
        self.running = 0
        self.waiting = 0
        self.kv_cells = 0
        self.drafted = 0  # speculative draft tokens the worker verified, and how many it accepted
        self.accepted = 0
        self._reader: threading.Thread | None = None
        self._messages = MessageReader(conn.fileno())
        if not self._watch_pipe():
            self._reader = threading.Thread(target=self._read, name=f"read-{model_id}", daemon=True)
            self._reader.start()

    @classmethod
    async def start(cls, model_id: str, path: Path, config: LlamaConfig, log_level: str) -> WorkerClient:
        """Spawn the worker and wait until its model is loaded (LlamaLoadError when it cannot be)."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=worker_main, args=(child, str(path), config, log_level), name=f"pensieve-{model_id}", daemon=True
        )
        await asyncio.to_thread(process.start)
        child.close()
        try:
            ready = await asyncio.to_thread(_first_message, parent, process)
        except LlamaLoadError:
            parent.close()
            await asyncio.to_thread(_reap, process)
            raise
        if ready[0] == ToServer.LOAD_ERROR:
            parent.close()
            await asyncio.to_thread(_reap, process)
            raise LlamaLoadError(ready[1])
        return cls(model_id, process, parent, WorkerFacts(**ready[1]))

    @property
    def pid(self) -> int | None:
        """The worker's process id."""
        return int(self._process.pid) if self._process.pid is not None else None

    @property
    def in_flight(self) -> int:
        """Requests sent and not finished (running or waiting in the worker), embedding requests included."""
        return len(self._streams) + len(self._embeds)

    # --- requests ---------------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        def send() -> None:
            with contextlib.suppress(OSError, ValueError):  # the worker is gone; the reader thread reports it
                self._conn.send(message)

        self._sender.submit(send)

    def dead_error(self) -> EngineError:
        """The error requests get once the worker is gone: WorkerCrashedError (how it died) after a crash."""
        message = self.failure or f"The worker of model '{self.model_id}' is not running."
        return WorkerCrashedError(message) if self.crash is not None else EngineError(message)

    async def generate(self, job: Job) -> AsyncGenerator[Event, None]:
        """The events of one request; closing the generator early cancels it in the worker."""
        if not self.alive:
            raise self.dead_error()
        rid = next(self._ids)
        job.rid = rid
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._streams[rid] = queue
        self._send((ToWorker.GENERATE, job))
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if isinstance(item, DoneEvent):
                    finished = True
                yield item
                if finished:
                    return
        finally:
            self._streams.pop(rid, None)
            if not finished and self.alive:
                self._send((ToWorker.CANCEL, rid))

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """Embedding vectors of tokenized inputs (computed in the worker between two steps)."""
        if not self.alive:
            raise self.dead_error()
        rid = next(self._ids)
        future: asyncio.Future[list[list[float]]] = self._loop.create_future()
        self._embeds[rid] = future
        self._send((ToWorker.EMBED, rid, inputs))
        try:
            return await future
        finally:
            self._embeds.pop(rid, None)
            if (future.cancelled() or not future.done()) and self.alive:
                self._send((ToWorker.CANCEL, rid))  # the caller gave up: the worker drops the rest of the work

    # --- the reader thread and what it hands to the event loop -------------------------------------

    def _watch_pipe(self) -> bool:
        """Read the worker's messages in the event loop itself when it can watch the pipe (POSIX).

        One wake-up per step instead of two (a reader thread, then the loop): on a 2-core machine every
        extra wake-up preempts one of llama.cpp's threads, which stalls its whole decode step.
        """
        if os.name != "posix":
            return False
        try:
            self._loop.add_reader(self._conn.fileno(), self._readable)
        except (NotImplementedError, OSError, ValueError):
            return False
        return True

    def _readable(self) -> None:
        try:
            messages = self._messages.read_available()
        except (EOFError, OSError):
            self._stop_watching()
            self._died()
            return
        for message in messages:
            self._dispatch(message)

    def _stop_watching(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(self._conn.fileno())

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._call(self._died)
                return
            self._call(self._dispatch, message)

    def _call(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the server is shutting down
            self._loop.call_soon_threadsafe(callback, *args)

    def _dispatch(self, message: Message) -> None:
        kind = message[0]
        if kind == ToServer.STEP:
            events, (self.running, self.waiting, self.kv_cells) = message[1], message[2]
            self.drafted, self.accepted = message[3]
            for event in events:
                queue = self._streams.get(event.rid)
                if queue is not None:
                    queue.put_nowait(event)
        elif kind == ToServer.EMBEDDED:
            future = self._embeds.get(message[1])
            if future is not None and not future.done():
                if message[3] is not None:
                    future.set_exception(ValueError(message[3]))
                else:
                    future.set_result(message[2])

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._process.join(0.5)
        code = self._process.exitcode
        if self.failure is None:
            self.failure = f"The worker process of model '{self.model_id}' stopped unexpectedly: {how_it_ended(code)}."
            self.crash = ModelFailure(self.model_id, "serving", self.failure, time.time(), code)
            logger.error("%s", self.failure)
        error = self.dead_error()
        for queue in self._streams.values():
            queue.put_nowait(error)
        for future in self._embeds.values():
            if not future.done():
                future.set_exception(error)

    # --- lifecycle --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the worker (running requests end with an error) and wait until its process is gone."""
        if self.alive:
            self.failure = f"Model '{self.model_id}' was unloaded."
            self._send((ToWorker.SHUTDOWN,))
        await asyncio.to_thread(_reap, self._process, SHUTDOWN_TIMEOUT_SECONDS)
        if self._reader is None:
            self._stop_watching()
        self._died()
        self._sender.shutdown(wait=False)
        self._conn.close()

    def kill(self) -> None:
        """SIGKILL the worker (tests and a stuck worker); the reader notices and fails its requests."""
        self._process.kill()


def _first_message(conn: Connection, process: Any, timeout: float = LOAD_TIMEOUT_SECONDS) -> Message:
    """The worker's ready/load_error message, or LlamaLoadError if it dies or hangs first."""
    if not conn.poll(timeout):
        process.kill()
        raise WorkerLoadTimeoutError(f"the model did not load within {timeout:.0f} s")
    try:
        message: Message = conn.recv()
    except (EOFError, OSError):
        process.join(5)
        code = process.exitcode
        raise WorkerCrashError(f"the worker process crashed while loading: {how_it_ended(code)}", code) from None
    return message


def _reap(process: Any, timeout: float = SHUTDOWN_TIMEOUT_SECONDS) -> None:
    """Wait for a worker to exit; terminate, then kill, one that does not."""
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(2)
    if process.is_alive():
        process.kill()
        process.join(2)
