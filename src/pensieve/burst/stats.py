"""What routing did: one log entry per finished, failed or refused request, counts by route and reason.

Only numbers and labels are kept (route, reason, model, tokens, cost, latency), never prompt text.
Entries are made in one place, `pensieve.burst.accounting`; the Prometheus view is `pensieve.observability`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

RECENT_DECISIONS = 200


@dataclass(frozen=True)
class DecisionLogEntry:
    """One finished (or failed) request as the recent-decisions log shows it."""

    at: float  # Unix time
    route: str  # local | cloud | error | refused
    reason: str
    model: str
    latency_ms: float
    first_token_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    fallback: bool
    stream: bool
    error: str | None = None
    # Where a cloud run's token counts came from: "reported" (the engine's final count: the provider's usage,
    # or the cloud engine's estimate when the provider sent none), "estimated" (a stream cut before its end:
    # the provider's usage comes last, so ~4 characters per token of the prompt and of the text received).
    usage_source: str | None = None
    # How sure the local model was of the answer's first tokens (0..1): on local answers and on answers the
    # cascade moved to the cloud because of it; None when not measured (cloud runs, failures).
    confidence: float | None = None
    # local | trusted | public: the tier the run used (None for a refusal), so the log shows private requests
    # reached only this machine or the trusted provider.
    tier: str | None = None


class DecisionLog:
    """Counts by route and reason, and the ring buffer of the most recent decisions."""

    def __init__(self) -> None:
        self.by_route_reason: Counter[tuple[str, str]] = Counter()
        self.recent: deque[DecisionLogEntry] = deque(maxlen=RECENT_DECISIONS)

    def record(self, entry: DecisionLogEntry) -> None:
        """Count one finished request."""
        self.by_route_reason[(entry.route, entry.reason)] += 1
        self.recent.append(entry)

    def counts(self) -> dict[str, Any]:
        """Requests by route, and by route and reason."""
        by_route: Counter[str] = Counter()
        by_reason: dict[str, dict[str, int]] = {}
        for (route, reason), count in self.by_route_reason.items():
            by_route[route] += count
            by_reason.setdefault(route, {})[reason] = count
        return {"by_route": dict(by_route), "by_route_and_reason": by_reason}

    def recent_decisions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest decisions first."""
        return [asdict(entry) for entry in reversed(self.recent)][:limit]


def now() -> float:
    """Wall-clock time for log entries."""
    return time.time()
