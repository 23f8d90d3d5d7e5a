"""POST /v1/chat/completions, served: `n` choices of one conversation, whole or as streamed chunks.

Tool calls: a cloud provider's come as structured pieces and pass through (streamed as they arrive). A local
model writes its calls as text (engine/tool_prompt.py), so when tools are offered to a local model its
answer is read back once complete (serving/tool_output.py). Streamed, it is held while it may still be a
call: an answer that starts as plain text streams from there on, one that starts like a call (`{`, `[`,
`<`, a code fence) arrives at the end, as tool_calls deltas or as content.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from pensieve.burst.accounting import RunRecorder
from pensieve.burst.planner import RoutePlanner
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine.pool import ModelPool
from pensieve.engine.tool_prompt import tool_names
from pensieve.engine_api import FinishReason, GenerationRequest, ToolCall, Usage
from pensieve.files.store import FileStore
from pensieve.schemas.requests import ChatCompletionRequest, RequestDefaults
from pensieve.schemas.responses import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    ToolCallChunk,
    ToolCallOut,
    UsageOut,
    new_id,
    now,
)
from pensieve.serving.attachments import Attachments, attach_files
from pensieve.serving.base import GenerationServing, PreparedRun
from pensieve.serving.choices import add_usage, collect_choices, pieces, seeded
from pensieve.serving.conversation import SessionTurn, begin_turn
from pensieve.serving.tool_output import call_deltas, may_start_call, parse_tool_calls
from pensieve.sessions import Session, SessionNotFoundError, SessionStore


def reads_local_calls(request: GenerationRequest, run: PreparedRun[ChatCompletionRequest]) -> bool:
    """Whether this run's text may hold tool calls to read back: tools offered (not `none`) to a local model."""
    return bool(request.tools) and request.tool_choice != "none" and run.info.route == "local"


def answer_calls(
    text: str, calls: tuple[ToolCall, ...], request: GenerationRequest, local: bool
) -> tuple[str | None, tuple[ToolCall, ...]]:
    """The content and tool calls of one answer: a cloud's calls as they came, a local model's read from
    its text (the text is then no content of its own)."""
    if not calls and local:
        calls = parse_tool_calls(text, tool_names(request.tools))
        if calls:
            return None, calls
    return (text or None) if calls else text, calls


class ChatServing(GenerationServing[ChatCompletionRequest]):
    """Chat completions, run where the route planner decides; a request naming a session gets its history."""

    def __init__(
        self,
        defaults: RequestDefaults,
        planner: RoutePlanner,
        pool: ModelPool,
        cloud: CloudRegistry,
        recorder: RunRecorder,
        *,
        sessions: SessionStore,
        files: FileStore,
    ) -> None:
        super().__init__(defaults, planner, pool, cloud, recorder)
        self.sessions = sessions  # the sessions a request may name
        self.files = files  # the uploaded files a request may name

    async def session(self, owner: str, session_id: str) -> Session:
        """`owner`'s session (404 session_not_found when it is unknown or someone else's)."""
        session = await asyncio.to_thread(self.sessions.get, owner, session_id)
        if session is None:
            raise SessionNotFoundError.for_id(session_id)
        return session

    async def attach(self, body: ChatCompletionRequest, *, owner: str) -> tuple[Attachments, ChatCompletionRequest]:
        """The passages of the files `body` names, and the body with them before its question."""
        return await attach_files(body, self.files, owner=owner, token_budget=self.defaults.file_context_tokens)

    async def begin_turn(
        self, body: ChatCompletionRequest, session: Session
    ) -> tuple[SessionTurn, ChatCompletionRequest]:
        """The session turn `body` starts, and the request to run (the session's history fitted in front)."""
        return await begin_turn(
            body,
            session=session,
            store=self.sessions,
            pool=self.pool,
            cloud=self.cloud,
            defaults=self.defaults,
        )

    def requests(self, body: ChatCompletionRequest) -> list[GenerationRequest]:
        """One engine request: the conversation with the sampling defaults filled in."""
        return [body.to_request(self.defaults)]

    async def _answer(self, run: PreparedRun[ChatCompletionRequest]) -> ChatCompletion:
        body, request = run.body, run.requests[0]
        choices: list[ChatChoice] = []
        usage = Usage(0, 0)
        for index, result in enumerate(await collect_choices(run.runner, request, body.n)):
            content, calls = answer_calls(result.text, result.tool_calls, request, reads_local_calls(request, run))
            finish: FinishReason = "tool_calls" if calls else result.finish_reason
            choices.append(
                ChatChoice(
                    index=index,
                    message=AssistantMessage(
                        content=content, tool_calls=[ToolCallOut.of(call) for call in calls] or None
                    ),
                    finish_reason=finish,
                    logprobs=ChoiceLogprobs.of(result.logprobs) if body.logprobs else None,
                )
            )
            usage = add_usage(usage, result.usage, count_prompt=index == 0)
        return ChatCompletion(
            id=new_id("chatcmpl"), created=now(), model=run.info.model, choices=choices, usage=UsageOut.of(usage)
        )

    async def _payloads(self, run: PreparedRun[ChatCompletionRequest]) -> AsyncGenerator[str, None]:
        body, request = run.body, run.requests[0]
        completion_id, created = new_id("chatcmpl"), now()

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            return ChatCompletionChunk(
                id=completion_id,
                created=created,
                model=run.info.model,
                choices=choices,
                usage=UsageOut.of(usage) if usage else None,
            ).model_dump_json(exclude_none=False)

        total = Usage(0, 0)
        for index in range(body.n):
            announced = False
            held: list[str] = []  # a local model's text while it may still turn out to be a tool call
            released = False  # it cannot any more (it starts as plain text): it streams as it comes
            async for piece in pieces(run.runner, seeded(request, index)):
                if not announced:
                    # The role comes first, once the model has produced something (errors stay HTTP errors).
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(role="assistant", content=""))])
                    announced = True
                holding = reads_local_calls(request, run) and not released
                if piece.text and holding:
                    held.append(piece.text)
                    if not may_start_call("".join(held)):
                        released, holding = True, False
                        yield chunk([ChunkChoice(index=index, delta=ChunkDelta(content="".join(held)))])
                elif piece.text:
                    logprobs = ChoiceLogprobs.of(piece.logprobs) if body.logprobs else None
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(content=piece.text), logprobs=logprobs)])
                if piece.tool_calls:
                    calls = [ToolCallChunk.of(delta) for delta in piece.tool_calls]
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(tool_calls=calls))])
                if piece.finish_reason is not None:
                    finish: FinishReason = piece.finish_reason
                    if holding:
                        content, local_calls = answer_calls("".join(held), (), request, local=True)
                        delta = ChunkDelta(content=content)
                        if local_calls:
                            delta = ChunkDelta(tool_calls=[ToolCallChunk.of(d) for d in call_deltas(local_calls)])
                            finish = "tool_calls"
                        if content or local_calls:
                            yield chunk([ChunkChoice(index=index, delta=delta)])
                    yield chunk([ChunkChoice(index=index, delta=ChunkDelta(), finish_reason=finish)])
                    total = add_usage(total, piece.usage, count_prompt=index == 0)
        if body.include_usage:
            yield chunk([], total)
