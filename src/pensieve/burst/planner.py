"""The route planner: measures a request and both sides, asks the pure policy, and hands back a Plan.

Nothing is generated here. The planner reads the signals the policy needs (the prompt's token count on
the local model, its private-data findings and complexity, the local wait, the cloud's circuit, the spend)
and returns a `Plan`: the decision, every figure behind it (for `/api/route/explain`), and what running it
needs (the local engine it already holds, the redactor). A refused plan knows the error that explains it.

The privacy scan covers every text the cloud call would carry (`burst/outgoing.py`), not only the messages.
A private request (private data found in mode `block` or `redact`, or a private session) that names no cloud
model gets the trusted tier's model as its cloud target when a `private_ok` provider exists, BEFORE the
signals are read: the circuit and the cost estimate are then the trusted provider's, and the policy sees
`cloud_trusted`. A request that names a public model keeps it (and is blocked or masked as before).
A plan made to be run (`reserve=True`) that may use the cloud holds its estimated cost against the caps
(`burst/budget.py`) from the moment it is decided, so concurrent requests see each other's spend coming.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from pensieve.burst.budget import Reservation, Reservations
from pensieve.burst.complexity import ComplexityScore, score_complexity
from pensieve.burst.confidence import ConfidenceGate
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.options import BurstOptions
from pensieve.burst.outgoing import outgoing_texts
from pensieve.burst.policy import Decision, Pin, RequestFacts, Signals, decide
from pensieve.cloud.engine import estimate_tokens
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine.pool import ModelPool
from pensieve.engine.registry import normalise_model_id
from pensieve.engine_api import Engine, GenerationRequest
from pensieve.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PensieveError,
    PrivateDataBlockedError,
    ServiceUnavailableError,
)
from pensieve.privacy.scanner import Finding, PrivacyScanner

RouteHeader = Literal["local", "cloud", "auto"]
AUTO_MODEL = "auto"
# Request text up to this many characters is scanned on the event loop; longer text in a thread
# (bench/README.md, "Figures formerly quoted in code comments", has the scan's cost).
INLINE_TEXT_CHARS = 50_000
# Used to estimate a cloud call's cost when max_tokens is unset.
ASSUMED_COMPLETION_TOKENS = 256


def request_texts(request: GenerationRequest) -> list[str]:
    """The conversation's text, one entry per message (or the prompt): what the complexity score reads.

    The privacy scan reads more: `outgoing_texts` (names, stop sequences, the response format too).
    """
    if request.messages is not None:
        return [message.content for message in request.messages]
    return [request.prompt] if isinstance(request.prompt, str) else []


@dataclass(frozen=True)
class Plan:
    """A decision with everything measured to reach it (for explain) and what running it needs."""

    decision: Decision
    facts: RequestFacts
    signals: Signals
    local: Engine | None
    local_error: PensieveError | None
    chat: bool
    redactor: PrivacyScanner | None
    # Judges a cascaded answer's confidence (shared by every plan: it keeps the recent answers for the share).
    confidence_gate: ConfidenceGate
    # The first tokens of a local answer whose log-probabilities are measured: its confidence.
    confidence_tokens: int
    # The budget held for this request's cloud runs (None: it does not start in the cloud or on a cascade).
    reservation: Reservation | None = None
    # Holds the budget for a fallback to the cloud if the caps still allow one at that moment, else None
    # (the default, for plans made without a planner, holds nothing and always allows).
    reserve_fallback: Callable[[], Reservation | None] = field(default=lambda: Reservations().reserve(0.0), repr=False)

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
                "choices": facts.choices,
                "stream": facts.stream,
                "complexity_score": facts.complexity_score,
                "private_data": dict(facts.private_kinds),
                "cloud_trusted": facts.cloud_trusted,
            },
            "signals": self.signals.__dict__,
            # How an answer would be judged if it cascades: the gate's current threshold and realised share.
            "confidence": {**self.confidence_gate.snapshot(), "judged_tokens": self.confidence_tokens}
            if self.decision.cascade
            else None,
        }

    @property
    def refused(self) -> bool:
        """True when no side may run the request."""
        return self.decision.route is None

    def refusal(self) -> PensieveError:
        """The client-facing error that explains a refused plan."""
        decision, facts, signals = self.decision, self.facts, self.signals
        if decision.error_code == "private_data_blocked":
            return PrivateDataBlockedError(decision.detail)
        if decision.error_code == "context_length_exceeded" and facts.prompt_tokens is not None:
            return ContextLengthExceededError.for_request(
                n_ctx=signals.local_context_length or 0,
                prompt_tokens=facts.prompt_tokens,
                requested=facts.max_tokens or None,
                chat=self.chat,
                note=_why_not_cloud(decision, signals),
            )
        if decision.error_code == "context_length_exceeded":
            return ContextLengthExceededError(decision.detail, param="messages" if self.chat else "prompt")
        if self.local_error is not None:
            return self.local_error
        return ServiceUnavailableError(decision.detail)


def _why_not_cloud(decision: Decision, signals: Signals) -> str:
    """Why a request the local model cannot take did not go to the cloud ("" when no cloud exists)."""
    if not signals.cloud_configured:
        return ""
    blocker = next((v for v in decision.verdicts if v.vote == "no_cloud"), None)
    if blocker is not None:
        return f"It could not go to the cloud instead: {blocker.detail}."
    return "Sending it to the cloud instead is switched off (PENSIEVE_BURST_CONTEXT=false)."


def estimated_wait_ms(engine: Engine | None) -> float:
    """How long a new request would wait on `engine` before it starts (0 while a sequence is free)."""
    return engine.stats().estimated_wait_seconds * 1000 if engine is not None else 0.0


class RoutePlanner:
    """Decides local or cloud for every request, with the reasons; never runs anything."""

    def __init__(self, options: BurstOptions, pool: ModelPool, cloud: CloudRegistry, ledger: SpendLedger) -> None:
        self.options = options
        self.pool = pool
        self.cloud = cloud
        self.ledger = ledger
        self.reservations = Reservations()
        self.confidence_gate = ConfidenceGate(options.confidence)

    def reconfigure(self, options: BurstOptions) -> None:
        """Use new options from the next plan on (one assignment: a plan sees old or new, never both)."""
        self.options = options
        self.confidence_gate.reconfigure(options.confidence)

    # --- model ids --------------------------------------------------------------------------------

    def _pin(self, model: str, header: RouteHeader | None) -> tuple[Pin | None, str | None, str | None]:
        """(pin, local model, cloud model) for the requested model id and route header."""
        model = model.strip()
        cloud_id = self.cloud.resolve(model) if model.lower() != AUTO_MODEL else None
        is_auto = model.lower() in (AUTO_MODEL, "")
        local_id = None if is_auto or cloud_id else normalise_model_id(model)
        local = local_id or normalise_model_id(self.options.default_model)
        cloud = cloud_id or self.cloud.default_model_id
        if header == "local":
            return "header_local", local, cloud
        if header == "cloud":
            return "header_cloud", local, cloud
        if header == "auto" or is_auto:
            return None, local, cloud
        return ("model_cloud" if cloud_id else "model_local"), local, cloud

    def _cloud_target(self, model: str, cloud_model: str | None, private: bool) -> str | None:
        """The cloud model a request may use: the trusted tier's for a private request naming no cloud model.

        A request that names a cloud model keeps it: a public one is then blocked (or masked) by the policy,
        exactly as without a trusted tier, and a trusted one is simply allowed.
        """
        model = model.strip()
        named = model.lower() != AUTO_MODEL and self.cloud.resolve(model) is not None
        trusted = self.cloud.trusted_model_id
        if private and trusted is not None and not named:
            return trusted
        return cloud_model

    # --- signals ----------------------------------------------------------------------------------

    async def _local(self, model: str | None, pin: Pin | None) -> tuple[Engine | None, PensieveError | None]:
        if model is None:
            return None, ServiceUnavailableError("No local model is configured.")
        try:
            return await self.pool.get(model), None
        except ModelNotFoundError as exc:
            if pin in ("model_local", "header_local") and model != normalise_model_id(self.options.default_model):
                raise  # the client named a model that does not exist: 404, not a burst
            return None, exc
        except PensieveError as exc:
            return None, exc

    def _signals(
        self, local: Engine | None, local_error: PensieveError | None, facts: RequestFacts, prompt_tokens: int
    ) -> Signals:
        cloud_model = facts.cloud_model
        breaker = self.cloud.breaker(cloud_model) if cloud_model else None
        estimated = 0.0
        if cloud_model:
            completion = facts.max_tokens or ASSUMED_COMPLETION_TOKENS
            # Every choice is its own cloud call, billed for the prompt and its completion.
            one = self.cloud.model(cloud_model).cost_usd(prompt_tokens, completion)
            estimated = one * max(1, facts.choices)
        return Signals(
            local_available=local is not None,
            local_unavailable_reason=local_error.message if local_error else None,
            local_context_length=local.context_length if local else None,
            local_wait_ms=estimated_wait_ms(local),
            cloud_configured=self.cloud.configured,
            circuit_allows=breaker.would_allow() if breaker else False,
            circuit_state=breaker.state if breaker else "none",
            spent_today_usd=self.ledger.spent_today(),
            spent_month_usd=self.ledger.spent_this_month(),
            daily_cap_usd=self.options.daily_cap_usd,
            monthly_cap_usd=self.options.monthly_cap_usd,
            estimated_cost_usd=estimated,
            reserved_usd=self.reservations.total_usd,
        )

    def _read_texts(
        self, options: BurstOptions, request: GenerationRequest, prompt_tokens: int | None
    ) -> tuple[Sequence[Finding], ComplexityScore]:
        """The private-data findings in everything the cloud would get (none when privacy is off), the complexity."""
        findings = options.scanner.scan(outgoing_texts(request)) if options.policy.privacy_mode != "off" else ()
        text = "\n".join(request_texts(request))
        return findings, score_complexity(text, options.weights, prompt_tokens=prompt_tokens)

    def _try_reserve(self, options: BurstOptions, estimated_usd: float) -> Reservation | None:
        """Hold `estimated_usd` unless a cap is already reached by spend plus what is in flight (then None)."""
        if options.policy.budget:
            committed = self.reservations.total_usd
            caps = (
                (options.daily_cap_usd, self.ledger.spent_today()),
                (options.monthly_cap_usd, self.ledger.spent_this_month()),
            )
            if any(cap is not None and spent + committed >= cap for cap, spent in caps):
                return None
        return self.reservations.reserve(estimated_usd)

    async def plan(
        self,
        request: GenerationRequest,
        *,
        stream: bool,
        header: RouteHeader | None,
        choices: int = 1,
        reserve: bool = False,
        session_private: tuple[str, ...] = (),
        file_private: tuple[str, ...] = (),
    ) -> Plan:
        """Measure the request and the state of both sides, then decide (no generation happens).

        `choices` is how many cloud calls the request makes (n, times the prompts of a batch) for the cost
        estimate. With `reserve`, a plan that starts in the cloud (or may cascade to it) holds that estimate
        against the caps until the runner settles it; `explain` plans without reserving. `session_private`
        names the private data an earlier turn of the request's session held: such a session stays local.
        `file_private`: the kinds of private data the request's attached files hold (their upload verdict),
        counted as if found in the prompt.
        """
        options = self.options  # one configuration for the whole plan, even if settings change meanwhile
        pin, local_model, cloud_model = self._pin(request.model, header)
        if pin in ("header_cloud", "model_cloud") and cloud_model is None:
            raise InvalidRequestError(
                "This request asks for a cloud model, but no cloud provider is configured "
                "(set PENSIEVE_CLOUD_BASE_URL and PENSIEVE_CLOUD_MODEL).",
                param="model",
                code="cloud_not_configured",
            )
        local, local_error = await self._local(local_model, pin)
        prompt_tokens = await local.count_prompt_tokens(request) if local else None
        texts = outgoing_texts(request)
        measure = partial(self._read_texts, options, request, prompt_tokens)
        # A long text (up to the 8 MB body limit) would hold the event loop, and so every running stream,
        # for up to seconds: it is scanned and scored in a thread.
        off_loop = sum(len(text) for text in texts) > INLINE_TEXT_CHARS
        findings, complexity = await asyncio.to_thread(measure) if off_loop else measure()
        kinds: dict[str, int] = {}
        for kind in (*(finding.kind for finding in findings), *file_private):
            kinds[kind] = kinds.get(kind, 0) + 1
        # Chosen before the signals are read: a private request's circuit and cost are the trusted provider's.
        private = bool(session_private) or (bool(kinds) and options.policy.privacy_mode != "off")
        cloud_model = self._cloud_target(request.model, cloud_model, private)
        if request.params.grammar is not None and pin not in ("header_cloud", "model_cloud"):
            cloud_model = None  # only llama.cpp enforces GBNF: unpinned, it stays local (pinned, the cloud refuses it)
        cloud_trusted = cloud_model is not None and self.cloud.is_trusted(cloud_model)
        facts = RequestFacts(
            pin=pin,
            local_model=local_model,
            cloud_model=cloud_model,
            prompt_tokens=prompt_tokens,
            max_tokens=request.params.max_tokens or 0,
            choices=choices,
            stream=stream,
            complexity_score=complexity.score,
            complexity_detail=complexity.explain(),
            private_kinds=kinds,
            session_private=session_private,
            cloud_trusted=cloud_trusted,
        )
        # Without a local tokenizer to count with, the cloud's estimate: the budget must still see the prompt.
        billed_prompt = prompt_tokens if prompt_tokens is not None else sum(estimate_tokens(t) + 4 for t in texts) + 3
        signals = self._signals(local, local_error, facts, billed_prompt)
        # No await from here to the reservation: no other plan can run in between and miss this one's cost.
        decision = decide(options.policy, facts, signals)
        reservation = None
        if reserve and (decision.route == "cloud" or decision.cascade):
            reservation = self.reservations.reserve(signals.estimated_cost_usd)
        return Plan(
            decision,
            facts,
            signals,
            local,
            local_error,
            chat=request.messages is not None,
            # The trusted tier gets the text unmasked; a public provider gets it masked in mode `redact`.
            redactor=None if cloud_trusted else options.redactor,
            confidence_gate=self.confidence_gate,
            confidence_tokens=options.hold_tokens,
            reservation=reservation,
            reserve_fallback=partial(self._try_reserve, options, signals.estimated_cost_usd),
        )
