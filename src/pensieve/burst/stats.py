"""What the burst controller did: counts by route and reason, a recent-decisions log, Prometheus metrics.

Only numbers and labels are kept (route, reason, model, tokens, cost, latency), never prompt text.
Metrics live in a registry owned by the app, so several servers in one process do not share counters.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

RECENT_DECISIONS = 200


@dataclass(frozen=True)
class DecisionLogEntry:
    """One finished (or failed) request as the recent-decisions log shows it."""

    at: float  # Unix time
    route: str  # local | cloud | error
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


class BurstStats:
    """Counters and the recent-decisions ring buffer, plus the Prometheus view of the same events."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.by_route_reason: Counter[tuple[str, str]] = Counter()
        self.recent: deque[DecisionLogEntry] = deque(maxlen=RECENT_DECISIONS)
        self._requests = PromCounter(
            "pensieve_requests", "Generation requests by route and reason.", ["route", "reason"], registry=self.registry
        )
        self._tokens = PromCounter(
            "pensieve_tokens", "Tokens processed by route and kind.", ["route", "kind"], registry=self.registry
        )
        self._cost = PromCounter("pensieve_cloud_cost_usd", "Cloud spend in USD.", ["model"], registry=self.registry)
        self._fallbacks = PromCounter(
            "pensieve_fallbacks", "Requests that fell back to the other side.", ["to"], registry=self.registry
        )
        self._latency = Histogram(
            "pensieve_request_seconds",
            "Request latency by route.",
            ["route"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
            registry=self.registry,
        )

        self.queue_depth = Gauge(
            "pensieve_local_queue_depth", "Requests waiting for a local model.", ["model"], registry=self.registry
        )
        self.estimated_wait = Gauge(
            "pensieve_local_estimated_wait_seconds",
            "Estimated wait before a new request starts on a local model (the load criterion's signal).",
            ["model"],
            registry=self.registry,
        )

    def record(self, entry: DecisionLogEntry) -> None:
        """Count one finished request."""
        self.by_route_reason[(entry.route, entry.reason)] += 1
        self.recent.append(entry)
        self._requests.labels(entry.route, entry.reason).inc()
        self._tokens.labels(entry.route, "prompt").inc(entry.prompt_tokens)
        self._tokens.labels(entry.route, "completion").inc(entry.completion_tokens)
        if entry.cost_usd:
            self._cost.labels(entry.model).inc(entry.cost_usd)
        if entry.fallback:
            self._fallbacks.labels(entry.route).inc()
        self._latency.labels(entry.route).observe(entry.latency_ms / 1000)

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
