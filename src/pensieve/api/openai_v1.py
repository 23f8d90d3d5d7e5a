"""OpenAI-compatible generation routes: POST /v1/chat/completions and POST /v1/completions.

Thin: the serving classes (`pensieve.serving`) own the run; this module frames it as JSON or SSE, puts
the x-pensieve-* route headers on the response, and cancels a whole-answer run when the client leaves.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pensieve.api.deps import ChatDep, CompletionsDep, RouteHeaderDep, require_api_key
from pensieve.api.limits import CLIENT_CLOSED, ClientDisconnectedError, cancel_on_disconnect
from pensieve.api.sse import event_stream_response
from pensieve.burst.planner import RouteHeader
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest
from pensieve.schemas.responses import ChatCompletion, Completion
from pensieve.serving import GenerationServing

router = APIRouter(prefix="/v1", tags=["OpenAI"], dependencies=[Depends(require_api_key)])

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON body, or SSE chunks when stream=true."}
}


async def _respond(
    serving: GenerationServing[Any],
    body: ChatCompletionRequest | CompletionRequest,
    request: Request,
    header: RouteHeader | None,
) -> Response:
    run = await serving.prepare(body, header)
    if body.stream:
        streamed = await serving.stream(run)
        # Fallback happens before the first chunk, so the route is final by now.
        return event_stream_response(streamed.first, streamed.rest, headers=streamed.info.headers())
    try:
        result = await cancel_on_disconnect(request, serving.answer(run))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump(), headers=run.info.headers())


@router.post("/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, chat: ChatDep, header: RouteHeaderDep
) -> Response:
    """Chat completion, whole or streamed (server-sent events ending in `data: [DONE]`).

    The model `auto` lets the route planner choose local or cloud; `X-Pensieve-Route` overrides.
    """
    return await _respond(chat, body, request, header)


@router.post("/completions", response_model=Completion, responses=_STREAM_DOC)
async def create_completion(
    body: CompletionRequest, request: Request, completions: CompletionsDep, header: RouteHeaderDep
) -> Response:
    """Text completion (legacy endpoint), whole or streamed."""
    return await _respond(completions, body, request, header)
