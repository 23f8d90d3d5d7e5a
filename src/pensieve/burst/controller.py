"""The burst controller: gathers the signals, asks the pure policy, and returns an engine that runs the decision.

The returned RoutedEngine runs the request on the chosen side and falls back to the other side when the
first one fails before anything was streamed; it redacts private data before a cloud call in `redact`
mode, runs the confidence cascade, and records cost, savings and the decision log when the run ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from pensieve.burst.complexity import ComplexityScore, ComplexityWeights, score_complexity
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.policy import Decision, Pin, PolicyConfig, RequestFacts, Signals, decide
from pensieve.burst.routed_engine import RoutedEngine
from pensieve.burst.stats import BurstStats, DecisionLogEntry, now
from pensieve.cloud.registry import CloudRegistry
from pensieve.config import Settings, SettingsError
from pensieve.engine.base import Engine
from pensieve.engine.pool import ModelPool, normalise_model_id
from pensieve.engine.types import GenerationRequest
from pensieve.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PensieveError,
    PrivateDataBlockedError,
    ServiceUnavailableError,
)
from pensieve.privacy.detectors import BUILTIN_DETECTORS
from pensieve.privacy.scanner import Finding, PrivacyConfig, PrivacyScanner

RouteHeader = Literal["local", "cloud", "auto"]
AUTO_MODEL = "auto"
# Request text up to this many characters is scanned on the event loop (~10 ms); longer text in a thread.
INLINE_TEXT_CHARS = 50_000
# Used to estimate a cloud call's cost and to price local tokens when max_tokens is unset.
_ASSUMED_COMPLETION_TOKENS = 256


def policy_config(settings: Settings) -> PolicyConfig:
    """The policy's switches and thresholds from the settings."""
    return PolicyConfig(
        default_route=settings.burst_default_route,
        explicit=settings.burst_explicit,
        context=settings.burst_context,
        load=settings.burst_load,
        max_local_wait_ms=settings.burst_max_local_wait_ms,
        local_failure=settings.burst_local_failure,
        cloud_failure=settings.burst_cloud_failure,
        pinned_local_fallback=settings.burst_pinned_local_fallback,
        complexity=settings.burst_complexity,
        complexity_threshold=settings.burst_complexity_threshold,
        confidence=settings.burst_confidence,
        budget=settings.burst_budget,
        circuit=settings.burst_circuit,
        privacy_mode=settings.privacy_mode,
    )


def privacy_scanner(settings: Settings) -> PrivacyScanner:
    """The detectors the settings switch on, plus the user's own patterns and keywords."""
    wanted = {name.strip().lower() for name in settings.privacy_detectors}
    unknown = wanted - set(BUILTIN_DETECTORS) - {"all"}
    if unknown:
        raise ValueError(
            f"PENSIEVE_PRIVACY_DETECTORS: unknown detector(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(BUILTIN_DETECTORS)}"
        )
    detectors = frozenset(BUILTIN_DETECTORS) if "all" in wanted else frozenset(wanted)
    return PrivacyScanner(
        PrivacyConfig(
            detectors=detectors,
            custom_patterns=tuple(settings.privacy_patterns.items()),
            keywords=tuple(settings.privacy_keywords),
        )
    )


def check_burst_settings(settings: Settings) -> None:
    """Build everything the burst settings describe once, so a bad value stops start-up with one clear line."""
    from pensieve.cloud.providers import ProviderConfigError
    from pensieve.cloud.registry import providers_from_settings

    checks: list[tuple[str, Any]] = [
        ("PENSIEVE_PRIVACY_PATTERNS / PENSIEVE_PRIVACY_DETECTORS", lambda: privacy_scanner(settings)),
        (
            "PENSIEVE_BURST_COMPLEXITY_WEIGHTS",
            lambda: ComplexityWeights.from_mapping(settings.burst_complexity_weights),
        ),
        ("PENSIEVE_CLOUD_PROVIDERS_FILE", lambda: providers_from_settings(settings)),
    ]
    for key, build in checks:
        try:
            build()
        except (ValueError, ProviderConfigError, OSError) as exc:
            raise SettingsError(f"invalid setting {key}: {exc}") from exc


