"""The serving layer's common run: a body becomes engine requests ONCE, is planned, and runs to the end.

One serving class per endpoint (`ChatServing`, `CompletionServing`) owns the whole run of its requests,
the way vLLM's serving_* classes do: `prepare` converts the body and asks the route planner (a refusal
is recorded and raised here), then `answer` or `stream` runs it on a RouteRunner while the local model
is held loaded. HTTP concerns (SSE framing, headers, disconnects) stay in `pensieve.api`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractContextManager, ExitStack, aclosing
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from pensieve.burst.accounting import RouteInfo, RunRecorder
from pensieve.burst.planner import RouteHeader, RoutePlanner
from pensieve.burst.runner import RouteRunner
from pensieve.cloud.engine import estimate_tokens
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine.pool import ModelPool
from pensieve.engine_api import GenerationRequest
from pensieve.errors import InvalidRequestError
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest, RequestDefaults

Body = TypeVar("Body", ChatCompletionRequest, CompletionRequest)


@dataclass
class PreparedRun(Generic[Body]):
    """A planned request ready to run: its body, its engine requests (one per prompt) and its runner."""

    body: Body
    requests: list[GenerationRequest]
    runner: RouteRunner

    @property
    def info(self) -> RouteInfo:
        """Where the request runs now (final once the first chunk exists: fallback happens before it)."""
        return self.runner.info


@dataclass(frozen=True)
class Streamed:
    """A started stream: its first JSON payload (so errors before it stay HTTP errors) and the rest."""

    first: str
    rest: AsyncGenerator[str, None]
    info: RouteInfo


def routing_request(requests: list[GenerationRequest]) -> GenerationRequest:
    """The request the planner decides on: all prompts of a batched text completion joined."""
    texts = [request.prompt for request in requests if isinstance(request.prompt, str)]
    if len(requests) == 1 or len(texts) != len(requests):
        return requests[0]
    return replace(requests[0], prompt="\n".join(texts))


async def _held(hold: AbstractContextManager[Any], payloads: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """`payloads` with `hold` entered from the first payload until the stream ends or is closed."""
    with hold:
        async with aclosing(payloads) as inner:
            async for payload in inner:
                yield payload


class GenerationServing(ABC, Generic[Body]):
    """Plans and runs the requests of one generation endpoint."""

    def __init__(
        self,
        defaults: RequestDefaults,
        planner: RoutePlanner,
        pool: ModelPool,
        cloud: CloudRegistry,
        recorder: RunRecorder,
    ) -> None:
        self.defaults = defaults
        self.planner = planner
        self.pool = pool
        self.cloud = cloud
        self.recorder = recorder

    @abstractmethod
    def requests(self, body: Body) -> list[GenerationRequest]:
        """The engine requests of a body (the only place a body is converted)."""

    @abstractmethod
    async def _answer(self, run: PreparedRun[Body]) -> BaseModel:
        """The whole answer object."""

    @abstractmethod
    def _payloads(self, run: PreparedRun[Body]) -> AsyncGenerator[str, None]:
        """JSON payloads of the streamed answer; raises client errors before the first one."""

    def route_header(self, body: Body, header: RouteHeader | None) -> RouteHeader | None:
        """The route header the plan gets: the client's, unless what the body asks for decides the route."""
        return header

    async def explain(self, body: Body, header: RouteHeader | None) -> dict[str, Any]:
        """Where `body` would run and why, without running it."""
        header = self.route_header(body, header)
        plan = await self.planner.plan(routing_request(self.requests(body)), stream=body.stream, header=header)
        return plan.explain()

    def requested_tokens(self, requests: list[GenerationRequest], n: int) -> int:
        """The most tokens a request may generate in all: prompts x n x max_tokens, plus the prompt tokens
        it scores (each prompt once, whatever n; a text prompt's count estimated, at most the context window).

        A prompt without max_tokens counts the server's default, else the whole context window; max_tokens 0
        counts nothing.
        """
        fallback = self.defaults.sampling.max_tokens or self.defaults.context_tokens
        work = 0
        for request in requests:
            work += (fallback if request.params.max_tokens is None else request.params.max_tokens) * n
            if request.score_prompt:
                prompt = request.prompt or ""
                size = len(prompt) if isinstance(prompt, tuple) else estimate_tokens(prompt)
                work += min(size, self.defaults.context_tokens)
        return work

    async def prepare(
        self,
        body: Body,
        header: RouteHeader | None,
        admit: Callable[[int], None] | None = None,
        cache_partition: str = "",
        session_private: tuple[str, ...] = (),
        file_private: tuple[str, ...] = (),
    ) -> PreparedRun[Body]:
        """Convert the body, check the work it asks for, plan it, and build its runner.

        `admit(tokens)` (the caller's rate limit) sees the tokens the request may generate before anything
        is planned or loaded; `cache_partition` (the caller) limits prompt-cache reuse to the caller's own
        prompts; `session_private` (the kinds of private data the request's session held) keeps it local;
        `file_private` (what its attached files hold) counts as private data in the prompt. A refused plan
        is recorded, then raised.
        """
        requests = [replace(request, cache_partition=cache_partition) for request in self.requests(body)]
        header = self.route_header(body, header)
        work = self.requested_tokens(requests, body.n)
        if work > self.defaults.max_request_tokens:
            raise InvalidRequestError(
                f"This request may generate up to {work} tokens (prompts x n x max_tokens, plus the prompt tokens "
                "echo with logprobs scores; a prompt without max_tokens counts the context window), more than the "
                "server's limit of "
                f"{self.defaults.max_request_tokens} (PENSIEVE_MAX_REQUEST_TOKENS). Set a smaller max_tokens or n, "
                "or send fewer prompts.",
                param="max_tokens",
                code="request_too_large",
            )
        if admit is not None:
            admit(work)
        # Each choice of each prompt is one cloud call: the budget reserves for all of them.
        plan = await self.planner.plan(
            routing_request(requests),
            stream=body.stream,
            header=header,
            choices=body.n * len(requests),
            reserve=True,
            session_private=session_private,
            file_private=file_private,
        )
        if plan.refused:
            self.recorder.refused(plan)
            raise plan.refusal()
        runner = RouteRunner(plan, local=self.pool, cloud=self.cloud, recorder=self.recorder)
        return PreparedRun(body, requests, runner)

    def _hold(self, run: PreparedRun[Body]) -> AbstractContextManager[Any]:
        """Keep the local model loaded until the response is complete (its keep-alive counts from then).

        On exit the runner settles its budget reservation: the request is over, finished, failed or cut.
        """
        stack = ExitStack()
        stack.callback(run.runner.settle)
        model = run.runner.local_model
        if model:
            stack.enter_context(self.pool.hold(model, run.body.keep_alive_seconds))
        return stack

    async def answer(self, run: PreparedRun[Body]) -> BaseModel:
        """Run to the end and return the whole answer."""
        with self._hold(run):
            return await self._answer(run)

    async def stream(self, run: PreparedRun[Body]) -> Streamed:
        """Start the stream: wait for its first payload (fallback happens before it), hand back the rest."""
        payloads = _held(self._hold(run), self._payloads(run))
        first = await anext(payloads)
        return Streamed(first, payloads, run.info)
