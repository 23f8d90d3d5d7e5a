"""Which models stay in memory: keep-alive expiry and least-recently-used eviction, as pure functions.

The pool (`pool.py`) takes a snapshot of its loaded models as `Resident`s and asks these functions what
to do; nothing here does I/O or reads a clock, so the decisions are tested with plain numbers.

A model is *busy* while it has requests in flight, while a response holds it, and for a few seconds
after the pool handed it out for a request that has not started yet (the burst controller tokenizes the
prompt between getting the engine and generating). A busy model is never evicted or expired. An idle
model expires `keep_alive` seconds after its last activity (0: at once; negative: never).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pensieve.engine.memory import MemoryEstimate
from pensieve.errors import InvalidRequestError, ServiceUnavailableError
from pensieve.units import format_bytes

# How long an engine handed out for a request counts as busy before that request starts generating.
HANDOUT_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Resident:
    """A loaded model as the residency decisions see it."""

    model_id: str
    busy: bool
    idle_since: float  # clock time of its last activity
    keep_alive: float  # seconds; negative = forever
    memory_bytes: int  # estimated


def is_busy(
    *,
    in_flight: int,
    holds: int,
    handed_out_at: float | None,
    last_started_at: float,
    released_at: float,
    now: float,
    grace: float = HANDOUT_GRACE_SECONDS,
) -> bool:
    """True while requests run or hold the model, or it was just handed out for a request not started yet."""
    if in_flight > 0 or holds > 0:
        return True
    if handed_out_at is None or handed_out_at <= max(last_started_at, released_at):
        return False
    return now - handed_out_at < grace


def expires_at(resident: Resident) -> float | None:
    """When an idle model's keep-alive runs out; None while it is busy or kept forever."""
    if resident.busy or resident.keep_alive < 0:
        return None
    return resident.idle_since + resident.keep_alive


def is_expired(resident: Resident, now: float) -> bool:
    """True when the model is idle and its keep-alive has run out."""
    deadline = expires_at(resident)
    return deadline is not None and now >= deadline


def _models_are(count: int) -> str:
    return "1 model is" if count == 1 else f"{count} models are"


def plan_admission(
    residents: Sequence[Resident],
    *,
    model_id: str,
    needed: MemoryEstimate,
    memory_limit: int,
    max_loaded: int,
    retry_after_seconds: float,
) -> tuple[str, ...]:
    """The models to unload (least recently used idle ones first) so that `model_id` can be loaded.

    Nothing is chosen unless the load can then go ahead. Raises InvalidRequestError `model_too_large`
    when the model alone exceeds `memory_limit`, and ServiceUnavailableError (with Retry-After) when the
    models in the way are busy. `memory_limit` and `max_loaded` of 0 mean no limit.
    """
    total = needed.total_bytes
    in_use = sum(r.memory_bytes for r in residents)
    if memory_limit and total > memory_limit:
        raise InvalidRequestError(
            f"Model '{model_id}' needs about {format_bytes(total)} ({needed.describe()}), more than "
            f"PENSIEVE_MEMORY_LIMIT ({format_bytes(memory_limit)}) allows; {format_bytes(in_use)} is in use by "
            "loaded models. Lower PENSIEVE_N_CTX, PENSIEVE_PARALLEL or PENSIEVE_KV_CACHE_TOKENS, or raise the limit.",
            param="model",
            code="model_too_large",
        )
    count, used = len(residents), in_use
    victims: list[str] = []

    def fits() -> bool:
        count_ok = not max_loaded or count - len(victims) < max_loaded
        return count_ok and (not memory_limit or used + total <= memory_limit)

    for resident in sorted((r for r in residents if not r.busy), key=lambda r: r.idle_since):
        if fits():
            break
        victims.append(resident.model_id)
        used -= resident.memory_bytes
    if fits():
        return tuple(victims)
    busy = [r for r in residents if r.busy]
    if max_loaded and count - len(victims) >= max_loaded:
        raise ServiceUnavailableError(
            f"{_models_are(len(busy))} loaded and busy (PENSIEVE_MAX_LOADED_MODELS={max_loaded}), so '{model_id}' "
            "cannot be loaded now; raise PENSIEVE_MAX_LOADED_MODELS or retry.",
            code="models_busy",
            retry_after_seconds=retry_after_seconds,
        )
    busy_bytes = sum(r.memory_bytes for r in busy)
    raise ServiceUnavailableError(
        f"Model '{model_id}' needs about {format_bytes(total)}, but PENSIEVE_MEMORY_LIMIT is "
        f"{format_bytes(memory_limit)} and {format_bytes(busy_bytes)} is in use by busy models "
        f"({', '.join(r.model_id for r in busy)}); retry when they are idle, or raise PENSIEVE_MEMORY_LIMIT.",
        code="insufficient_memory",
        retry_after_seconds=retry_after_seconds,
    )
