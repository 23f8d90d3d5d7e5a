"""The burst policy: a pure function from a request's facts and the current signals to a routing Decision.

No I/O and no clock here: the controller gathers every signal (token count, queue wait, privacy findings,
spend, circuit state) and this module only weighs them, so every decision can be explained, replayed and
unit-tested. Precedence, strongest first:

1. privacy (mode `block`): private data never goes to a public provider, whatever else applies; it may go
   to the trusted tier (a `private_ok` provider: the planner makes it the request's cloud target);
2. budget and circuit: a spent cap or an open circuit keeps everything local;
3. an explicit choice (the `X-Pensieve-Route` header, a cloud model id, a local model id);
4. what the local side cannot do: context overflow or a local model that cannot load;
5. load, then complexity, then the configured default route.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Route = Literal["local", "cloud"]
Pin = Literal["header_local", "header_cloud", "model_local", "model_cloud"]
Vote = Literal["local", "cloud", "no_cloud", "abstain"]
# Where a request runs: this machine, the trusted tier (a private_ok provider) or a public provider.
Tier = Literal["local", "trusted", "public"]

# Reasons a response can carry in `x-pensieve-reason`.
REASONS = (
    "explicit",
    "privacy",
    "budget",
    "circuit_open",
    "no_cloud",
    "context",
    "local_failure",
    "load",
    "complexity",
    "confidence",
    "cloud_failure",
    "default",
)


@dataclass(frozen=True)
class PolicyConfig:
    """Which criteria are on and their thresholds (from the PENSIEVE_BURST_* settings)."""

    default_route: Route = "local"
    explicit: bool = True
    context: bool = True
    load: bool = True
    max_local_wait_ms: float = 10_000.0
    local_failure: bool = True
    cloud_failure: bool = True
    pinned_local_fallback: bool = True
    complexity: bool = True
    complexity_threshold: float = 0.6
    confidence: bool = False
    budget: bool = True
    circuit: bool = True
    privacy_mode: Literal["block", "redact", "off"] = "block"


@dataclass(frozen=True)
class RequestFacts:
    """What the request asks for and holds, measured by the controller."""

    pin: Pin | None
    local_model: str | None
    cloud_model: str | None
    prompt_tokens: int | None
    max_tokens: int
    choices: int = 1  # cloud calls the request makes (n, times the prompts of a batch): the cost estimate's factor
    stream: bool = False
    complexity_score: float | None = None
    complexity_detail: str = ""
    private_kinds: Mapping[str, int] = field(default_factory=dict)
    # Kinds of private data an earlier turn of this request's session held: it stays off public providers for good.
    session_private: tuple[str, ...] = ()
    # Whether cloud_model's provider is trusted (private_ok): private data may go there, unmasked.
    cloud_trusted: bool = False


@dataclass(frozen=True)
class Signals:
    """The state of both sides when the request arrives."""

    local_available: bool
    local_unavailable_reason: str | None
    local_context_length: int | None
    local_wait_ms: float
    cloud_configured: bool
    circuit_allows: bool
    circuit_state: str
    spent_today_usd: float
    spent_month_usd: float
    daily_cap_usd: float | None
    monthly_cap_usd: float | None
    estimated_cost_usd: float
    # Estimated cost of the cloud runs already admitted but not finished (burst/budget.py): counted as spent.
    reserved_usd: float = 0.0


@dataclass(frozen=True)
class Verdict:
    """One criterion's view of the request: its vote and a human-readable why."""

    criterion: str
    enabled: bool
    vote: Vote
    detail: str
    value: float | None = None


@dataclass(frozen=True)
class Decision:
    """Where a request runs, why, and what to do if that side fails.

    `route` is None when neither side may serve it; `error_code` and `detail` then say why.
    """

    route: Route | None
    reason: str
    model: str | None
    fallback: Route | None
    redact: bool
    cascade: bool
    verdicts: tuple[Verdict, ...]
    error_code: str | None = None
    detail: str = ""
    tier: Tier | None = None  # where `route` leads (None when refused)

    def as_dict(self) -> dict[str, object]:
        """The decision record as JSON-ready data (no prompt text: only counts, scores and reasons)."""
        return {
            "route": self.route,
            "tier": self.tier,
            "reason": self.reason,
            "model": self.model,
            "fallback": self.fallback,
            "redact": self.redact,
            "cascade": self.cascade,
            "error_code": self.error_code,
            "detail": self.detail,
            "criteria": [
                {"criterion": v.criterion, "enabled": v.enabled, "vote": v.vote, "detail": v.detail, "value": v.value}
                for v in self.verdicts
            ],
        }


def tier_of(route: Route | None, cloud_trusted: bool) -> Tier | None:
    """The tier a route leads to: local, or the cloud target's tier (trusted when its provider is private_ok)."""
    if route is None:
        return None
    if route == "local":
        return "local"
    return "trusted" if cloud_trusted else "public"


