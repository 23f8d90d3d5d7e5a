"""The route runner's fallback, cascade, redaction and accounting, driven by two scripted engines.

Pure units: the engines replay scripted chunks or fail at a scripted point, so every branch of the runner
(fall back before the first chunk, never after; which errors may fall back; the confidence cascade; what
the cloud sees in redact mode; what the recorder writes) is checked without a model or a network. The live
tests (tests/integration/test_burst_live.py) cover the same paths end to end with the real model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field, replace

import pytest

from pensieve.burst.accounting import RunRecorder
from pensieve.burst.budget import Reservations
from pensieve.burst.confidence import ConfidenceGate, GateConfig
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.planner import Plan
from pensieve.burst.policy import Decision, RequestFacts, Route, Signals
from pensieve.burst.runner import RouteRunner
from pensieve.burst.stats import DecisionLog
from pensieve.cloud.providers import CloudModel, ProviderConfig
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine_api import (
    ChatMessage,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    SamplingParams,
    Usage,
)
from pensieve.errors import (
    CloudError,
    ContextLengthExceededError,
    EngineError,
    PensieveError,
    WorkerCrashedError,
)
from pensieve.observability import Metrics
from pensieve.privacy.scanner import PrivacyConfig, PrivacyScanner

LOCAL, CLOUD = "gemma-local", "acme/big-model"
EMAIL = "jane.doe@example.com"


@dataclass
class ScriptedEngine:
    """An Engine that streams `texts` (then a final chunk), or raises `error` after `fail_after` chunks."""

    model_id: str
    texts: tuple[str, ...] = ("Hello", " world")
    error: PensieveError | None = None
    fail_after: int = 0
    token_logprob: float = -0.1  # each text chunk counts as one token of this log-probability
    seen: list[GenerationRequest] = field(default_factory=list)
    produced: int = 0  # chunks handed out so far (a closed run stops producing)
    context_length: int = 4096

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Scripted engines do not tokenize."""
        return 7

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Replay the script."""
        self.seen.append(request)
        for index, text in enumerate(self.texts):
            if self.error is not None and index == self.fail_after:
                raise self.error
            self.produced += 1
            measured = (self.token_logprob,) if index < request.confidence_tokens else ()
            yield GenerationChunk(text, confidence_logprobs=measured)
        if self.error is not None:
            raise self.error
        yield GenerationChunk("", finish_reason="stop", usage=Usage(7, len(self.texts)))

    def stats(self) -> EngineStats:
        """No load."""
        return EngineStats(model=self.model_id)

    async def close(self) -> None:
        """Nothing to free."""


@dataclass
class Sources:
    """The pool and the cloud registry as the runner sees them: one scripted engine each."""

    local: ScriptedEngine
    cloud: ScriptedEngine
    local_loads: int = 0

    async def get(self, model_id: str) -> ScriptedEngine:
        """The local engine (counted: the runner loads it only when it needs it)."""
        assert model_id == LOCAL
        self.local_loads += 1
        return self.local

    def engine(self, model_id: str) -> ScriptedEngine:
        """The cloud engine."""
        assert model_id == CLOUD
        return self.cloud


def _recorder() -> RunRecorder:
    """A real recorder over an in-memory ledger, priced by a real (never called) cloud registry."""
    provider = ProviderConfig(
        name="acme",
        base_url="http://127.0.0.1:9/v1",
        api_key=None,
        models=(CloudModel("big-model", price_input=1.0, price_output=2.0),),
    )
    registry = CloudRegistry([provider], circuit_failures=3, circuit_cooldown=30)
    return RunRecorder(SpendLedger(None), DecisionLog(), Metrics(), registry)


def _plan(
    route: Route,
    *,
    fallback: Route | None,
    cascade: bool = False,
    redactor: PrivacyScanner | None = None,
    local: ScriptedEngine | None = None,
    reason: str = "default",
    gate: ConfidenceGate | None = None,
    hold: int = 2,
) -> Plan:
    decision = Decision(
        route=route,
        reason=reason,
        model=LOCAL if route == "local" else CLOUD,
        fallback=fallback,
        redact=redactor is not None,
        cascade=cascade,
        verdicts=(),
    )
    facts = RequestFacts(pin=None, local_model=LOCAL, cloud_model=CLOUD, prompt_tokens=7, max_tokens=16, stream=True)
    signals = Signals(True, None, 4096, 0.0, True, True, "closed", 0.0, 0.0, None, None, 0.0)
    gate = gate or ConfidenceGate(GateConfig(threshold=-1.0))
    return Plan(decision, facts, signals, local, None, True, redactor, confidence_gate=gate, confidence_tokens=hold)


def _request(text: str = "Say hello.") -> GenerationRequest:
    return GenerationRequest(model="auto", params=SamplingParams(max_tokens=16), messages=(ChatMessage("user", text),))


def _run(runner: RouteRunner, request: GenerationRequest | None = None) -> str:
    async def collect() -> str:
        return "".join([chunk.text async for chunk in runner.generate(request or _request())])

    return asyncio.run(collect())


def _routes(recorder: RunRecorder) -> list[tuple[str, str, bool]]:
    return [(entry.route, entry.reason, entry.fallback) for entry in recorder.log.recent]


def test_local_answer_is_recorded_with_what_the_cloud_would_have_cost() -> None:
    sources, recorder = Sources(ScriptedEngine(LOCAL), ScriptedEngine(CLOUD)), _recorder()
    runner = RouteRunner(
        _plan("local", fallback="cloud", local=sources.local), local=sources, cloud=sources, recorder=recorder
    )
    assert _run(runner) == "Hello world"
    assert (runner.info.route, runner.info.reason, runner.info.fallback) == ("local", "default", False)
    assert sources.cloud.seen == [] and sources.local_loads == 0  # the plan's engine was used, nothing loaded
    assert sources.local.seen[0].model == LOCAL
    assert _routes(recorder) == [("local", "default", False)]
    totals = recorder.ledger.totals()
    assert totals.local_requests == 1 and totals.cloud_requests == 0
    assert totals.saved_all_time_usd == pytest.approx((7 * 1.0 + 2 * 2.0) / 1_000_000)


def test_a_local_failure_before_the_first_chunk_falls_back_to_the_cloud() -> None:
    local = ScriptedEngine(LOCAL, error=WorkerCrashedError("worker died"), fail_after=0)
    sources, recorder = Sources(local, ScriptedEngine(CLOUD, texts=("From", " cloud"))), _recorder()
    runner = RouteRunner(_plan("local", fallback="cloud", local=local), local=sources, cloud=sources, recorder=recorder)
    assert _run(runner) == "From cloud"
    assert (runner.info.route, runner.info.reason, runner.info.fallback) == ("cloud", "local_failure", True)
    assert runner.info.model == CLOUD
    assert sources.cloud.seen[0].model == "big-model"  # the provider's own id, without the provider prefix
    assert _routes(recorder) == [("cloud", "local_failure", True)]
    assert recorder.ledger.totals().all_time_usd == pytest.approx((7 * 1.0 + 2 * 2.0) / 1_000_000)


def test_a_failure_after_the_first_chunk_ends_the_run_without_fallback() -> None:
    local = ScriptedEngine(LOCAL, error=EngineError("decode failed"), fail_after=1)
    sources, recorder = Sources(local, ScriptedEngine(CLOUD)), _recorder()
    runner = RouteRunner(_plan("local", fallback="cloud", local=local), local=sources, cloud=sources, recorder=recorder)
    with pytest.raises(EngineError):
        _run(runner)
    assert sources.cloud.seen == []
    assert _routes(recorder) == [("error", "default", False)]
    assert recorder.log.recent[0].error == "engine_error"


def test_a_client_error_never_falls_back() -> None:
    error = ContextLengthExceededError("too long", param="messages")
    local = ScriptedEngine(LOCAL, error=error, fail_after=0)
    sources, recorder = Sources(local, ScriptedEngine(CLOUD)), _recorder()
    runner = RouteRunner(_plan("local", fallback="cloud", local=local), local=sources, cloud=sources, recorder=recorder)
    with pytest.raises(ContextLengthExceededError):
        _run(runner)
    assert sources.cloud.seen == []
    assert [entry.route for entry in recorder.log.recent] == ["error"]


def test_a_plan_without_fallback_reports_the_first_error() -> None:
    local = ScriptedEngine(LOCAL, error=WorkerCrashedError("worker died"), fail_after=0)
    sources, recorder = Sources(local, ScriptedEngine(CLOUD)), _recorder()
    runner = RouteRunner(_plan("local", fallback=None, local=local), local=sources, cloud=sources, recorder=recorder)
    with pytest.raises(WorkerCrashedError):
        _run(runner)
    assert sources.cloud.seen == []


def test_a_retryable_cloud_failure_falls_back_to_a_local_model_loaded_on_demand() -> None:
    cloud = ScriptedEngine(CLOUD, error=CloudError("503 from provider", provider="acme"), fail_after=0)
    sources, recorder = Sources(ScriptedEngine(LOCAL, texts=("Local",)), cloud), _recorder()
    runner = RouteRunner(_plan("cloud", fallback="local"), local=sources, cloud=sources, recorder=recorder)
    assert _run(runner) == "Local"
    assert (runner.info.route, runner.info.reason, runner.info.model) == ("local", "cloud_failure", LOCAL)
    assert sources.local_loads == 1
    assert _routes(recorder) == [("local", "cloud_failure", True)]
    assert recorder.ledger.totals().all_time_usd == 0.0


def test_a_non_retryable_cloud_failure_is_the_clients_answer() -> None:
    error = CloudError("400: bad parameter", provider="acme", retryable=False, status_code=400)
    sources, recorder = Sources(ScriptedEngine(LOCAL), ScriptedEngine(CLOUD, error=error)), _recorder()
    runner = RouteRunner(_plan("cloud", fallback="local"), local=sources, cloud=sources, recorder=recorder)
    with pytest.raises(CloudError):
        _run(runner)
    assert sources.local_loads == 0 and sources.local.seen == []
    assert _routes(recorder) == [("error", "default", False)]


def _cascade(local: ScriptedEngine, cloud: ScriptedEngine, **plan: object) -> tuple[RouteRunner, Sources]:
    sources = Sources(local, cloud)
    runner = RouteRunner(
        _plan("local", fallback="cloud", cascade=True, local=local, **plan),  # type: ignore[arg-type]
        local=sources,
        cloud=sources,
        recorder=_recorder(),
    )
    return runner, sources


def test_every_local_answer_reports_how_sure_it_was() -> None:
    local = ScriptedEngine(LOCAL, token_logprob=-0.5)
    sources, recorder = Sources(local, ScriptedEngine(CLOUD)), _recorder()
    runner = RouteRunner(
        _plan("local", fallback="cloud", local=local, hold=2), local=sources, cloud=sources, recorder=recorder
    )
    assert _run(runner) == "Hello world"
    assert local.seen[0].confidence_tokens == 2 and not local.seen[0].params.logprobs
    assert runner.info.confidence == -0.5
    assert runner.info.headers()["x-pensieve-confidence"] == "0.6065"
    assert recorder.log.recent[0].confidence == pytest.approx(0.6065)


def test_cascade_keeps_a_confident_local_answer() -> None:
    local = ScriptedEngine(LOCAL, texts=("One", " two", " three", " four"), token_logprob=-0.2)
    runner, sources = _cascade(local, ScriptedEngine(CLOUD))
    assert _run(runner) == "One two three four"
    assert sources.cloud.seen == []
    assert (runner.info.route, runner.info.confidence) == ("local", -0.2)
    assert _routes(runner._recorder) == [("local", "default", False)]  # type: ignore[arg-type]


def test_cascade_holds_the_first_tokens_back_until_they_are_judged() -> None:
    local = ScriptedEngine(LOCAL, texts=("One", " two", " three", " four"), token_logprob=-0.2)
    runner, _ = _cascade(local, ScriptedEngine(CLOUD), hold=3)

    async def first_chunk() -> tuple[str, int]:
        chunks = runner.generate(_request())
        first = await anext(chunks)
        await chunks.aclose()
        return first.text, local.produced

    assert asyncio.run(first_chunk()) == ("One", 3)  # three tokens were made before the first left


def test_cascade_asks_the_cloud_when_the_local_start_is_unsure() -> None:
    local = ScriptedEngine(LOCAL, texts=("One", " two", " three", " four", " five"), token_logprob=-3.0)
    runner, sources = _cascade(local, ScriptedEngine(CLOUD, texts=("Sure",)), hold=2)
    assert _run(runner) == "Sure"
    assert (runner.info.route, runner.info.reason, runner.info.confidence) == ("cloud", "confidence", -3.0)
    assert local.produced == 1  # unsure from its first token on: stopped there, not held to 2 nor finished
    assert sources.cloud.seen[0].confidence_tokens == 0  # the client's own request goes to the cloud
    recorder = runner._recorder
    assert _routes(recorder) == [("cloud", "confidence", False)]  # type: ignore[arg-type]
    assert recorder.log.recent[0].confidence == pytest.approx(0.0498, abs=1e-4)


def test_cascade_answers_locally_when_the_cloud_fails_before_sending_anything() -> None:
    local = ScriptedEngine(LOCAL, token_logprob=-3.0)
    cloud = ScriptedEngine(CLOUD, error=CloudError("timeout", provider="acme"))
    runner, _ = _cascade(local, cloud)
    assert _run(runner) == "Hello world"
    assert (runner.info.route, runner.info.reason, runner.info.fallback) == ("local", "cloud_failure", True)
    assert len(local.seen) == 2  # judged, dropped, then run again to the end


def test_cascade_does_not_retry_a_cloud_that_refused_the_request() -> None:
    local = ScriptedEngine(LOCAL, token_logprob=-3.0)
    cloud = ScriptedEngine(CLOUD, error=CloudError("400: bad", provider="acme", retryable=False, status_code=400))
    runner, _ = _cascade(local, cloud)
    with pytest.raises(CloudError):
        _run(runner)
    assert len(local.seen) == 1 and len(cloud.seen) == 1
    assert _routes(runner._recorder) == [("error", "confidence", False)]  # type: ignore[arg-type]


def test_cascade_share_follows_the_gate() -> None:
    gate = ConfidenceGate(GateConfig(threshold=-1.0, target_share=0.5, window=40))
    answers = []
    for index in range(200):
        local = ScriptedEngine(LOCAL, texts=("A",), token_logprob=-0.05 * (index % 20))
        runner, _ = _cascade(local, ScriptedEngine(CLOUD, texts=("B",)), gate=gate)
        answers.append((index % 20, _run(runner)))
    last = answers[-40:]
    assert abs(sum(answer == "B" for _, answer in last) / 40 - 0.5) <= 0.05
    # The least sure half went to the cloud: the escalated answers are the lowest ones.
    assert max(rank for rank, answer in last if answer == "A") <= min(rank for rank, answer in last if answer == "B")


def test_redact_mode_masks_private_data_for_the_cloud_only() -> None:
    scanner = PrivacyScanner(PrivacyConfig())
    local = ScriptedEngine(LOCAL, error=WorkerCrashedError("worker died"))
    sources, recorder = Sources(local, ScriptedEngine(CLOUD)), _recorder()
    plan = _plan("local", fallback="cloud", redactor=scanner, local=local)
    runner = RouteRunner(plan, local=sources, cloud=sources, recorder=recorder)
    _run(runner, _request(f"Write to {EMAIL} about the invoice."))
    assert local.seen[0].messages is not None and EMAIL in local.seen[0].messages[0].content
    cloud_text = sources.cloud.seen[0].messages[0].content  # type: ignore[index]
    assert EMAIL not in cloud_text and "the invoice" in cloud_text


def test_a_refused_plan_cannot_run_and_is_recorded_as_refused() -> None:
    sources, recorder = Sources(ScriptedEngine(LOCAL), ScriptedEngine(CLOUD)), _recorder()
    plan = _plan("local", fallback=None)
    refused = Plan(
        Decision(None, "privacy", None, None, False, False, (), "private_data_blocked", "private data"),
        plan.facts,
        plan.signals,
        None,
        None,
        True,
        None,
        ConfidenceGate(GateConfig()),
        2,
    )
    with pytest.raises(ValueError, match="refused"):
        RouteRunner(refused, local=sources, cloud=sources, recorder=recorder)
    recorder.refused(refused)
    entry = recorder.log.recent[0]
    assert (entry.route, entry.reason, entry.error, entry.prompt_tokens) == (
        "refused",
        "privacy",
        "private_data_blocked",
        7,
    )
    assert refused.refusal().code == "private_data_blocked"


# --- money: cut cloud streams are billed, the budget reservation is consumed and released ------------------


def test_a_cloud_stream_the_client_abandons_records_what_the_provider_billed() -> None:
    sources = Sources(ScriptedEngine(LOCAL), ScriptedEngine(CLOUD, texts=("Hello there", " world", "!")))
    recorder, reservations = _recorder(), Reservations()
    plan = replace(_plan("cloud", fallback=None), reservation=reservations.reserve(1.0))
    runner = RouteRunner(plan, local=sources, cloud=sources, recorder=recorder)

    async def read_one_chunk_then_leave() -> str:
        chunks = runner.generate(_request())
        first = await anext(chunks)
        await chunks.aclose()  # what a client disconnect does to the serving generator
        return first.text

    assert asyncio.run(read_one_chunk_then_leave()) == "Hello there"
    totals = recorder.ledger.totals()
    # The prompt (the engine's count) and the text received (~4 characters per token) were billed.
    assert (totals.cloud_requests, totals.cloud_prompt_tokens, totals.cloud_completion_tokens) == (1, 7, 3)
    cost = (7 * 1.0 + 3 * 2.0) / 1_000_000
    assert totals.all_time_usd == pytest.approx(cost)
    entry = recorder.log.recent[0]
    assert (entry.route, entry.error, entry.usage_source) == ("cloud", "client_disconnected", "estimated")
    assert reservations.total_usd == pytest.approx(1.0 - cost)  # the spend left the reservation
    runner.settle()
    assert reservations.total_usd == 0.0


def test_a_cloud_stream_cut_by_a_dropped_connection_is_billed_and_reported() -> None:
    dropped = CloudError("dropped the connection mid-stream", provider="acme")
    sources = Sources(
        ScriptedEngine(LOCAL), ScriptedEngine(CLOUD, texts=("Hello", " world"), error=dropped, fail_after=1)
    )
    recorder = _recorder()
    runner = RouteRunner(_plan("cloud", fallback="local"), local=sources, cloud=sources, recorder=recorder)
    with pytest.raises(CloudError):
        _run(runner)
    assert sources.local.seen == []  # text was streamed: no fallback
    totals = recorder.ledger.totals()
    assert (totals.cloud_prompt_tokens, totals.cloud_completion_tokens) == (7, 2)
    entry = recorder.log.recent[0]
    assert (entry.route, entry.usage_source) == ("error", "estimated")
    assert entry.cost_usd == pytest.approx(totals.all_time_usd) and entry.cost_usd > 0


def test_a_finished_cloud_run_records_the_reported_usage_and_consumes_its_reservation() -> None:
    sources, recorder, reservations = Sources(ScriptedEngine(LOCAL), ScriptedEngine(CLOUD)), _recorder(), Reservations()
    plan = replace(_plan("cloud", fallback=None), reservation=reservations.reserve(0.5))
    runner = RouteRunner(plan, local=sources, cloud=sources, recorder=recorder)
    assert _run(runner) == "Hello world"
    assert recorder.log.recent[0].usage_source == "reported"
    assert reservations.total_usd == pytest.approx(0.5 - recorder.ledger.totals().all_time_usd)
    runner.settle()
    runner.settle()  # settling twice gives nothing back twice
    assert reservations.total_usd == 0.0


def test_no_fallback_to_the_cloud_once_the_caps_are_reached() -> None:
    local = ScriptedEngine(LOCAL, error=WorkerCrashedError("worker died"), fail_after=0)
    sources, recorder = Sources(local, ScriptedEngine(CLOUD)), _recorder()
    plan = replace(_plan("local", fallback="cloud", local=local), reserve_fallback=lambda: None)
    runner = RouteRunner(plan, local=sources, cloud=sources, recorder=recorder)
    with pytest.raises(WorkerCrashedError):
        _run(runner)
    assert sources.cloud.seen == []
    assert _routes(recorder) == [("error", "default", False)]
