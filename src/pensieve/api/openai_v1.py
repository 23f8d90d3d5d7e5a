"""OpenAI-compatible generation routes: POST /v1/chat/completions and POST /v1/completions.

Thin: the serving classes (`pensieve.serving`) own the run; this module frames it as JSON or SSE, puts
the x-pensieve-* route headers on the response, and cancels a whole-answer run when the client leaves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

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
from pensieve.serving.attachments import Attachments
from pensieve.serving.conversation import SESSION_HEADER, SessionTurn

router = APIRouter(prefix="/v1", tags=["OpenAI"], dependencies=[Depends(inference_caller)])

_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON body, or SSE chunks when stream=true."}
}


@dataclass(frozen=True)
class Call:
    """What every generation route needs besides its body and serving class: who calls, under which limits."""

    request: Request
    header: RouteHeader | None
    caller: Caller
    limiter: RateLimiter
    settings: Settings
    drain: Drain


def _call(
    request: Request,
    header: RouteHeaderDep,
    caller: CallerDep,
    limiter: RateLimiterDep,
    settings: SettingsDep,
    drain: DrainDep,
) -> Call:
    return Call(request, header, caller, limiter, settings, drain)


CallDep = Annotated[Call, Depends(_call)]


def session_header(request: Request) -> str | None:
    """The X-Pensieve-Session header (the `session_id` body field says the same), or None."""
    value = request.headers.get(SESSION_HEADER, "").strip()
    return value or None


async def _respond(
    serving: GenerationServing[Any],
    body: ChatCompletionRequest | CompletionRequest,
    call: Call,
    turn: SessionTurn | None = None,
    attachments: Attachments | None = None,
) -> Response:
    deadline = Deadline(call.settings.server.request_timeout_seconds, call.drain)
    prompt_tokens = estimated_prompt_tokens(len(await call.request.body()))
    caller = call.caller
    run = await serving.prepare(
        body,
        call.header,
        admit=lambda work: call.limiter.admit(caller.id, prompt_tokens + work),
        cache_partition=caller.id,
        # A session that held private data stays local; an attached file's private data counts as typed.
        session_private=turn.private_kinds if turn else (),
        file_private=attachments.private_kinds if attachments else (),
    )
    if turn is not None:
        await asyncio.to_thread(turn.note_private, run.runner.plan.facts.private_kinds)
    extra = (turn.headers() if turn else {}) | (attachments.headers() if attachments else {})
    try:
        if body.stream:
            # Waiting for the first chunk (queue, prefill) watches the client too: one that leaves is dropped now.
            streamed = await cancel_on_disconnect(call.request, deadline.within(serving.stream(run)))
            rest = deadline.limit(streamed.rest)
            if turn is not None:
                rest = turn.recording(streamed.first, rest, run.runner)
            # Fallback happens before the first chunk, so the route is final by now.
            return event_stream_response(streamed.first, rest, headers=streamed.info.headers() | extra)
        result = await cancel_on_disconnect(call.request, deadline.within(serving.answer(run)))
    except ClientDisconnectedError:
        return Response(status_code=CLIENT_CLOSED)
    payload = result.model_dump()
    if turn is not None and isinstance(result, ChatCompletion):
        await asyncio.to_thread(turn.record_answer, result, run.runner)
        payload["session"] = turn.summary()
    if attachments is not None:
        payload["citations"] = attachments.citations()
    return JSONResponse(payload, headers=run.info.headers() | extra)


@router.post("/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC)
async def create_chat_completion(
    body: ChatCompletionRequest, chat: ChatDep, call: CallDep, session: Annotated[str | None, Depends(session_header)]
) -> Response:
    """Chat completion, whole or streamed (server-sent events ending in `data: [DONE]`).

    The model `auto` lets the route planner choose local or cloud; `X-Pensieve-Route` overrides. With a
    `session_id` (or `X-Pensieve-Session`) the session's history goes in front and the answer is stored;
    with `file_ids` the files' best passages for the question go into the prompt and are cited.
    """
    owner = call.caller.id
    session_id = body.session_id or session
    stored = await chat.session(owner, session_id) if session_id is not None else None
    if stored is not None and stored.file_ids:  # files attached to the session answer every turn of it too
        body = body.model_copy(update={"file_ids": list(dict.fromkeys([*(body.file_ids or []), *stored.file_ids]))})
    attachments = None
    if body.file_ids:
        attachments, body = await chat.attach(body, owner=owner)
    if stored is None:
        return await _respond(chat, body, call, attachments=attachments)
    turn, body = await chat.begin_turn(body, stored)
    if attachments is not None:
        turn.remember_question(attachments.question, attachments.citations())
    return await _respond(chat, body, call, turn, attachments)


@router.post("/completions", response_model=Completion, responses=_STREAM_DOC)
async def create_completion(body: CompletionRequest, completions: CompletionsDep, call: CallDep) -> Response:
    """Text completion (legacy endpoint), whole or streamed."""
    return await _respond(completions, body, call)