def _privacy(config: PolicyConfig, facts: RequestFacts) -> Verdict:
    found = ", ".join(f"{kind}×{count}" for kind, count in sorted(facts.private_kinds.items()))
    total = float(sum(facts.private_kinds.values()))
    # The trusted tier may take what holds private data; the planner only targets it for such requests.
    provider = (facts.cloud_model or "").split("/", 1)[0]
    trusted = f"may go only to the trusted provider '{provider}'"
    if facts.session_private:  # sticky, whatever the mode: the session's history holds the private data
        kinds = ", ".join(facts.session_private)
        if facts.cloud_trusted:
            return Verdict("privacy", True, "abstain", f"this session held private data ({kinds}): it {trusted}", 1.0)
        return Verdict("privacy", True, "no_cloud", f"this session held private data ({kinds}): it stays here", 1.0)
    if config.privacy_mode == "off":
        return Verdict("privacy", False, "abstain", "privacy checks are off", total)
    if not facts.private_kinds:
        return Verdict("privacy", True, "abstain", "no private data found", 0.0)
    if facts.cloud_trusted:
        return Verdict("privacy", True, "abstain", f"found {found}: {trusted}, unmasked", total)
    if config.privacy_mode == "redact":
        return Verdict("privacy", True, "abstain", f"found {found}: masked before any cloud call", total)
    return Verdict("privacy", True, "no_cloud", f"found {found}: mode 'block' keeps it on this machine", total)


def _budget(config: PolicyConfig, signals: Signals) -> Verdict:
    spent = f"today ${signals.spent_today_usd:.4f}, month ${signals.spent_month_usd:.4f}"
    if signals.reserved_usd:
        spent += f", ${signals.reserved_usd:.4f} reserved in flight"
    if not config.budget:
        return Verdict("budget", False, "abstain", f"caps off ({spent})")
    # Calls in flight count as spent, so concurrent requests cannot all slip under a nearly spent cap.
    caps = (
        (signals.daily_cap_usd, signals.spent_today_usd + signals.reserved_usd, "daily"),
        (signals.monthly_cap_usd, signals.spent_month_usd + signals.reserved_usd, "monthly"),
    )
    for cap, spent_value, name in caps:
        if cap is not None and spent_value >= cap:
            return Verdict("budget", True, "no_cloud", f"{name} cap ${cap:.2f} reached ({spent})", spent_value)
    return Verdict("budget", True, "abstain", f"under the caps ({spent})", signals.spent_today_usd)


def _circuit(config: PolicyConfig, signals: Signals) -> Verdict:
    if not signals.cloud_configured:
        return Verdict("connectivity", config.circuit, "no_cloud", "no cloud provider is configured")
    if not config.circuit:
        return Verdict("connectivity", False, "abstain", f"circuit {signals.circuit_state} (ignored)")
    if not signals.circuit_allows:
        return Verdict("connectivity", True, "no_cloud", f"circuit {signals.circuit_state}: provider failing")
    return Verdict("connectivity", True, "abstain", f"circuit {signals.circuit_state}")


def _explicit(config: PolicyConfig, facts: RequestFacts) -> Verdict:
    if facts.pin is None:
        return Verdict("explicit", config.explicit, "abstain", "model 'auto', no route header")
    wants: Route = "local" if facts.pin.endswith("local") else "cloud"
    how = "X-Pensieve-Route header" if facts.pin.startswith("header") else "model id"
    if wants == "cloud" and not config.explicit:
        return Verdict("explicit", False, "abstain", f"{how} asks for cloud (ignored)")
    return Verdict("explicit", True, wants, f"{how} asks for {wants}")


def _context(config: PolicyConfig, facts: RequestFacts, signals: Signals) -> Verdict:
    if facts.prompt_tokens is None or signals.local_context_length is None:
        return Verdict("context", config.context, "abstain", "local context unknown (no local model ready)")
    # Without max_tokens at least one token must fit, as the engine requires.
    needed = facts.prompt_tokens + max(facts.max_tokens, 1)
    detail = f"{facts.prompt_tokens} prompt + {facts.max_tokens} max tokens vs {signals.local_context_length}"
    if needed <= signals.local_context_length:
        return Verdict("context", config.context, "abstain", f"fits: {detail}", float(needed))
    return Verdict("context", config.context, "cloud" if config.context else "abstain", f"too long: {detail}", needed)


def _local_failure(config: PolicyConfig, signals: Signals) -> Verdict:
    if signals.local_available:
        return Verdict("local_failure", config.local_failure, "abstain", "local model ready")
    why = signals.local_unavailable_reason or "local model unavailable"
    return Verdict("local_failure", config.local_failure, "cloud" if config.local_failure else "abstain", why)


def _load(config: PolicyConfig, signals: Signals) -> Verdict:
    detail = f"estimated local wait {signals.local_wait_ms:.0f} ms vs limit {config.max_local_wait_ms:.0f} ms"
    over = signals.local_wait_ms > config.max_local_wait_ms
    return Verdict("load", config.load, "cloud" if over and config.load else "abstain", detail, signals.local_wait_ms)


