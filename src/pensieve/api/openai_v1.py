"""OpenAI-compatible generation routes: POST /v1/chat/completions and POST /v1/completions.

Thin: the serving classes (`pensieve.serving`) own the run; this module frames it as JSON or SSE, puts
the x-pensieve-* route headers on the response, and cancels a whole-answer run when the client leaves.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pensieve.api.access import Caller, CallerDep, inference_caller
from pensieve.api.deps import ChatDep, CompletionsDep, DrainDep, RateLimiterDep, RouteHeaderDep, SettingsDep
from pensieve.api.drain import Drain
from pensieve.api.limits import CLIENT_CLOSED, ClientDisconnectedError, Deadline, cancel_on_disconnect
from pensieve.api.sse import event_stream_response
from pensieve.burst.planner import RouteHeader
from pensieve.config import Settings
from pensieve.rate_limits import RateLimiter, estimated_prompt_tokens
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest
from pensieve.schemas.responses import ChatCompletion, Completion
from pensieve.serving import GenerationServing

router = APIRouter(prefix="/v1", tags=["OpenAI"], dependencies=[Depends(inference_caller)])

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON body, or SSE chunks when stream=true."}
}


async def _respond(
    serving: GenerationServing[Any],
    body: ChatCompletionRequest | CompletionRequest,
    request: Request,
    header: RouteHeader | None,
    caller: Caller,
    limiter: RateLimiter,
    settings: Settings,
    drain: Drain,
) -> Response:
    deadline = Deadline(settings.server.request_timeout_seconds, stop=drain.stopped)
    prompt_tokens = estimated_prompt_tokens(len(await request.body()))
    run = await serving.prepare(
        body, header, admit=lambda work: limiter.admit(caller.id, prompt_tokens + work), cache_partition=caller.id
    )
    try:
        if body.stream:
            # Waiting for the first chunk (queue, prefill) watches the client too: one that leaves is dropped now.
            streamed = await cancel_on_disconnect(request, deadline.within(serving.stream(run)))
            # Fallback happens before the first chunk, so the route is final by now.
            return event_stream_response(streamed.first, deadline.limit(streamed.rest), headers=streamed.info.headers())
        result = await cancel_on_disconnect(request, deadline.within(serving.answer(run)))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump(), headers=run.info.headers())


@router.post("/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def create_chat_completion(
    body: ChatCompletionRequest,
    request: Request,
    chat: ChatDep,
    header: RouteHeaderDep,
    caller: CallerDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    drain: DrainDep,
) -> Response:
    """Chat completion, whole or streamed (server-sent events ending in `data: [DONE]`).

    The model `auto` lets the route planner choose local or cloud; `X-Pensieve-Route` overrides.
    """
    return await _respond(chat, body, request, header, caller, limiter, settings, drain)


@router.post("/completions", response_model=Completion, responses=_STREAM_DOC)
async def create_completion(
    body: CompletionRequest,
    request: Request,
    completions: CompletionsDep,
    header: RouteHeaderDep,
    caller: CallerDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    drain: DrainDep,
) -> Response:
    """Text completion (legacy endpoint), whole or streamed."""
    return await _respond(completions, body, request, header, caller, limiter, settings, drain)
