"""A chat request that names a session: the stored history goes in, the answer is stored.

The client sends only its new message(s) with `session_id` (body) or `X-Pensieve-Session` (header). The
server puts the session's system prompt and as much of its history as fits the model's context in front
(oldest turns left out first, `sessions.history.fit_history`), runs the request like any other, and
stores the new messages with the answer and its record (route, reason, model, tokens, latency, cost) in
one go once the answer ended: a whole answer, or a streamed one the client stopped (`partial`). A run
that failed stores nothing, so the history never holds a question without its answer.

Agent loops: an answer's tool calls are stored with it, and the `tool` results (and any assistant turn)
the client sends next are stored as turns too, so the following prompt shows the calls and their results
(rendered as a stateless request's are). A client that, as the OpenAI examples do, sends back the
assistant message with the calls it just got, or a result already stored, does not get it twice.

A session whose messages held private data never goes to a public provider again (`Session.private`, passed to
the planner): it stays local, or uses the trusted tier (a `private_ok` provider) when one is configured.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from pensieve.burst.runner import RouteRunner
from pensieve.cloud.engine import estimate_tokens
from pensieve.cloud.registry import CloudRegistry
from pensieve.engine.pool import ModelPool
from pensieve.engine_api import ChatMessage, ToolCall
from pensieve.schemas.messages import ChatMessageIn
from pensieve.schemas.requests import ChatCompletionRequest, RequestDefaults
from pensieve.schemas.responses import ChatCompletion
from pensieve.sessions import Session, SessionStore, StoredMessage
from pensieve.sessions.history import fit_history
from pensieve.sessions.records import calls_json

SESSION_HEADER = "x-pensieve-session"
TRIMMED_HEADER = "x-pensieve-trimmed-messages"
# Without max_tokens, the answer is given this share of the context when history is fitted around it.
ANSWER_SHARE = 4
# A cloud model whose context is not configured is assumed to take this many tokens.
ASSUMED_CLOUD_CONTEXT = 32768


@dataclass
class SessionTurn:
    """One turn of a session: what the client sent, what the prompt left out, and how to store the answer."""

    store: SessionStore
    session: Session
    sent: list[ChatMessage]
    trimmed: int
    started: float = field(default_factory=time.perf_counter)
    recorded: bool = False
    citations: list[dict[str, Any]] | None = None  # the file passages the answer was given

    def remember_question(self, question: str, citations: list[dict[str, Any]]) -> None:
        """Store `question` as asked (not with the file passages put before it) and the passages used."""
        users = [index for index, message in enumerate(self.sent) if message.role == "user"]
        if users:
            self.sent[users[-1]] = ChatMessage("user", question)
        self.citations = citations or None

    @property
    def private_kinds(self) -> tuple[str, ...]:
        """The kinds of private data the session has held (empty while it never did): it then stays local."""
        return (self.session.private_kinds or ("private",)) if self.session.private else ()

    def headers(self) -> dict[str, str]:
        """The session's response headers."""
        return {SESSION_HEADER: self.session.id, TRIMMED_HEADER: str(self.trimmed)}

    def summary(self) -> dict[str, Any]:
        """The `session` field of a whole answer."""
        return {"id": self.session.id, "trimmed_messages": self.trimmed}

    def note_private(self, kinds: Iterable[str]) -> None:
        """This turn held private data: the session stays local from now on (kinds only, never the text)."""
        found = sorted(set(kinds))
        if found:
            self.session = self.store.mark_private(self.session.id, found)

    def record(
        self,
        text: str,
        runner: RouteRunner,
        finish_reason: str | None,
        *,
        partial: bool,
        calls: tuple[ToolCall, ...] = (),
    ) -> None:
        """Store the new messages and the answer (with its tool `calls`) and its record (once; later calls: no-op)."""
        if self.recorded:
            return
        self.recorded = True
        info, usage = runner.info, runner.usage
        facts = {
            "route": info.route,
            "reason": info.reason,
            "model": info.model,
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "completion_tokens": usage.completion_tokens if usage else None,
            "latency_ms": (time.perf_counter() - self.started) * 1000,
            "cost_usd": runner.cost_usd,
            "finish_reason": finish_reason,
            "partial": partial,
            "trimmed": self.trimmed,
            "citations": self.citations,
            "tool_calls": calls_json(calls) or None,
        }
        self.store.record_turn(self.session.id, self.sent, text, facts, self.trimmed)

    def record_answer(self, answer: ChatCompletion, runner: RouteRunner) -> None:
        """Store a whole answer (its first choice, with its tool calls)."""
        choice = answer.choices[0]
        calls = tuple(
            ToolCall(call.id, call.function.name, call.function.arguments) for call in choice.message.tool_calls or ()
        )
        self.record(choice.message.content or "", runner, choice.finish_reason, partial=False, calls=calls)

    async def recording(
        self, first: str, rest: AsyncGenerator[str, None], runner: RouteRunner
    ) -> AsyncGenerator[str, None]:
        """`rest` of a stream, storing the first choice's text when it ends (partial if the client left)."""
        parts: list[str] = []
        finish: list[str | None] = [None]
        calls: dict[int, list[str]] = {}  # index -> [id, name, arguments], put together from the deltas

        def note(payload: str) -> None:
            try:
                choices = json.loads(payload).get("choices") or []
            except (ValueError, AttributeError):
                return
            for choice in choices:
                if choice.get("index") == 0:
                    delta = choice.get("delta") or {}
                    parts.append(delta.get("content") or "")
                    for piece in delta.get("tool_calls") or ():
                        call = calls.setdefault(int(piece.get("index") or 0), ["", "", ""])
                        function = piece.get("function") or {}
                        call[0] += piece.get("id") or ""
                        call[1] += function.get("name") or ""
                        call[2] += function.get("arguments") or ""
                    finish[0] = choice.get("finish_reason") or finish[0]

        note(first)
        completed = False
        try:
            async with aclosing(rest):
                async for payload in rest:
                    note(payload)
                    yield payload
            completed = True
        finally:
            # Stored when the stream ended, however: a client that stopped it keeps what it saw, marked partial.
            if any(parts) or calls or completed:
                made = tuple(ToolCall(*calls[index]) for index in sorted(calls))
                self.record("".join(parts), runner, finish[0], partial=not completed or finish[0] is None, calls=made)


