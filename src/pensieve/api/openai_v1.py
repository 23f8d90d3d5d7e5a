"""OpenAI-compatible generation routes: POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pensieve.api.deps import InferenceDep, require_api_key
from pensieve.api.limits import ClientDisconnectedError, cancel_on_disconnect
from pensieve.api.sse import event_stream_response
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest
from pensieve.schemas.responses import ChatCompletion, Completion

router = APIRouter(prefix="/v1", tags=["OpenAI"], dependencies=[Depends(require_api_key)])

# 499 is nginx's "client closed request": logged, never seen by the (gone) client.
CLIENT_CLOSED = 499

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON body, or SSE chunks when stream=true."}
}


@router.post("/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def create_chat_completion(body: ChatCompletionRequest, request: Request, inference: InferenceDep) -> Response:
    """Chat completion, whole or streamed (server-sent events ending in `data: [DONE]`)."""
    if body.stream:
        payloads = inference.chat_stream(body)
        first = await anext(payloads)
        return event_stream_response(first, payloads)
    try:
        result = await cancel_on_disconnect(request, inference.chat(body))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump())


@router.post("/completions", response_model=Completion, responses=_STREAM_DOC)
async def create_completion(body: CompletionRequest, request: Request, inference: InferenceDep) -> Response:
    """Text completion (legacy endpoint), whole or streamed."""
    if body.stream:
        payloads = inference.complete_stream(body)
        first = await anext(payloads)
        return event_stream_response(first, payloads)
    try:
        result = await cancel_on_disconnect(request, inference.complete(body))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump())
