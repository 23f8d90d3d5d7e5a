"""The faults the fake cloud can inject, queued per request: a status, a 429, a hang, a drop, a stall, latency,
a stream that ends cleanly but early, a chosen finish_reason."""

from __future__ import annotations

from dataclasses import dataclass

# How long a hang fault lasts at most, and the pause between streamed events, by default.
HANG_SECONDS = 60.0
CHUNK_DELAY_SECONDS = 0.005


class ConnectionDroppedError(Exception):
    """Raised inside a handler when the client went away (or a fault closed the connection)."""


@dataclass
class Fault:
    """One queued fault; `remaining` counts the requests it still applies to."""

    status: int | None
    hang: bool
    retry_after: float | None
    drop_after_chunks: int | None
    latency: float
    remaining: int
    stall_after_chunks: int | None = None
    end_after_chunks: int | None = None
    finish_reason: str | None = None


def make_fault(
    *,
    status: int | None,
    hang: bool,
    rate_limit_retry_after: float | None,
    drop_after_chunks: int | None,
    latency: float,
    times: int,
    stall_after_chunks: int | None = None,
    end_after_chunks: int | None = None,
    finish_reason: str | None = None,
) -> Fault:
    """A validated fault for the next `times` generation requests (see `FakeCloud.set_fault`)."""
    if times < 1:
        raise ValueError("times must be at least 1")
    counts = (drop_after_chunks, stall_after_chunks, end_after_chunks)
    if latency < 0 or any(count is not None and count < 0 for count in counts):
        raise ValueError("latency, drop_after_chunks, stall_after_chunks and end_after_chunks cannot be negative")
    if (
        status is None
        and not hang
        and rate_limit_retry_after is None
        and all(count is None for count in counts)
        and not latency
        and finish_reason is None
    ):
        raise ValueError("set_fault needs at least one fault")
    return Fault(
        status,
        hang,
        rate_limit_retry_after,
        drop_after_chunks,
        latency,
        times,
        stall_after_chunks,
        end_after_chunks,
        finish_reason,
    )
