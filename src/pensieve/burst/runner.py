"""The route runner: carries out one Plan — run on the chosen side, fall back, cascade — and accounts for it.

Fallback happens only while nothing has been streamed to the client; after the first chunk an error
ends the stream (the SSE layer sends an error event). `info` always says where the request is running,
so the serving layer can put it in the response headers once the first chunk (or the whole answer) exists.

The runner gets what it needs and nothing more: the plan, a source of local engines (the model pool), a
source of cloud engines (the cloud registry) and the recorder. Both sources are protocols, so the
fallback and cascade logic can be exercised with scripted engines.

Money: a cloud run cut after it streamed text (client gone, timeout, dropped connection) was billed for
its prompt and what it sent, so that is recorded too (estimated: the provider's usage report comes last).
The plan's budget reservation is consumed run by run and the rest released by `settle()` when the request
ends; a fallback to the cloud first reserves its own estimate, and does not happen if the caps are reached.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import replace
from typing import Protocol

from pensieve.burst.accounting import RouteInfo, RunRecorder, Timing
from pensieve.burst.confidence import answer_confidence
from pensieve.burst.outgoing import outgoing_texts, with_texts
from pensieve.burst.planner import Plan
from pensieve.burst.policy import Route, tier_of
from pensieve.cloud.engine import estimate_tokens
from pensieve.engine_api import Engine, GenerationChunk, GenerationRequest, Usage
from pensieve.errors import CloudError, InvalidRequestError, NotFoundError, PensieveError
from pensieve.privacy.redact import redact_texts
from pensieve.privacy.scanner import PrivacyScanner


class LocalEngines(Protocol):
    """Where the runner gets a local engine for a fallback (the model pool)."""

    async def get(self, model_id: str) -> Engine:
        """The loaded engine for `model_id`, loading it if needed."""
        ...


class CloudEngines(Protocol):
    """Where the runner gets a cloud engine (the cloud registry)."""

    def engine(self, model_id: str) -> Engine:
        """The engine for a cloud model id (`provider/model`)."""
        ...


def may_fall_back(route: Route, error: PensieveError) -> bool:
    """Local failures of the server's own making, and retryable cloud failures, may try the other side."""
    if route == "cloud":
        return isinstance(error, CloudError) and error.retryable
    return not isinstance(error, InvalidRequestError | NotFoundError)


def redacted(request: GenerationRequest, redactor: PrivacyScanner) -> GenerationRequest:
    """The request with every private finding masked in everything the cloud gets (privacy mode `redact`)."""
    texts = outgoing_texts(request)
    findings = redactor.scan(texts)
    return with_texts(request, redact_texts(texts, findings)) if findings else request