def _complexity(config: PolicyConfig, facts: RequestFacts) -> Verdict:
    score = facts.complexity_score
    if score is None:
        return Verdict("complexity", False, "abstain", "not scored")
    detail = f"score {facts.complexity_detail or f'{score:.2f}'} vs threshold {config.complexity_threshold:.2f}"
    high = score >= config.complexity_threshold
    return Verdict("complexity", config.complexity, "cloud" if high and config.complexity else "abstain", detail, score)


def decide(config: PolicyConfig, facts: RequestFacts, signals: Signals) -> Decision:
    """Route one request; pure, so `POST /api/route/explain` and the real path agree exactly."""
    privacy = _privacy(config, facts)
    budget = _budget(config, signals)
    circuit = _circuit(config, signals)
    explicit = _explicit(config, facts)
    context = _context(config, facts, signals)
    failure = _local_failure(config, signals)
    load = _load(config, signals)
    complexity = _complexity(config, facts)
    verdicts = (privacy, budget, circuit, explicit, context, failure, load, complexity)

    blocker = next((v for v in (privacy, circuit, budget) if v.vote == "no_cloud"), None)
    cloud_ok = blocker is None and facts.cloud_model is not None
    local_fits = context.vote != "cloud" and not (
        facts.prompt_tokens is not None
        and signals.local_context_length is not None
        and facts.prompt_tokens + max(facts.max_tokens, 1) > signals.local_context_length
    )
    local_ok = signals.local_available and local_fits and facts.local_model is not None
    # The trusted tier gets the text as it is: masking is for public providers only.
    redact = config.privacy_mode == "redact" and bool(facts.private_kinds) and not facts.cloud_trusted
    hard_local = facts.pin == "header_local"
    soft_local = facts.pin == "model_local" and not config.pinned_local_fallback

    def make(route: Route, reason: str) -> Decision:
        if route == "local" and facts.session_private and reason != "explicit" and not facts.cloud_trusted:
            reason = "session_private"  # the reason says why this session never bursts any more
        if route == "local":
            may_fall_back = config.local_failure and cloud_ok and not (hard_local or soft_local)
            fallback: Route | None = "cloud" if may_fall_back else None
            cascade = config.confidence and cloud_ok and facts.pin is None
            model = facts.local_model
        else:
            fallback = "local" if config.cloud_failure and local_ok else None
            cascade, model = False, facts.cloud_model
        tier = tier_of(route, facts.cloud_trusted)
        return Decision(route, reason, model, fallback, redact and route == "cloud", cascade, verdicts, tier=tier)

    def refuse() -> Decision:
        if not local_fits:
            detail = f"The prompt does not fit the local model's context ({context.detail})"
            code = "context_length_exceeded"
        else:
            detail, code = failure.detail, "local_unavailable"
        if blocker is not None:
            detail += f", and it may not go to the cloud: {blocker.detail}."
            code = "private_data_blocked" if blocker is privacy else code
        elif facts.cloud_model is None:
            detail += ", and no cloud model is configured to take it."
        reason = _blocked_reason(blocker, facts) if blocker else ("context" if not local_fits else "local_failure")
        return Decision(None, reason, None, None, False, False, verdicts, code, detail)

    # What local cannot serve goes to the cloud only if the criterion that covers it is switched on.
    unservable_reason = "context" if not local_fits else "local_failure"
    may_burst_unservable = cloud_ok and (config.context if not local_fits else config.local_failure)
    if explicit.vote == "local":
        if local_ok or hard_local or soft_local:
            # A hard pin runs locally even when it cannot fit: the engine then reports the precise error.
            return make("local", "explicit")
        return make("cloud", unservable_reason) if may_burst_unservable else refuse()
    if explicit.vote == "cloud":
        if cloud_ok:
            return make("cloud", "explicit")
        return make("local", _blocked_reason(blocker, facts)) if local_ok else refuse()
    if not local_ok:
        return make("cloud", unservable_reason) if may_burst_unservable else refuse()
    for verdict in (load, complexity):
        if verdict.vote == "cloud" and cloud_ok:
            return make("cloud", verdict.criterion)
    if config.default_route == "cloud" and cloud_ok:
        return make("cloud", "default")
    wanted_cloud = any(v.vote == "cloud" for v in (load, complexity)) or config.default_route == "cloud"
    if wanted_cloud and facts.cloud_model is not None:
        return make("local", _blocked_reason(blocker, facts))
    return make("local", "default")


def _blocked_reason(blocker: Verdict | None, facts: RequestFacts) -> str:
    """The reason a request that wanted the cloud stays local."""
    if blocker is None or facts.cloud_model is None:
        return "no_cloud"
    if blocker.criterion == "connectivity":
        return "circuit_open"
    if blocker.criterion == "privacy" and facts.session_private:
        return "session_private"
    return blocker.criterion
