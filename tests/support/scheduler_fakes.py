"""A fake compute context for the batching scheduler's unit tests (tests/unit/test_scheduler.py and
test_speculation.py): it records every batch and 'samples' by a rule, with no model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pensieve.engine.llamacpp.batch_context import BatchItem
from pensieve.engine.scheduler import Scheduler
from pensieve.engine.worker_protocol import DoneEvent, PromptEvent, TokenEvent
from pensieve.engine_api import SamplingParams

EOG = 0


class FakeSampler:
    """Stands in for a native sampler chain."""

    def __init__(self) -> None:
        self.grammar = None
        self.freed = False

    def free(self) -> None:
        self.freed = True


@dataclass
class FakeVocab:
    eog_tokens: frozenset[int] = frozenset({EOG})
    banned_tokens: tuple[int, ...] = ()


@dataclass
class FakeContext:
    """Records every batch; 'samples' the token after the one evaluated (+1), or EOG at `stop_at`.

    A saved row of logits is the batch item it came from; subclasses change `sample` for other models.
    """

    n_parallel: int = 2
    n_batch: int = 8
    kv_size: int = 64
    window: int = 64
    stop_at: int | None = None
    vocab: FakeVocab = field(default_factory=FakeVocab)
    batches: list[list[BatchItem]] = field(default_factory=list)
    forgotten: list[tuple[int, int]] = field(default_factory=list)
    bans: list[tuple[int, ...]] = field(default_factory=list)

    def decode(self, items: Sequence[BatchItem]) -> None:
        self.batches.append(list(items))

    def sampler(self, params: SamplingParams, *, ban: Sequence[int] = (), grammar: str | None = None) -> FakeSampler:
        self.bans.append(tuple(ban))
        return FakeSampler()

    def save_logits(self, index: int) -> BatchItem:
        return self.batches[-1][index]  # the row's item stands for its logits

    def row(self, index: int | None, saved: BatchItem | None) -> BatchItem:
        """The batch item of entry `index` of the last batch, or the `saved` one (index None)."""
        item = self.batches[-1][index] if index is not None else saved
        assert item is not None
        return item

    def sample(self, sampler: FakeSampler, index: int | None, *, saved: BatchItem | None = None) -> int:
        token = self.row(index, saved).token + 1
        return EOG if self.stop_at is not None and token >= self.stop_at else token

    def accept(self, sampler: FakeSampler, token: int) -> None:
        pass

    def logprobs(
        self, index: int | None, token: int, top_n: int, *, saved: BatchItem | None = None
    ) -> tuple[float, list[tuple[int, float]]]:
        return -0.5, [(token, -0.5)][:top_n]

    def forget(self, seq: int, start: int = 0) -> None:
        self.forgotten.append((seq, start))


def run_until_idle(scheduler: Scheduler, limit: int = 100) -> list[TokenEvent | PromptEvent | DoneEvent]:
    """Step the scheduler until it is idle (at most `limit` steps); every event of those steps."""
    events: list[TokenEvent | PromptEvent | DoneEvent] = []
    for _ in range(limit):
        if scheduler.idle:
            return events
        events.extend(scheduler.step())
    raise AssertionError("the scheduler did not finish")