async def begin_turn(
    body: ChatCompletionRequest,
    *,
    session: Session,
    store: SessionStore,
    pool: ModelPool,
    cloud: CloudRegistry,
    defaults: RequestDefaults,
) -> tuple[SessionTurn, ChatCompletionRequest]:
    """The turn of `session` (the caller's, already looked up), and the request to run: the session's system
    prompt and fitted history, then the new messages."""
    stored = await asyncio.to_thread(store.messages, session.id)
    # A partial answer stays in the history: it is what the user saw before asking the next question.
    history = [m.as_chat() for m in stored if m.role in ("user", "assistant", "tool")]
    model = body.model.strip() if body.model and body.model.strip() else (session.model or defaults.model)
    new = [message for message in body.messages if message.role not in ("system", "developer")]
    own_system = [message for message in body.messages if message.role in ("system", "developer")]
    system = "\n\n".join(m.text(i) for i, m in enumerate(own_system)) if own_system else session.system_prompt
    new_chat = _not_stored(
        [ChatMessage(m.role, m.text(i), m.name, m.calls(), m.tool_call_id) for i, m in enumerate(new)], stored
    )
    count, budget = await _measure(model, body, pool, cloud, defaults)
    older, prompt_new = open_turn(history, new_chat)
    fitted, left_out = await asyncio.to_thread(fit_history, system, older, prompt_new, count, budget)
    messages = [ChatMessageIn.of(m) for m in fitted]  # tool calls and results of the new messages kept
    run_body = body.model_copy(update={"messages": messages, "model": model})
    turn = SessionTurn(store, session, list(new_chat), left_out)
    return turn, run_body


def open_turn(history: list[ChatMessage], new: list[ChatMessage]) -> tuple[list[ChatMessage], list[ChatMessage]]:
    """The history that may be trimmed, and what the prompt must keep: the new messages, and when they carry
    tool results, the stored turn holding the calls they answer (from its user message on). A result without
    its call is refused by cloud providers and meaningless to a model, so that turn is never trimmed away:
    if even it does not fit, the engine reports `context_length_exceeded`."""
    if not any(message.role == "tool" for message in new):
        return history, new
    starts = [index for index, message in enumerate(history) if message.role == "user"]
    cut = starts[-1] if starts else 0
    return history[:cut], [*history[cut:], *new]


def _not_stored(new: list[ChatMessage], stored: list[StoredMessage]) -> list[ChatMessage]:
    """`new` without what the session already holds: an assistant turn relaying calls whose ids are all
    stored (the answer the client just got, sent back as OpenAI's agent loop examples do) and a tool result
    for a call already answered. Kept, either would stand twice in the history and in the prompt."""
    called = {str(call["id"]) for m in stored for call in m.tool_calls or ()}
    answered = {m.tool_call_id for m in stored if m.role == "tool" and m.tool_call_id}
    kept = []
    for message in new:
        if message.role == "assistant" and message.tool_calls and {c.id for c in message.tool_calls} <= called:
            continue
        if message.role == "tool" and message.tool_call_id in answered:
            continue
        kept.append(message)
    return kept


async def _measure(
    model: str, body: ChatCompletionRequest, pool: ModelPool, cloud: CloudRegistry, defaults: RequestDefaults
) -> tuple[Callable[[list[ChatMessage]], int], int]:
    """How to count a prompt's tokens for `model`, and how many the prompt may use (the answer's share kept)."""
    requested = body.max_completion_tokens or body.max_tokens or defaults.sampling.max_tokens or 0
    cloud_id = cloud.resolve(model) if model.lower() != "auto" else None
    if cloud_id is not None:
        context = cloud.model(cloud_id).context_length or ASSUMED_CLOUD_CONTEXT

        def estimate(messages: list[ChatMessage]) -> int:
            calls = "".join(c.name + c.arguments for m in messages for c in m.tool_calls)
            return sum(estimate_tokens(m.content) + 4 for m in messages) + estimate_tokens(calls) + 3

        return estimate, context - (requested or context // ANSWER_SHARE)
    local = defaults.model if model.lower() == "auto" else model
    engine = await pool.get(local, reserve=False)
    template = body.to_request(defaults)

    def exact(messages: list[ChatMessage]) -> int:
        return engine.count_prompt_tokens_now(replace(template, messages=tuple(messages)))

    context = engine.context_length
    return exact, context - (requested or context // ANSWER_SHARE)
