"""The app's Prometheus registry and instruments: requests, tokens, cost, fallbacks, latency, time to the
first token, local load, HTTP responses by status, worker crashes and restarts.

The registry is owned by one app (not prometheus_client's global one), so several servers built in one
process (tests, benches) never share counters.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter

from pensieve.burst.stats import DecisionLogEntry
from pensieve.engine_api import EngineStats

# Requests take from ~50 ms (a short local answer) to minutes (a long cloud stream).
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
# The first token comes after ~10 ms (a warm local model, a short prompt) to a minute (a long prompt on a
# busy CPU, a slow provider): roughly x2.5 steps over that range.
_FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)


class Metrics:
    """Every Prometheus instrument the server exposes on GET /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
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
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._queue_depth = Gauge(
            "pensieve_local_queue_depth", "Requests waiting for a local model.", ["model"], registry=self.registry
        )
        self._estimated_wait = Gauge(
            "pensieve_local_estimated_wait_seconds",
            "Estimated wait before a new request starts on a local model (the load criterion's signal).",
            ["model"],
            registry=self.registry,
        )

        self._first_token = Histogram(
            "pensieve_time_to_first_token_seconds",
            "Time from the start of a run to its first generated chunk, streamed or not, by route and model.",
            ["route", "model"],
            buckets=_FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self._http = PromCounter(
            "pensieve_http_responses",
            "HTTP responses by route template (unmatched = no route), status class (2xx..5xx) and status code.",
            ["route", "status_class", "code"],
            registry=self.registry,
        )
        self._worker_crashes = PromCounter(
            "pensieve_worker_crashes",
            "Model worker processes that died unasked (while loading or serving).",
            ["model"],
            registry=self.registry,
        )
        self._worker_restarts = PromCounter(
            "pensieve_worker_restarts",
            "New workers the pool started in place of one that died.",
            ["model"],
            registry=self.registry,
        )

    def observe(self, entry: DecisionLogEntry) -> None:
        """Count one finished, failed or refused request."""
        self._requests.labels(entry.route, entry.reason).inc()
        self._tokens.labels(entry.route, "prompt").inc(entry.prompt_tokens)
        self._tokens.labels(entry.route, "completion").inc(entry.completion_tokens)
        if entry.cost_usd:
            self._cost.labels(entry.model).inc(entry.cost_usd)
        if entry.fallback:
            self._fallbacks.labels(entry.route).inc()
        self._latency.labels(entry.route).observe(entry.latency_ms / 1000)
        if entry.first_token_ms is not None and entry.route in ("local", "cloud"):
            self._first_token.labels(entry.route, entry.model).observe(entry.first_token_ms / 1000)

    def http_response(self, route: str, status: int) -> None:
        """Count one HTTP response (`route` is a template or `unmatched`, never a raw path)."""
        self._http.labels(route, f"{status // 100}xx", str(status)).inc()

    def worker_event(self, event: str, model: str) -> None:
        """Count a worker `crash` or `restart` of `model` (the pool's hook)."""
        counter = self._worker_crashes if event == "crash" else self._worker_restarts
        counter.labels(model).inc()

    def set_local_load(self, loads: Iterable[EngineStats]) -> None:
        """Copy the loaded local engines' queue depth and estimated wait into the gauges."""
        for stats in loads:
            self._queue_depth.labels(stats.model).set(stats.queue_depth)
            self._estimated_wait.labels(stats.model).set(stats.estimated_wait_seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