def request_texts(request: GenerationRequest) -> list[str]:
    """The user-controlled text of a request, one entry per message (or the prompt)."""
    if request.messages is not None:
        return [message.content for message in request.messages]
    return [request.prompt] if isinstance(request.prompt, str) else []


@dataclass(frozen=True)
class Plan:
    """A decision with everything measured to reach it (for explain) and the engines to run it."""

    decision: Decision
    facts: RequestFacts
    signals: Signals
    local: Engine | None
    local_error: PensieveError | None
    chat: bool

    def explain(self) -> dict[str, Any]:
        """The decision record and the figures behind it; no prompt text."""
        facts = self.facts
        return {
            **self.decision.as_dict(),
            "facts": {
                "pin": facts.pin,
                "local_model": facts.local_model,
                "cloud_model": facts.cloud_model,
                "prompt_tokens": facts.prompt_tokens,
                "max_tokens": facts.max_tokens,
                "stream": facts.stream,
                "complexity_score": facts.complexity_score,
                "private_data": dict(facts.private_kinds),
            },
            "signals": self.signals.__dict__,
        }


def _why_not_cloud(decision: Decision, signals: Signals) -> str:
    """Why a request the local model cannot take did not go to the cloud ("" when no cloud exists)."""
    if not signals.cloud_configured:
        return ""
    blocker = next((v for v in decision.verdicts if v.vote == "no_cloud"), None)
    if blocker is not None:
        return f"It could not go to the cloud instead: {blocker.detail}."
    return "Sending it to the cloud instead is switched off (PENSIEVE_BURST_CONTEXT=false)."


