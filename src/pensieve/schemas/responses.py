"""Response bodies of the OpenAI endpoints, field for field as OpenAI returns them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from pensieve.engine_api import FinishReason, TokenLogprob, ToolCall, ToolCallDelta, Usage

SYSTEM_FINGERPRINT = "pensieve"


def new_id(prefix: str) -> str:
    """An OpenAI-style object id such as chatcmpl-1f3a..."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    """Unix time in seconds, as OpenAI's `created` field."""
    return int(time.time())


class PromptTokensDetails(BaseModel):
    """How the prompt tokens were served."""

    cached_tokens: int = 0  # reused from the prompt cache instead of computed


class UsageOut(BaseModel):
    """Token counts of a response."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails

    @classmethod
    def of(cls, usage: Usage) -> UsageOut:
        """Convert the engine's Usage."""
        return cls(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
        )


class TopLogprob(BaseModel):
    """One of the likeliest tokens at a position."""

    token: str
    logprob: float
    bytes: list[int] | None


class ContentLogprob(TopLogprob):
    """A generated token with its log-probability and the likeliest alternatives."""

    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """`logprobs` of a chat choice (or of a streamed chunk's choice)."""

    content: list[ContentLogprob] | None
    refusal: None = None

    @classmethod
    def of(cls, tokens: Sequence[TokenLogprob]) -> ChoiceLogprobs:
        """Convert the engine's per-token log-probabilities."""
        return cls(
            content=[
                ContentLogprob(
                    token=t.token,
                    logprob=t.logprob,
                    bytes=list(t.bytes),
                    top_logprobs=[TopLogprob(token=a, logprob=lp, bytes=list(b)) for a, lp, b in t.top],
                )
                for t in tokens
            ]
        )


class CompletionLogprobs(BaseModel):
    """`logprobs` of a legacy text-completion choice.

    With `echo`, the prompt's tokens come first; the first of them has nothing before it to be predicted
    from, so its `token_logprobs` and `top_logprobs` entries are null (as OpenAI's legacy API had them).
    """

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]

    @classmethod
    def of(
        cls, tokens: Sequence[TokenLogprob], offset: int = 0, prompt: Sequence[TokenLogprob] = ()
    ) -> CompletionLogprobs:
        """Convert the engine's per-token log-probabilities; `offset` is where the generated text starts.

        `prompt`: the scored prompt's tokens (its first entry unscored), placed before the generated ones
        and offset from 0.
        """
        offsets = []
        at = 0
        for token in prompt:
            offsets.append(at)
            at += len(token.token)
        for token in tokens:
            offsets.append(offset)
            offset += len(token.token)
        logprobs: list[float | None] = [t.logprob for t in (*prompt, *tokens)]
        top: list[dict[str, float] | None] = [{alt: lp for alt, lp, _ in t.top} for t in (*prompt, *tokens)]
        if prompt:
            logprobs[0] = top[0] = None
        return cls(
            tokens=[t.token for t in (*prompt, *tokens)], token_logprobs=logprobs, top_logprobs=top, text_offset=offsets
        )


class FunctionOut(BaseModel):
    """The function of a tool call: its name and its arguments as a JSON text."""

    name: str
    arguments: str


class ToolCallOut(BaseModel):
    """One tool call of an assistant message."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionOut

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallOut:
        """Convert the engine's ToolCall."""
        return cls(id=call.id, function=FunctionOut(name=call.name, arguments=call.arguments))


class AssistantMessage(BaseModel):
    """The generated message of a chat choice (content null when it only calls tools)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCallOut] | None = None

    @model_serializer(mode="wrap")
    def _drop_no_calls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # OpenAI leaves tool_calls out of a message that calls nothing.
        return {key: value for key, value in handler(self).items() if key != "tool_calls" or value is not None}


class ChatChoice(BaseModel):
    """One choice of a chat completion."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    """Response of POST /v1/chat/completions."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    system_fingerprint: str = SYSTEM_FINGERPRINT


class FunctionDelta(BaseModel):
    """A piece of a streamed tool call's function: the name comes once, the arguments in pieces."""

    name: str | None = None
    arguments: str = ""

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class ToolCallChunk(BaseModel):
    """A piece of a streamed tool call: the first piece of call `index` has its id, type and name."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}

    @classmethod
    def of(cls, delta: ToolCallDelta) -> ToolCallChunk:
        """Convert the engine's ToolCallDelta."""
        return cls(
            index=delta.index,
            id=delta.id,
            type="function" if delta.id else None,
            function=FunctionDelta(name=delta.name, arguments=delta.arguments),
        )


class ChunkDelta(BaseModel):
    """The increment carried by one streamed chat chunk; unset fields are left out, as OpenAI does."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallChunk] | None = None

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class ChunkChoice(BaseModel):
    """One choice of a streamed chat chunk."""

    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageOut | None = None
    system_fingerprint: str = SYSTEM_FINGERPRINT


class CompletionChoice(BaseModel):
    """One choice of a text completion (also used for streamed chunks)."""

    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    """Response (and streamed chunk) of POST /v1/completions."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut | None = None
    system_fingerprint: str = SYSTEM_FINGERPRINT


class ModelCard(BaseModel):
    """One entry of GET /v1/models, with Pensieve's details beside OpenAI's four fields."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "local"
    details: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    """Response of GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class Embedding(BaseModel):
    """One vector of an embeddings response (a base64 string of little-endian float32 when asked for)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Token counts of an embeddings request."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """Response of POST /v1/embeddings."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
