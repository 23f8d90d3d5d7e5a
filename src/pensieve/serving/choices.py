"""Running the choices of one request on a runner: whole (joined) or piece by piece, and adding up usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, replace

from pensieve.burst.runner import RouteRunner
from pensieve.engine_api import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from pensieve.serving.tool_output import joined_calls


@dataclass(frozen=True)
class FinishedText:
    """A whole generation: its text, why it ended and its token counts."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_logprobs: tuple[TokenLogprob, ...] = ()  # the scored prompt (GenerationRequest.score_prompt)
    tool_calls: tuple[ToolCall, ...] = ()  # a cloud provider's calls, put together from its stream pieces


def seeded(request: GenerationRequest, choice: int) -> GenerationRequest:
    """The request of choice `choice`: distinct seeds per choice, so n > 1 with a seed gives n different
    (reproducible) answers; only the first choice scores the prompt (the others would score it alike)."""
    if choice == 0:
        return request
    if request.score_prompt:
        request = replace(request, score_prompt=False)
    if request.params.seed is None:
        return request
    return replace(request, params=replace(request.params, seed=request.params.seed + choice))


async def pieces(runner: RouteRunner, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
    """The chunks of one generation; closing this generator closes the run (a client disconnect)."""
    async with aclosing(runner.generate(request)) as chunks:
        async for piece in chunks:
            yield piece


async def collect(runner: RouteRunner, request: GenerationRequest) -> FinishedText:
    """Run a generation to the end and join its text."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    prompt_logprobs: tuple[TokenLogprob, ...] = ()
    finish: FinishReason = "stop"
    usage = Usage(0, 0)
    deltas: list[ToolCallDelta] = []
    async for chunk in pieces(runner, request):
        parts.append(chunk.text)
        deltas.extend(chunk.tool_calls)
        logprobs.extend(chunk.logprobs)
        prompt_logprobs = prompt_logprobs or chunk.prompt_logprobs
        if chunk.finish_reason is not None:
            finish = chunk.finish_reason
            usage = chunk.usage or usage
    return FinishedText("".join(parts), finish, usage, tuple(logprobs), prompt_logprobs, joined_calls(deltas))


async def collect_choices(runner: RouteRunner, request: GenerationRequest, n: int) -> list[FinishedText]:
    """The `n` choices of a request, generated concurrently (the local engine batches them)."""
    return list(await asyncio.gather(*(collect(runner, seeded(request, index)) for index in range(n))))


def add_usage(total: Usage, usage: Usage | None, *, count_prompt: bool) -> Usage:
    """`total` plus one choice's usage; the choices of one prompt share it, so count it (and its cache) once."""
    if usage is None:
        return total
    if not count_prompt:
        return replace(total, completion_tokens=total.completion_tokens + usage.completion_tokens)
    return Usage(
        total.prompt_tokens + usage.prompt_tokens,
        total.completion_tokens + usage.completion_tokens,
        total.cached_tokens + usage.cached_tokens,
    )