class BurstController:
    """Decides local or cloud for every request and hands back an engine that carries the decision out."""

    def __init__(
        self,
        settings: Settings,
        pool: ModelPool,
        cloud: CloudRegistry,
        ledger: SpendLedger,
        stats: BurstStats,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.cloud = cloud
        self.ledger = ledger
        self.stats = stats
        self.config = policy_config(settings)
        self.scanner = privacy_scanner(settings)
        self.weights = ComplexityWeights.from_mapping(settings.burst_complexity_weights)

    def reconfigure(self, settings: Settings, cloud: CloudRegistry | None = None) -> None:
        """Apply new settings to the running controller (and a new cloud registry when providers changed)."""
        scanner = privacy_scanner(settings)
        weights = ComplexityWeights.from_mapping(settings.burst_complexity_weights)
        self.settings, self.config, self.scanner, self.weights = settings, policy_config(settings), scanner, weights
        if cloud is not None:
            self.cloud = cloud

    # --- model ids --------------------------------------------------------------------------------

    def _pin(self, model: str, header: RouteHeader | None) -> tuple[Pin | None, str | None, str | None]:
        """(pin, local model, cloud model) for the requested model id and route header."""
        model = model.strip()
        cloud_id = self.cloud.resolve(model) if model.lower() != AUTO_MODEL else None
        is_auto = model.lower() in (AUTO_MODEL, "")
        local_id = None if is_auto or cloud_id else normalise_model_id(model)
        local = local_id or normalise_model_id(self.settings.default_model)
        cloud = cloud_id or self.cloud.default_model_id
        if header == "local":
            return "header_local", local, cloud
        if header == "cloud":
            return "header_cloud", local, cloud
        if header == "auto" or is_auto:
            return None, local, cloud
        return ("model_cloud" if cloud_id else "model_local"), local, cloud

    def is_known_model(self, model: str) -> bool:
        """True for `auto` and every cloud model id (local ids are checked by the pool)."""
        return model.strip().lower() in (AUTO_MODEL, "") or self.cloud.resolve(model.strip()) is not None

    # --- signals ----------------------------------------------------------------------------------

    async def _local(self, model: str | None, pin: Pin | None) -> tuple[Engine | None, PensieveError | None]:
        if model is None:
            return None, ServiceUnavailableError("No local model is configured.")
        try:
            return await self.pool.get(model), None
        except ModelNotFoundError as exc:
            if pin in ("model_local", "header_local") and model != normalise_model_id(self.settings.default_model):
                raise  # the client named a model that does not exist: 404, not a burst
            return None, exc
        except PensieveError as exc:
            return None, exc

    def _wait_ms(self, engine: Engine | None) -> float:
        if engine is None:
            return 0.0
        # The engine knows its batching: 0 while a sequence is free, else the wait for one to free up.
        return engine.stats().estimated_wait_seconds * 1000

    def _signals(self, local: Engine | None, local_error: PensieveError | None, facts: RequestFacts) -> Signals:
        cloud_model = facts.cloud_model
        breaker = self.cloud.breaker(cloud_model) if cloud_model else None
        totals_today, totals_month = self.ledger.spent_today(), self.ledger.spent_this_month()
        estimated = 0.0
        if cloud_model:
            completion = facts.max_tokens or _ASSUMED_COMPLETION_TOKENS
            estimated = self.cloud.model(cloud_model).cost_usd(facts.prompt_tokens or 0, completion)
        return Signals(
            local_available=local is not None,
            local_unavailable_reason=local_error.message if local_error else None,
            local_context_length=local.context_length if local else None,
            local_wait_ms=self._wait_ms(local),
            cloud_configured=self.cloud.configured,
            circuit_allows=breaker.would_allow() if breaker else False,
            circuit_state=breaker.state if breaker else "none",
            spent_today_usd=totals_today,
            spent_month_usd=totals_month,
            daily_cap_usd=self.settings.budget_daily_usd,
            monthly_cap_usd=self.settings.budget_monthly_usd,
            estimated_cost_usd=estimated,
        )

    def _read_texts(self, texts: list[str], prompt_tokens: int | None) -> tuple[Sequence[Finding], ComplexityScore]:
        """The request text's private-data findings (none when privacy is off) and its complexity score."""
        findings = self.scanner.scan(texts) if self.config.privacy_mode != "off" else ()
        return findings, score_complexity("\n".join(texts), self.weights, prompt_tokens=prompt_tokens)

    async def plan(self, request: GenerationRequest, *, stream: bool, header: RouteHeader | None) -> Plan:
        """Measure the request and the state of both sides, then decide (no generation happens)."""
        pin, local_model, cloud_model = self._pin(request.model, header)
        if pin in ("header_cloud", "model_cloud") and cloud_model is None:
            raise InvalidRequestError(
                "This request asks for a cloud model, but no cloud provider is configured "
                "(set PENSIEVE_CLOUD_BASE_URL and PENSIEVE_CLOUD_MODEL).",
                param="model",
                code="cloud_not_configured",
            )
        local, local_error = await self._local(local_model, pin)
        texts = request_texts(request)
        prompt_tokens = await local.count_prompt_tokens(request) if local else None
        measure = partial(self._read_texts, texts, prompt_tokens)
        # A long text (up to the 8 MB body limit) would hold the event loop, and so every running stream,
        # for up to seconds: it is scanned and scored in a thread (~0.2 s a megabyte).
        off_loop = sum(len(text) for text in texts) > INLINE_TEXT_CHARS
        findings, complexity = await asyncio.to_thread(measure) if off_loop else measure()
        kinds: dict[str, int] = {}
        for finding in findings:
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
        facts = RequestFacts(
            pin=pin,
            local_model=local_model,
            cloud_model=cloud_model,
            prompt_tokens=prompt_tokens,
            max_tokens=request.params.max_tokens or 0,
            stream=stream,
            complexity_score=complexity.score,
            complexity_detail=complexity.explain(),
            private_kinds=kinds,
        )
        signals = self._signals(local, local_error, facts)
        decision = decide(self.config, facts, signals)
        return Plan(decision, facts, signals, local, local_error, chat=request.messages is not None)

    async def route(self, request: GenerationRequest, *, stream: bool, header: RouteHeader | None) -> RoutedEngine:
        """Decide where `request` runs and return the engine that runs it there (with its fallback)."""
        plan = await self.plan(request, stream=stream, header=header)
        decision = plan.decision
        if decision.route is None:
            self._refuse(plan)
        redactor = self.scanner if self.settings.privacy_mode == "redact" else None
        return RoutedEngine(
            controller=self,
            decision=decision,
            local=plan.local,
            local_model=plan.facts.local_model,
            cloud_model=plan.facts.cloud_model,
            stream=stream,
            redactor=redactor,
            confidence_threshold=self.settings.burst_confidence_threshold,
        )

    def _refuse(self, plan: Plan) -> None:
        """Count the refusal (every decision is counted), then raise the error that explains it."""
        decision = plan.decision
        self.stats.record(
            DecisionLogEntry(
                at=now(),
                route="refused",
                reason=decision.reason,
                model=plan.facts.local_model or "",
                latency_ms=0.0,
                first_token_ms=None,
                prompt_tokens=plan.facts.prompt_tokens or 0,
                completion_tokens=0,
                cost_usd=0.0,
                fallback=False,
                stream=plan.facts.stream,
                error=decision.error_code,
            )
        )
        if decision.error_code == "private_data_blocked":
            raise PrivateDataBlockedError(decision.detail)
        facts, signals = plan.facts, plan.signals
        if decision.error_code == "context_length_exceeded" and facts.prompt_tokens is not None:
            raise ContextLengthExceededError.for_request(
                n_ctx=signals.local_context_length or 0,
                prompt_tokens=facts.prompt_tokens,
                requested=facts.max_tokens or None,
                chat=plan.chat,
                note=_why_not_cloud(decision, signals),
            )
        if decision.error_code == "context_length_exceeded":
            raise ContextLengthExceededError(decision.detail, param="messages" if plan.chat else "prompt")
        if plan.local_error is not None:
            raise plan.local_error
        raise ServiceUnavailableError(decision.detail)

    def local_load(self) -> list[dict[str, Any]]:
        """Queue depth, busy flag, speed and estimated wait of every loaded local model."""
        loads = []
        for engine in self.pool.loaded():
            stats = engine.stats()
            loads.append(
                {
                    "model": engine.model_id,
                    "queue_depth": stats.queue_depth,
                    "busy": stats.busy,
                    "busy_sequences": stats.busy_sequences,
                    "parallel": stats.parallel,
                    "estimated_wait_ms": self._wait_ms(engine),
                    "recent_tokens_per_second": stats.recent_tokens_per_second,
                    "recent_service_seconds": stats.recent_service_seconds,
                }
            )
        return loads

    def refresh_gauges(self) -> None:
        """Copy the local engines' load into the Prometheus gauges (called when /metrics is scraped)."""
        for load in self.local_load():
            self.stats.queue_depth.labels(load["model"]).set(load["queue_depth"])
            self.stats.estimated_wait.labels(load["model"]).set(load["estimated_wait_ms"] / 1000)

    # --- used by RoutedEngine ---------------------------------------------------------------------

    async def local_engine(self, model: str) -> Engine:
        """The local engine for a fallback run."""
        return await self.pool.get(model)

    def saved_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What local tokens would have cost at the default cloud model's prices."""
        default = self.cloud.default_model_id
        if default is None:
            return 0.0
        return self.cloud.model(default).cost_usd(prompt_tokens, completion_tokens)

    @staticmethod
    def clock() -> float:
        """Monotonic time for latencies."""
        return time.perf_counter()
