"""An Engine that carries out one routing decision: run on the chosen side, fall back, cascade, record.

Fallback happens only while nothing has been streamed to the client; after the first chunk an error
ends the stream (the SSE layer sends an error event). `info` always says where the request is running,
so the HTTP layer can put it in the response headers once the first chunk (or the whole answer) exists.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pensieve.burst.policy import Decision, Route
from pensieve.burst.stats import DecisionLogEntry, now
from pensieve.engine.base import Engine
from pensieve.engine.types import ChatMessage, EngineStats, GenerationChunk, GenerationRequest, Usage
from pensieve.errors import CloudError, InvalidRequestError, NotFoundError, PensieveError
from pensieve.privacy.redact import redact_texts
from pensieve.privacy.scanner import PrivacyScanner

if TYPE_CHECKING:
    from pensieve.burst.controller import BurstController


@dataclass
class RouteInfo:
    """Where the request runs now and why; becomes the x-pensieve-* response headers."""

    route: Route
    reason: str
    model: str
    fallback: bool = False

    def headers(self) -> dict[str, str]:
        """The x-pensieve-route / -reason / -model headers."""
        return {"x-pensieve-route": self.route, "x-pensieve-reason": self.reason, "x-pensieve-model": self.model}


def _may_fall_back(route: Route, error: PensieveError) -> bool:
    """Local failures of the server's own making, and retryable cloud failures, may try the other side."""
    if route == "cloud":
        return isinstance(error, CloudError) and error.retryable
    return not isinstance(error, InvalidRequestError | NotFoundError)