class RouteRunner:
    """Runs the generations of one planned request where the plan says, with fallback and cascade."""

    def __init__(self, plan: Plan, *, local: LocalEngines, cloud: CloudEngines, recorder: RunRecorder) -> None:
        decision = plan.decision
        if decision.route is None or decision.model is None:
            raise ValueError("a refused plan cannot run")
        self.plan = plan
        self.info = RouteInfo(decision.route, decision.reason, decision.model, tier=decision.tier or "")
        self._local = plan.local
        self._local_sources = local
        self._cloud_sources = cloud
        self._recorder = recorder
        self._reservation = plan.reservation
        self._billed: Usage | None = None  # what the last cut cloud run was billed, for the error record
        self._escalated = False  # a cascade judged the local answer unsure and asked the cloud
        # What the finished (or abandoned) runs of this request used and cost, for a session's turn record.
        self.usage: Usage | None = None
        self.cost_usd = 0.0

    def settle(self) -> None:
        """The request is over: release what its budget reservation still holds (call once all choices ended)."""
        if self._reservation is not None:
            self._reservation.release()

    def _may_use_cloud(self) -> bool:
        """Whether a fallback to the cloud may go ahead: it holds budget already, or the caps still allow it."""
        if self._reservation is None:
            self._reservation = self.plan.reserve_fallback()
        return self._reservation is not None

    @property
    def local_model(self) -> str | None:
        """The local model the request runs on, or None when it runs in the cloud."""
        return self.info.model if self.info.route == "local" else None

    async def _engine(self, route: Route) -> tuple[Engine, str]:
        facts = self.plan.facts
        if route == "cloud":
            assert facts.cloud_model is not None  # the policy never picks the cloud without a cloud model
            return self._cloud_sources.engine(facts.cloud_model), facts.cloud_model
        assert facts.local_model is not None
        if self._local is None:
            self._local = await self._local_sources.get(facts.local_model)
        return self._local, self._local.model_id

    def _prepared(self, route: Route, request: GenerationRequest, model: str) -> GenerationRequest:
        """The request as the chosen side gets it: its own model id; for the cloud, redacted if configured."""
        if route == "local":
            return replace(request, model=model, confidence_tokens=self.plan.confidence_tokens)
        request = replace(request, model=model.split("/", 1)[1])
        return redacted(request, self.plan.redactor) if self.plan.redactor is not None else request

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the answer from the planned side, falling back before the first chunk if it fails."""
        started = time.perf_counter()
        route = self.info.route
        yielded = False
        try:
            run = self._cascade(request, started) if self.plan.decision.cascade else self._run(route, request, started)
            async with aclosing(run) as chunks:
                async for chunk in chunks:
                    yielded = True
                    yield chunk
            return
        except PensieveError as error:
            fallback = self.plan.decision.fallback
            # A cascade that moved to the cloud has used its one fallback (back to local) already.
            if self._escalated or yielded or fallback is None or not may_fall_back(route, error):
                self._failed(error, started)
                raise
            if fallback == "cloud" and not self._may_use_cloud():
                self._failed(error, started)  # the caps were reached since the plan: no paid retry
                raise
        reason = "local_failure" if fallback == "cloud" else "cloud_failure"
        self.info = RouteInfo(fallback, reason, self.info.model, fallback=True)
        try:
            async for chunk in self._run(fallback, request, started):
                yield chunk
        except PensieveError as error:
            self._failed(error, started)
            raise

    async def _run(self, route: Route, request: GenerationRequest, started: float) -> AsyncGenerator[GenerationChunk]:
        engine, model = await self._engine(route)
        self.info.model = model
        # Every run (first, fallback, cascade) passes here: the tier follows the side that really runs.
        self.info.tier = tier_of(route, self.plan.facts.cloud_trusted) or ""
        prepared = self._prepared(route, request, model)
        # Counted before the call: a cut stream's record must not wait on anything once cancelled.
        prompt_tokens = await engine.count_prompt_tokens(prepared) if route == "cloud" else 0
        first_token: float | None = None
        received: list[str] = []
        measured: list[float] = []
        finished = errored = False
        try:
            async with aclosing(engine.generate(prepared)) as chunks:
                async for chunk in chunks:
                    if first_token is None:
                        first_token = time.perf_counter()
                    received.append(chunk.text)
                    measured.extend(chunk.confidence_logprobs)
                    if chunk.finish_reason is not None:
                        finished = True
                        if route == "local":
                            self.info.confidence = answer_confidence(measured)
                        timing = Timing(started, first_token, time.perf_counter())
                        self.usage = chunk.usage or Usage(0, 0)
                        self.cost_usd += self._recorder.finished(
                            self.info, self.usage, timing, stream=self.plan.facts.stream, reservation=self._reservation
                        )
                    yield chunk
        except PensieveError:
            errored = True
            if route == "cloud" and any(received):
                self._billed = Usage(prompt_tokens, estimate_tokens("".join(received)))
            raise
        finally:
            if route == "cloud" and not (finished or errored) and any(received):
                # The client left (the task was cancelled or the generator closed) after the provider
                # started sending: it billed the prompt and what it sent.
                billed = Usage(prompt_tokens, estimate_tokens("".join(received)))
                timing = Timing(started, first_token, time.perf_counter())
                self.usage = billed
                self.cost_usd += self._recorder.abandoned(
                    self.info, billed, timing, stream=self.plan.facts.stream, reservation=self._reservation
                )

    async def _cascade(self, request: GenerationRequest, started: float) -> AsyncGenerator[GenerationChunk]:
        """Answer locally, holding back the first tokens until they are judged; an unsure start asks the cloud.

        The same for streamed and whole answers (so both decide alike): nothing reaches the client before
        the verdict. A confident answer goes on streaming from the local model; an unsure one is dropped
        and the cloud answers. If the cloud then fails before sending anything, the local model answers
        after all (its prompt is cached, so the re-run starts at once).
        """
        hold, gate = self.plan.confidence_tokens, self.plan.confidence_gate
        held: list[GenerationChunk] = []
        measured: list[float] = []
        async with aclosing(self._run("local", request, started)) as local:
            async for chunk in local:
                held.append(chunk)
                measured.extend(chunk.confidence_logprobs)
                if chunk.finish_reason is not None or len(measured) >= hold:
                    break
                # The signal only falls as tokens come: a start already below the threshold is unsure for
                # good, so the cloud is asked at once (the verdict is the one the whole hold would give).
                if measured and min(measured) < gate.threshold():
                    break
            confidence = answer_confidence(measured[:hold])
            self.info.confidence = confidence
            if not gate.judge(confidence):
                for chunk in held:
                    yield chunk
                async for chunk in local:
                    yield chunk
                return
        self._escalated = True
        self.info = RouteInfo("cloud", "confidence", self.info.model, confidence=confidence)
        yielded = False
        try:
            async for chunk in self._run("cloud", request, time.perf_counter()):
                yielded = True
                yield chunk
            return
        except CloudError as error:
            if yielded or not error.retryable:
                raise
        local_model = self._local.model_id if self._local else (self.plan.facts.local_model or "")
        self.info = RouteInfo("local", "cloud_failure", local_model, fallback=True)
        async for chunk in self._run("local", request, started):
            yield chunk

    def _failed(self, error: PensieveError, started: float) -> None:
        timing = Timing(started, None, time.perf_counter())
        billed, self._billed = self._billed, None
        self._recorder.failed(
            self.info, error, timing, stream=self.plan.facts.stream, billed=billed, reservation=self._reservation
        )
