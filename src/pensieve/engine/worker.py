"""The model worker process: loads one model and runs the continuous-batching scheduler for it.

Everything here runs in the worker process (spawned by `worker_client` in the server process). It
speaks the protocol of `worker_protocol` over a multiprocessing pipe: commands come in between decode
steps (`generate`, `cancel`, `embed`, `shutdown`); the model's facts, each step's events and each
embedding request's result go out.

A crash here (a hostile model file, an out-of-memory kill) ends this process only: the server sees
the pipe close and fails the requests in flight. When the server goes away, the pipe closes too and
the worker exits, so no orphan keeps the model's memory.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

from pensieve.engine.embedding_queue import EmbeddingQueue
from pensieve.engine.llamacpp.batch_context import BatchContext
from pensieve.engine.llamacpp.runtime import LlamaConfig
from pensieve.engine.scheduler import Scheduler
from pensieve.engine.worker_protocol import Message, ToServer, ToWorker, WorkerFacts, command_waiting, ready_message

logger = logging.getLogger("pensieve.worker")


def _handle(message: Message, scheduler: Scheduler, embeddings: EmbeddingQueue, conn: Connection) -> bool:
    """Apply one command; False when the worker should stop."""
    kind = message[0]
    if kind == ToWorker.GENERATE:
        scheduler.submit(message[1])
    elif kind == ToWorker.CANCEL:
        done = scheduler.cancel(message[1])
        if done is not None:
            conn.send((ToServer.STEP, [done], scheduler.load(), scheduler.speculated()))
        embeddings.cancel(message[1])
    elif kind == ToWorker.EMBED:
        refused = embeddings.submit(message[1], message[2])
        if refused is not None:
            conn.send((ToServer.EMBEDDED, *refused))
    elif kind == ToWorker.SHUTDOWN:
        return False
    return True


def serve(conn: Connection, scheduler: Scheduler) -> None:
    """The worker loop (worker process): take every pending command, run one decode step and one piece of
    embedding work, report what finished; sleep when there is nothing to do."""
    embeddings = EmbeddingQueue(scheduler.context)
    running = True
    waiting = command_waiting(conn)
    while running:
        if scheduler.idle and embeddings.idle:
            running = _handle(conn.recv(), scheduler, embeddings, conn)  # nothing to do: block until told
        while running and waiting():
            running = _handle(conn.recv(), scheduler, embeddings, conn)
        if not running:
            break
        started = time.monotonic()
        events = scheduler.step()
        embeddings.decoded_for(time.monotonic() - started)
        if events:
            conn.send((ToServer.STEP, events, scheduler.load(), scheduler.speculated()))
        finished = embeddings.advance(streams_running=not scheduler.idle)
        if finished is not None:
            conn.send((ToServer.EMBEDDED, *finished))


def worker_main(conn: Connection, model_path: str, config: LlamaConfig, log_level: str) -> None:
    """The worker process's entry point (spawned): load, report ready or the load error, serve until told to stop."""
    # Ctrl+C in a terminal signals the whole process group. The server decides when its workers stop (it
    # sends "shutdown", and a server that dies closes the pipe): a worker that died of the same SIGINT
    # first would fail requests still finishing and look like a crash in the log.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        context = BatchContext(Path(model_path), config)
    except Exception as exc:  # reported to the server, which shows it to the client
        conn.send((ToServer.LOAD_ERROR, str(exc)))
        conn.close()
        return
    conn.send(ready_message(WorkerFacts(context.window, context.kv_size, context.n_parallel)))
    try:
        serve(conn, Scheduler(context))
    except (EOFError, OSError):
        pass  # the server went away: nothing left to serve
    finally:
        context.close()
        conn.close()