class RoutedEngine:
    """Runs requests where the decision says, with fallback, redaction, cascade and bookkeeping."""

    def __init__(
        self,
        *,
        controller: BurstController,
        decision: Decision,
        local: Engine | None,
        local_model: str | None,
        cloud_model: str | None,
        stream: bool,
        redactor: PrivacyScanner | None,
        confidence_threshold: float,
    ) -> None:
        assert decision.route is not None and decision.model is not None
        self.controller = controller
        self.decision = decision
        self.info = RouteInfo(decision.route, decision.reason, decision.model)
        self._local = local
        self._local_model = local_model
        self._cloud_model = cloud_model
        self._stream = stream
        self._redactor = redactor
        self._threshold = confidence_threshold

    # --- Engine protocol ----------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The model actually serving (changes on fallback)."""
        return self.info.model

    @property
    def context_length(self) -> int:
        """The serving side's context window."""
        return self._local.context_length if self._local and self.info.route == "local" else 0

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens of the prompt on the local model (0 when none is loaded)."""
        return await self._local.count_prompt_tokens(request) if self._local else 0

    def stats(self) -> EngineStats:
        """Not a pooled engine: no load figures of its own."""
        return EngineStats(model=self.info.model)

    async def close(self) -> None:
        """Nothing to free: the pool and the cloud registry own the engines."""

    # --- running ------------------------------------------------------------------------------------

    async def _engine(self, route: Route) -> tuple[Engine, str]:
        if route == "cloud":
            assert self._cloud_model is not None
            return self.controller.cloud.engine(self._cloud_model), self._cloud_model
        assert self._local_model is not None
        if self._local is None:
            self._local = await self.controller.local_engine(self._local_model)
        return self._local, self._local.model_id

    def _for_cloud(self, request: GenerationRequest) -> GenerationRequest:
        """The request as the cloud may see it: private data masked in redact mode."""
        if self._redactor is None:
            return request
        if request.messages is not None:
            texts = [message.content for message in request.messages]
            masked = redact_texts(texts, self._redactor.scan(texts))
            messages = tuple(
                ChatMessage(m.role, text, m.name) for m, text in zip(request.messages, masked, strict=True)
            )
            return replace(request, messages=messages)
        if isinstance(request.prompt, str):
            return replace(request, prompt=redact_texts([request.prompt], self._redactor.scan([request.prompt]))[0])
        return request

    def _prepared(self, route: Route, request: GenerationRequest, model: str) -> GenerationRequest:
        request = replace(request, model=model.split("/", 1)[1] if route == "cloud" else model)
        return self._for_cloud(request) if route == "cloud" else request

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the answer from the decided side, falling back before the first chunk if it fails."""
        started = self.controller.clock()
        route = self.info.route
        if self.decision.cascade:
            async for chunk in self._cascade(request, started):
                yield chunk
            return
        yielded = False
        try:
            async for chunk in self._run(route, request, started):
                yielded = True
                yield chunk
            return
        except PensieveError as error:
            fallback = self.decision.fallback
            if yielded or fallback is None or not _may_fall_back(route, error):
                self._record_error(error, started)
                raise
        reason = "local_failure" if fallback == "cloud" else "cloud_failure"
        self.info = RouteInfo(fallback, reason, self.info.model, fallback=True)
        try:
            async for chunk in self._run(fallback, request, started):
                yield chunk
        except PensieveError as error:
            self._record_error(error, started)
            raise

    async def _run(self, route: Route, request: GenerationRequest, started: float) -> AsyncGenerator[GenerationChunk]:
        engine, model = await self._engine(route)
        self.info.model = model
        first_token: float | None = None
        async with aclosing(engine.generate(self._prepared(route, request, model))) as chunks:
            async for chunk in chunks:
                if first_token is None:
                    first_token = self.controller.clock()
                if chunk.finish_reason is not None:
                    self._record(chunk.usage or Usage(0, 0), started, first_token)
                yield chunk

    async def _cascade(self, request: GenerationRequest, started: float) -> AsyncGenerator[GenerationChunk]:
        """Answer locally; when the answer's mean token log-probability is low, ask the cloud instead."""
        local_request = replace(request, params=replace(request.params, logprobs=True))
        chunks = [chunk async for chunk in self._run("local", local_request, started)]
        confidence = chunks[-1].mean_logprob if chunks else None
        if confidence is None or confidence >= self._threshold:
            for chunk in chunks:
                yield chunk
            return
        self.info = RouteInfo("cloud", "confidence", self.info.model)
        try:
            cloud_chunks = [chunk async for chunk in self._run("cloud", request, self.controller.clock())]
        except CloudError as error:
            if not error.retryable:
                raise
            local_model = self._local.model_id if self._local else (self._local_model or "")
            self.info = RouteInfo("local", "cloud_failure", local_model, fallback=True)
            cloud_chunks = chunks
        for chunk in cloud_chunks:
            yield chunk

    # --- bookkeeping --------------------------------------------------------------------------------

    def _record(self, usage: Usage, started: float, first_token: float | None) -> None:
        controller, info = self.controller, self.info
        cost = 0.0
        if info.route == "cloud" and self._cloud_model is not None:
            cost = controller.cloud.model(self._cloud_model).cost_usd(usage.prompt_tokens, usage.completion_tokens)
            controller.ledger.record_cloud(
                provider=self._cloud_model.split("/", 1)[0],
                model=self._cloud_model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
            )
        else:
            saved = controller.saved_usd(usage.prompt_tokens, usage.completion_tokens)
            controller.ledger.record_local(
                model=info.model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                saved_usd=0.0 if info.reason == "confidence" else saved,
            )
        ended = controller.clock()
        controller.stats.record(
            DecisionLogEntry(
                at=now(),
                route=info.route,
                reason=info.reason,
                model=info.model,
                latency_ms=(ended - started) * 1000,
                first_token_ms=(first_token - started) * 1000 if first_token is not None else None,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
                fallback=info.fallback,
                stream=self._stream,
            )
        )

    def _record_error(self, error: PensieveError, started: float) -> None:
        controller, info = self.controller, self.info
        controller.stats.record(
            DecisionLogEntry(
                at=now(),
                route="error",
                reason=info.reason,
                model=info.model,
                latency_ms=(controller.clock() - started) * 1000,
                first_token_ms=None,
                prompt_tokens=0,
                completion_tokens=0,
                cost_usd=0.0,
                fallback=info.fallback,
                stream=self._stream,
                error=error.code or type(error).__name__,
            )
        )
