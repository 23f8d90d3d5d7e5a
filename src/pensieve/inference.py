"""The inference service: runs OpenAI chat/text completion requests on engines, whole or streamed.

`route` asks the burst controller where a request runs and returns the RoutedEngine that runs it;
the other methods run one generation per choice (and per prompt for batched text completions) on it
and shape the results as OpenAI objects. HTTP concerns (SSE framing, headers) stay in `api/`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, replace

from pensieve.burst.controller import BurstController, RouteHeader
from pensieve.burst.routed_engine import RoutedEngine
from pensieve.config import Settings
from pensieve.engine.base import Engine
from pensieve.engine.types import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob, Usage
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest
from pensieve.schemas.responses import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    UsageOut,
    new_id,
    now,
)


@dataclass(frozen=True)
class FinishedText:
    """A whole generation: its text, why it ended and its token counts."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    logprobs: tuple[TokenLogprob, ...] = ()


def _seeded(request: GenerationRequest, choice: int) -> GenerationRequest:
    """Distinct seeds per choice, so n > 1 with a seed gives n different (reproducible) answers."""
    if choice == 0 or request.params.seed is None:
        return request
    return replace(request, params=replace(request.params, seed=request.params.seed + choice))


async def collect(engine: Engine, request: GenerationRequest) -> FinishedText:
    """Run a generation to the end and join its text."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    finish: FinishReason = "stop"
    usage = Usage(0, 0)
    async with aclosing(engine.generate(request)) as chunks:
        async for chunk in chunks:
            parts.append(chunk.text)
            logprobs.extend(chunk.logprobs)
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
                usage = chunk.usage or usage
    return FinishedText("".join(parts), finish, usage, tuple(logprobs))


async def collect_choices(engine: Engine, request: GenerationRequest, n: int) -> list[FinishedText]:
    """The `n` choices of a request, generated concurrently (the local engine batches them)."""
    return list(await asyncio.gather(*(collect(engine, _seeded(request, index)) for index in range(n))))


def _add(total: Usage, usage: Usage | None, *, count_prompt: bool) -> Usage:
    if usage is None:
        return total
    if not count_prompt:  # the choices of one prompt share it: count it (and its cache hits) once
        return replace(total, completion_tokens=total.completion_tokens + usage.completion_tokens)
    return Usage(
        total.prompt_tokens + usage.prompt_tokens,
        total.completion_tokens + usage.completion_tokens,
        total.cached_tokens + usage.cached_tokens,
    )


class InferenceService:
    """Chat and text completions, run where the burst controller decides."""

    def __init__(self, settings: Settings, controller: BurstController) -> None:
        self.settings = settings
        self.controller = controller

    def routing_request(self, body: ChatCompletionRequest | CompletionRequest) -> GenerationRequest:
        """The request the controller decides on (all prompts of a batched completion joined)."""
        if isinstance(body, ChatCompletionRequest):
            return body.to_request(self.settings)
        requests = body.to_requests(self.settings)
        texts = [r.prompt for r in requests if isinstance(r.prompt, str)]
        if len(requests) == 1 or len(texts) != len(requests):
            return requests[0]
        return replace(requests[0], prompt="\n".join(texts))

    async def route(self, body: ChatCompletionRequest | CompletionRequest, header: RouteHeader | None) -> RoutedEngine:
        """Where the request runs: the engine carrying out the burst controller's decision."""
        return await self.controller.route(self.routing_request(body), stream=body.stream, header=header)

    async def chat(self, body: ChatCompletionRequest, engine: Engine) -> ChatCompletion:
        """A whole chat completion with `n` choices."""
        request = body.to_request(self.settings)
        choices: list[ChatChoice] = []
        usage = Usage(0, 0)
        for index, result in enumerate(await collect_choices(engine, request, body.n)):
            choices.append(
                ChatChoice(
                    index=index,
                    message=AssistantMessage(content=result.text),
                    finish_reason=result.finish_reason,
                    logprobs=ChoiceLogprobs.of(result.logprobs) if body.logprobs else None,
                )
            )
            usage = _add(usage, result.usage, count_prompt=index == 0)
        return ChatCompletion(
            id=new_id("chatcmpl"), created=now(), model=engine.model_id, choices=choices, usage=UsageOut.of(usage)
        )

    async def chat_stream(self, body: ChatCompletionRequest, engine: Engine) -> AsyncGenerator[str, None]:
        """JSON payloads of a streamed chat completion; raises client errors before the first one."""
        request = body.to_request(self.settings)
        completion_id, created = new_id("chatcmpl"), now()

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            return ChatCompletionChunk(
                id=completion_id,
                created=created,
                model=engine.model_id,
                choices=choices,
                usage=UsageOut.of(usage) if usage else None,
            ).model_dump_json(exclude_none=False)

        total = Usage(0, 0)
        for index in range(body.n):
            announced = False
            async for piece in self._pieces(engine, _seeded(request, index)):
                if not announced:
                    # The role comes first, once the model has produced something (errors stay HTTP errors).
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(role="assistant", content=""))])
                    announced = True
                if piece.text:
                    logprobs = ChoiceLogprobs.of(piece.logprobs) if body.logprobs else None
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(content=piece.text), logprobs=logprobs)])
                if piece.finish_reason is not None:
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(), finish_reason=piece.finish_reason)])
                    total = _add(total, piece.usage, count_prompt=index == 0)
        if body.include_usage:
            yield chunk([], total)

    async def complete(self, body: CompletionRequest, engine: Engine) -> Completion:
        """A whole text completion: `n` choices for each prompt."""
        requests = body.to_requests(self.settings)
        choices: list[CompletionChoice] = []
        usage = Usage(0, 0)
        for prompt_index, request in enumerate(requests):
            echo = self._echo_text(body, request)
            for choice, result in enumerate(await collect_choices(engine, request, body.n)):
                choices.append(
                    CompletionChoice(
                        index=prompt_index * body.n + choice,
                        text=echo + result.text,
                        finish_reason=result.finish_reason,
                        logprobs=CompletionLogprobs.of(result.logprobs, len(echo))
                        if body.logprobs is not None
                        else None,
                    )
                )
                usage = _add(usage, result.usage, count_prompt=choice == 0)
        return Completion(
            id=new_id("cmpl"), created=now(), model=engine.model_id, choices=choices, usage=UsageOut.of(usage)
        )

    async def complete_stream(self, body: CompletionRequest, engine: Engine) -> AsyncGenerator[str, None]:
        """JSON payloads of a streamed text completion; raises client errors before the first one."""
        requests = body.to_requests(self.settings)
        completion_id, created = new_id("cmpl"), now()

        def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> str:
            return Completion(
                id=completion_id,
                created=created,
                model=engine.model_id,
                choices=choices,
                usage=UsageOut.of(usage) if usage else None,
            ).model_dump_json()

        total = Usage(0, 0)
        for prompt_index, request in enumerate(requests):
            for choice in range(body.n):
                index = prompt_index * body.n + choice
                echo = self._echo_text(body, request)
                offset = len(echo)
                async for piece in self._pieces(engine, _seeded(request, choice)):
                    text, echo = echo + piece.text, ""
                    logprobs = CompletionLogprobs.of(piece.logprobs, offset) if body.logprobs is not None else None
                    offset += len(piece.text)
                    if text or piece.finish_reason is not None:
                        yield chunk(
                            [
                                CompletionChoice(
                                    index=index, text=text, finish_reason=piece.finish_reason, logprobs=logprobs
                                )
                            ]
                        )
                    if piece.finish_reason is not None:
                        total = _add(total, piece.usage, count_prompt=choice == 0)
        if body.include_usage:
            yield chunk([], total)

    @staticmethod
    def _echo_text(body: CompletionRequest, request: GenerationRequest) -> str:
        return request.prompt if body.echo and isinstance(request.prompt, str) else ""

    @staticmethod
    async def _pieces(engine: Engine, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        async with aclosing(engine.generate(request)) as chunks:
            async for piece in chunks:
                yield piece
