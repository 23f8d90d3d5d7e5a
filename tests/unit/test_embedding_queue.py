"""The worker's embedding queue: pieces, completion, refusal, cancel and its time share with decoding
(over a fake context that 'embeds' a piece as the sum of its token ids; the real model runs in
tests/integration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from pensieve.engine.embedding_queue import EmbeddingQueue
from pensieve.engine.llamacpp.batch_context import EMBEDDING_CHUNK, EMBEDDING_MAX_TOKENS
from pensieve.engine.llamacpp.runtime import LlamaDecodeError


@dataclass
class FakeContext:
    """Each piece takes `piece_seconds` of the fake clock; its 'hidden state sum' is [sum of ids, tokens]."""

    clock: list[float]
    piece_seconds: float = 0.1
    fail_at: int | None = None
    pieces: list[tuple[int, int]] = field(default_factory=list)  # (start, length) of every piece

    def embed_chunk(self, tokens: Sequence[int], start: int) -> np.ndarray:
        self.clock[0] += self.piece_seconds
        self.pieces.append((start, len(tokens)))
        if self.fail_at is not None and len(self.pieces) == self.fail_at:
            raise LlamaDecodeError("embedding decode failed (status 1)")
        return np.array([float(sum(tokens)), float(len(tokens))])


def make_queue(**context_fields: object) -> tuple[EmbeddingQueue, FakeContext]:
    clock = [0.0]
    context = FakeContext(clock, **context_fields)  # type: ignore[arg-type]
    return EmbeddingQueue(context, clock=lambda: clock[0]), context  # type: ignore[arg-type]


def drain(queue: EmbeddingQueue, limit: int = 1000) -> list[tuple[int, object, object]]:
    results = []
    for _ in range(limit):
        if queue.idle:
            return results
        result = queue.advance(streams_running=False)
        if result is not None:
            results.append(result)
    raise AssertionError("the queue did not finish")


def test_inputs_are_embedded_in_fixed_pieces_and_normalised() -> None:
    queue, context = make_queue()
    long_input = [1] * (EMBEDDING_CHUNK * 2 + 5)
    assert queue.submit(7, [[3, 4], long_input]) is None
    [(rid, vectors, error)] = drain(queue)
    assert rid == 7 and error is None
    assert context.pieces == [
        (0, 2),
        (0, EMBEDDING_CHUNK),
        (EMBEDDING_CHUNK, EMBEDDING_CHUNK),
        (2 * EMBEDDING_CHUNK, 5),
    ]
    total = len(long_input)
    expected = [np.array([7.0, 2.0]) / np.hypot(7, 2), np.array([total, total]) / np.hypot(total, total)]
    assert vectors == [pytest.approx(list(vector)) for vector in expected]


def test_requests_take_turns_by_input_so_a_short_one_is_not_stuck_behind_a_long_one() -> None:
    queue, context = make_queue()
    long_input = [1] * (EMBEDDING_CHUNK + 1)  # two pieces, which must follow each other (one KV cache)
    queue.submit(1, [long_input] * 50)
    queue.submit(2, [[6]])
    queue.submit(3, [[7]] * 2)
    assert [rid for rid, _, _ in drain(queue)] == [2, 3, 1]
    starts = [start for start, _ in context.pieces]
    assert starts[:4] == [0, EMBEDDING_CHUNK, 0, 0]  # request 1's first input whole, then 2, then 3
    assert len(context.pieces) == 100 + 1 + 2


@pytest.mark.parametrize("inputs", [[[1], []], [[1] * (EMBEDDING_MAX_TOKENS + 1)]])
def test_an_input_that_cannot_be_embedded_is_refused_at_once(inputs: list[list[int]]) -> None:
    queue, context = make_queue()
    rid, vectors, error = queue.submit(3, inputs) or (None, None, None)
    assert rid == 3 and vectors is None and error is not None and "1 to 2048" in error
    assert queue.idle and not context.pieces


def test_a_failed_piece_fails_its_request_only() -> None:
    queue, _ = make_queue(fail_at=1)
    queue.submit(1, [[5]])
    queue.submit(2, [[6]])
    results = drain(queue)
    assert results[0][0] == 1 and results[0][1] is None and "status 1" in str(results[0][2])
    assert results[1][0] == 2 and results[1][2] is None


def test_cancel_drops_the_rest_of_a_request() -> None:
    queue, context = make_queue()
    queue.submit(1, [[5]] * 10)
    queue.advance(streams_running=False)
    assert queue.cancel(1) and not queue.cancel(1)
    assert queue.idle and len(context.pieces) == 1


def test_while_streams_run_embedding_gets_as_much_time_as_decoding() -> None:
    queue, context = make_queue(piece_seconds=0.1)
    queue.submit(1, [[5]] * 100)
    assert queue.advance(streams_running=True) is None and not context.pieces  # no decode time yet: streams first
    for _ in range(10):  # ten 30 ms decode steps = 0.3 s: three 0.1 s pieces' worth
        queue.decoded_for(0.03)
        queue.advance(streams_running=True)
    assert len(context.pieces) == 3
    queue.decoded_for(100.0)  # a long decode earns at most MAX_CREDIT_SECONDS (ten pieces)
    for _ in range(50):
        queue.advance(streams_running=True)
    assert len(context.pieces) == 3 + 10
