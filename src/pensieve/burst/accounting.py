"""The one place a request's outcome is accounted: spend and savings in the ledger, the decision log, metrics.

Every finished, failed and refused run is recorded here and nowhere else, so the recent-decisions log,
the Prometheus counters and the spend ledger always agree. Costs are priced from the cloud registry.

A cloud stream cut before its end (the client left, a timeout, a dropped connection) was still billed by
the provider for the prompt and the tokens it sent: the runner hands those in (`failed(..., billed=...)`,
`abandoned`) and they are recorded as spend like a finished run's. Each recorded cloud cost is taken off
the request's budget reservation (`burst/budget.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pensieve.burst.budget import Reservation
from pensieve.burst.confidence import as_probability
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.planner import Plan
from pensieve.burst.policy import Route
from pensieve.burst.stats import DecisionLog, DecisionLogEntry, now
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine_api import Usage
from pensieve.errors import PensieveError
from pensieve.observability.metrics import Metrics


@dataclass
class RouteInfo:
    """Where a request runs now and why; becomes the x-pensieve-* response headers."""

    route: Route
    reason: str
    model: str
    fallback: bool = False
    # How sure the local model was of its answer's first tokens (burst/confidence.py; a log-probability),
    # None until measured: after a local answer, or before the first byte of a cascaded one.
    confidence: float | None = None
    # "local", "trusted" (a private_ok provider) or "public"; empty: derived from the route (local or public).
    tier: str = ""

    def __post_init__(self) -> None:
        """A RouteInfo built without a tier: local for the local route; the runner sets a cloud run's tier."""
        if not self.tier:
            self.tier = "local" if self.route == "local" else "public"

    @property
    def confidence_probability(self) -> float | None:
        """The confidence as clients see it: a probability in 0..1 (None when not measured)."""
        return as_probability(self.confidence) if self.confidence is not None else None

    def headers(self) -> dict[str, str]:
        """The x-pensieve-route / -tier / -reason / -model headers, and x-pensieve-confidence once known."""
        headers = {
            "x-pensieve-route": self.route,
            "x-pensieve-tier": self.tier,
            "x-pensieve-reason": self.reason,
            "x-pensieve-model": self.model,
        }
        if self.confidence_probability is not None:
            headers["x-pensieve-confidence"] = f"{self.confidence_probability:.4f}"
        return headers


@dataclass(frozen=True)
class Timing:
    """When a run started and when its first chunk came (perf_counter seconds), for latencies."""

    started: float
    first_token: float | None
    ended: float

    @property
    def latency_ms(self) -> float:
        """The whole run, in milliseconds."""
        return (self.ended - self.started) * 1000

    @property
    def first_token_ms(self) -> float | None:
        """Time to the first chunk in milliseconds (None when nothing came)."""
        return (self.first_token - self.started) * 1000 if self.first_token is not None else None


class RunRecorder:
    """Records each run's outcome in the ledger, the decision log and the metrics."""

    def __init__(self, ledger: SpendLedger, log: DecisionLog, metrics: Metrics, cloud: CloudRegistry) -> None:
        self.ledger = ledger
        self.log = log
        self.metrics = metrics
        self.cloud = cloud

    def saved_usd(self, usage: Usage) -> float:
        """What local tokens would have cost at the default cloud model's prices (0 with no cloud)."""
        default = self.cloud.default_model_id
        if default is None:
            return 0.0
        return self.cloud.model(default).cost_usd(usage.prompt_tokens, usage.completion_tokens)

    def _spend(self, info: RouteInfo, usage: Usage, reservation: Reservation | None) -> float:
        """Record a cloud run's billed tokens and cost in the ledger; the cost leaves the reservation."""
        cost = self.cloud.model(info.model).cost_usd(usage.prompt_tokens, usage.completion_tokens)
        self.ledger.record_cloud(
            provider=info.model.split("/", 1)[0],
            model=info.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
        )
        if reservation is not None:
            reservation.consume(cost)
        return cost

    def finished(
        self, info: RouteInfo, usage: Usage, timing: Timing, *, stream: bool, reservation: Reservation | None = None
    ) -> float:
        """A run that produced its whole answer: cloud spend or local savings, then the log entry; its cost."""
        cost = 0.0
        source = None
        if info.route == "cloud":
            cost, source = self._spend(info, usage, reservation), "reported"
        else:
            self.ledger.record_local(
                model=info.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                # A local answer kept after the cascade asked the cloud saved nothing: the cloud was paid.
                saved_usd=0.0 if info.reason == "confidence" else self.saved_usd(usage),
            )
        self._record(
            route=info.route,
            info=info,
            usage=usage,
            timing=timing,
            cost_usd=cost,
            stream=stream,
            error=None,
            usage_source=source,
        )
        return cost

    def failed(
        self,
        info: RouteInfo,
        error: PensieveError,
        timing: Timing,
        *,
        stream: bool,
        billed: Usage | None = None,
        reservation: Reservation | None = None,
    ) -> None:
        """A run that ended in an error the client sees; `billed`: what a cut cloud stream was billed (estimated)."""
        cost = self._spend(info, billed, reservation) if billed is not None and info.route == "cloud" else 0.0
        self._record(
            route="error",
            info=info,
            usage=billed if billed is not None else Usage(0, 0),
            timing=Timing(timing.started, None, timing.ended),
            cost_usd=cost,
            stream=stream,
            error=error.code or type(error).__name__,
            usage_source="estimated" if billed is not None else None,
        )

    def abandoned(
        self, info: RouteInfo, billed: Usage, timing: Timing, *, stream: bool, reservation: Reservation | None = None
    ) -> float:
        """A cloud run the client walked away from mid-stream: what the provider billed so far (estimated)."""
        cost = self._spend(info, billed, reservation)
        self._record(
            route=info.route,
            info=info,
            usage=billed,
            timing=timing,
            cost_usd=cost,
            stream=stream,
            error="client_disconnected",
            usage_source="estimated",
        )
        return cost

    def refused(self, plan: Plan) -> None:
        """A request no side may run (every decision is counted, refusals too)."""
        decision, facts = plan.decision, plan.facts
        self._record(
            route="refused",
            info=RouteInfo("local", decision.reason, facts.local_model or ""),
            usage=Usage(facts.prompt_tokens or 0, 0),
            timing=Timing(0.0, None, 0.0),
            cost_usd=0.0,
            stream=facts.stream,
            error=decision.error_code,
        )

    def _record(
        self,
        *,
        route: str,
        info: RouteInfo,
        usage: Usage,
        timing: Timing,
        cost_usd: float,
        stream: bool,
        error: str | None,
        usage_source: str | None = None,
    ) -> None:
        entry = DecisionLogEntry(
            at=now(),
            route=route,
            reason=info.reason,
            model=info.model,
            latency_ms=timing.latency_ms,
            first_token_ms=timing.first_token_ms,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost_usd,
            fallback=info.fallback,
            stream=stream,
            error=error,
            usage_source=usage_source,
            confidence=info.confidence_probability,
            tier=info.tier if route != "refused" else None,
        )
        self.log.record(entry)
        self.metrics.observe(entry)
