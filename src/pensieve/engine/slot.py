"""One KV sequence of the batching scheduler (`Slot`) and the prompt-cache rules that look at it.

A slot is idle (keeping the KV of its last request as a prompt cache) or running a job. Runs in the
worker process, like the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pensieve.engine.llamacpp.sampling import SequenceSampler
from pensieve.engine.worker_protocol import Job


@dataclass
class Slot:
    """One KV sequence: idle (keeping its cache) or running a job."""

    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV is in this sequence, in order
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate (all but the last)
    sampler: SequenceSampler | None = None
    next_token: int | None = None  # sampled (or last prompt) token waiting to be evaluated
    # The logits after the first `saved_for` cached tokens (the last prompt's end), kept while those stay.
    saved_logits: Any = None
    saved_for: int = 0
    produced: int = 0
    reused: int = 0
    last_used: float = 0.0
    partition: str = ""  # the cache partition (API key) of the job whose tokens `cached` holds

    def truncate(self, length: int) -> None:
        """Keep the first `length` cached tokens (the caller drops the KV of the rest); the saved logits
        go with the tokens they follow."""
        del self.cached[length:]
        if length < self.saved_for:
            self.saved_logits, self.saved_for = None, 0

    @property
    def reserved(self) -> int:
        """KV cells this slot may need: its cache now, or its whole job's prompt + completion."""
        if self.job is None:
            return len(self.cached)
        return len(self.job.prompt) + self.job.max_tokens


def seeded(job: Job) -> bool:
    """Whether the job draws with a seed, asking for the same sample whatever the cache holds.

    llama.cpp's CPU kernels round a row of logits differently by how many rows its batch has (up to ~0.5
    in a logit between one row and a prompt's slice), enough to change a seeded draw. So a seeded job's
    last prompt token is always evaluated alone, and it never starts from logits saved by another path;
    the others take the step and the evaluation these save (greedy answers change only at near ties).
    """
    return job.params.seed is not None and job.params.temperature > 0.0


def common_prefix(cached: list[int], prompt: list[int]) -> int:
    """How many leading tokens `cached` and `prompt` share."""
    count = 0
    for have, want in zip(cached, prompt, strict=False):
        if have != want:
            break
        count += 1
    return count
