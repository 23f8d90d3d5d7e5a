"""OpenAI-compatible generation routes: POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractContextManager, aclosing, nullcontext
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pensieve.api.deps import InferenceDep, require_api_key
from pensieve.api.limits import CLIENT_CLOSED, ClientDisconnectedError, cancel_on_disconnect
from pensieve.api.sse import event_stream_response
from pensieve.burst.controller import RouteHeader
from pensieve.errors import InvalidRequestError
from pensieve.inference import InferenceService
from pensieve.schemas.requests import ChatCompletionRequest, CompletionRequest
from pensieve.schemas.responses import ChatCompletion, Completion

router = APIRouter(prefix="/v1", tags=["OpenAI"], dependencies=[Depends(require_api_key)])

ROUTE_HEADER = "x-pensieve-route"

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON body, or SSE chunks when stream=true."}
}


def route_header(request: Request) -> RouteHeader | None:
    """The X-Pensieve-Route override (local, cloud or auto), validated."""
    value = request.headers.get(ROUTE_HEADER)
    if value is None or not value.strip():
        return None
    cleaned = value.strip().lower()
    if cleaned not in ("local", "cloud", "auto"):
        raise InvalidRequestError(
            f"Invalid {ROUTE_HEADER} header {value!r}: use local, cloud or auto.", code="invalid_route_header"
        )
    return cleaned  # type: ignore[return-value]


RouteHeaderDep = Annotated[RouteHeader | None, Depends(route_header)]


async def _held(hold: AbstractContextManager[None], payloads: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """`payloads` with `hold` entered from the first payload until the stream ends or is closed."""
    with hold:
        async with aclosing(payloads) as inner:
            async for payload in inner:
                yield payload


async def _respond(
    body: ChatCompletionRequest | CompletionRequest,
    request: Request,
    inference: InferenceService,
    header: RouteHeader | None,
) -> Response:
    engine = await inference.route(body, header)
    # The local model stays loaded until the response is complete; its keep-alive counts from then.
    local = engine.info.model if engine.info.route == "local" else None
    hold = inference.controller.pool.hold(local, body.keep_alive_seconds) if local else nullcontext()
    if body.stream:
        payloads = _held(
            hold,
            inference.chat_stream(body, engine)
            if isinstance(body, ChatCompletionRequest)
            else inference.complete_stream(body, engine),
        )
        first = await anext(payloads)
        # Fallback happens before the first chunk, so the route is final by now.
        return event_stream_response(first, payloads, headers=engine.info.headers())
    try:
        with hold:
            if isinstance(body, ChatCompletionRequest):
                result: ChatCompletion | Completion = await cancel_on_disconnect(request, inference.chat(body, engine))
            else:
                result = await cancel_on_disconnect(request, inference.complete(body, engine))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(result.model_dump(), headers=engine.info.headers())


@router.post("/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, inference: InferenceDep, header: RouteHeaderDep
) -> Response:
    """Chat completion, whole or streamed (server-sent events ending in `data: [DONE]`).

    The model `auto` lets the burst controller choose local or cloud; `X-Pensieve-Route` overrides.
    """
    return await _respond(body, request, inference, header)


@router.post("/completions", response_model=Completion, responses=_STREAM_DOC)
async def create_completion(
    body: CompletionRequest, request: Request, inference: InferenceDep, header: RouteHeaderDep
) -> Response:
    """Text completion (legacy endpoint), whole or streamed."""
    return await _respond(body, request, inference, header)
