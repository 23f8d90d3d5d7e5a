"""Embedding requests inside a model worker, computed one small piece at a time between decode steps.

One embedding request can hold thousands of inputs: computed in one go it would freeze every running
stream of the model for as long as it takes (tens of seconds for a few hundred short documents: see
bench/README.md). Instead the worker loop advances the oldest request by one piece (`EMBEDDING_CHUNK`
tokens, well under a second) at a time,
between the scheduler's decode steps, and a new chat request is admitted within a piece. While streams
are running, embedding work gets as much time as decoding has had (half the worker each), so a batch
of documents neither stalls the streams nor starves.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from pensieve.engine.llamacpp.batch_context import EMBEDDING_CHUNK, EMBEDDING_MAX_TOKENS, BatchContext, normalised
from pensieve.engine.llamacpp.runtime import LlamaDecodeError

# (request id, vectors, None) when a request is done, (request id, None, message) when it failed.
EmbeddingResult = tuple[int, list[list[float]] | None, str | None]
# Decode time that embedding work may catch up on at most: bounds the burst it gets after long decoding.
MAX_CREDIT_SECONDS = 1.0


@dataclass
class EmbeddingJob:
    """One request's inputs and how far it has got."""

    rid: int
    inputs: list[list[int]]
    vectors: list[list[float]] = field(default_factory=list)
    start: int = 0  # next token of the input being embedded
    total: np.ndarray | None = None  # summed hidden states of that input so far


class EmbeddingQueue:
    """Embedding requests of one worker, served an input each in turn: a one-line query is not stuck
    behind a thousand-document ingest that came first."""

    def __init__(self, context: BatchContext, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.context = context
        self._jobs: deque[EmbeddingJob] = deque()
        self._clock = clock
        self._credit = 0.0  # seconds of embedding work owed to match the streams' decoding time

    @property
    def idle(self) -> bool:
        """No embedding request is waiting."""
        return not self._jobs

    def submit(self, rid: int, inputs: list[list[int]]) -> EmbeddingResult | None:
        """Queue a request; its failure at once when an input cannot be embedded."""
        for index, tokens in enumerate(inputs):
            if not 0 < len(tokens) <= EMBEDDING_MAX_TOKENS:
                return rid, None, f"input {index} has {len(tokens)} tokens; 1 to {EMBEDDING_MAX_TOKENS} are allowed"
        if inputs:
            self._jobs.append(EmbeddingJob(rid, inputs))
            return None
        return rid, [], None

    def cancel(self, rid: int) -> bool:
        """Drop a request (its client went away); False when there was none."""
        for job in self._jobs:
            if job.rid == rid:
                self._jobs.remove(job)
                return True
        return False

    def decoded_for(self, seconds: float) -> None:
        """Streams just decoded for this long: embedding work may now take as long."""
        if self._jobs:
            self._credit = min(self._credit + seconds, MAX_CREDIT_SECONDS)

    def advance(self, streams_running: bool) -> EmbeddingResult | None:
        """Embed the next piece of the request whose turn it is (when embedding work's turn has come at all);
        its result when that finished it."""
        if not self._jobs or (streams_running and self._credit <= 0):
            return None
        started = self._clock()
        try:
            return self._next_piece(self._jobs[0])
        finally:
            self._credit = self._credit - (self._clock() - started) if streams_running else 0.0

    def _next_piece(self, job: EmbeddingJob) -> EmbeddingResult | None:
        tokens = job.inputs[len(job.vectors)]
        try:
            piece = self.context.embed_chunk(tokens[job.start : job.start + EMBEDDING_CHUNK], job.start)
        except (ValueError, LlamaDecodeError) as exc:
            self._jobs.popleft()
            return job.rid, None, str(exc)
        job.total = piece if job.total is None else job.total + piece
        job.start += EMBEDDING_CHUNK
        if job.start < len(tokens):
            return None  # the embedding context holds this input's KV: its next piece comes next
        job.vectors.append(normalised(job.total))
        job.start, job.total = 0, None
        if len(job.vectors) < len(job.inputs):
            self._jobs.rotate(-1)  # an input done: the next request's turn
            return None
        self._jobs.popleft()
        return job.rid, job.vectors, None
