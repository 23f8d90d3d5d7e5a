"""CloudEngine: one model at an OpenAI-compatible provider behind the same Engine protocol as local models.

Calls go through the official `openai` SDK (async), always streamed from the provider, even when the
client did not ask for a stream: the first-token timeout and client disconnects then work the same
way for both. The SDK's own retries are off: a failed call is a signal for the burst controller (fall
back to local, count a failure in the circuit breaker), not something to hammer a struggling provider
with. Foreign exceptions are translated here into CloudError (`retryable` tells whether another route
may be tried); the API key never appears in a message or a log line. Logprobs asked for are requested
from the provider and passed through with each piece of text.

Faithful pass-through: only the sampling fields the client set are forwarded (the provider's defaults
apply to the rest; reasoning models refuse a temperature they did not ask for), and the provider's
finish_reason (content_filter, tool_calls...) reaches the client as it was. A stream that ends without a
finish_reason (the connection closed cleanly but early, a proxy cut it) is not a complete answer: it is a
CloudError (`cloud_stream_incomplete`, 502) and a failure in the circuit breaker, retryable while
nothing had been received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import openai

from pensieve.cloud.circuit import CircuitBreaker
from pensieve.cloud.payload import chat_message, logprob_params, sampling_params, tool_deltas, tool_params
from pensieve.cloud.providers import CloudModel, ProviderConfig
from pensieve.engine_api import (
    EngineStats,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    TokenLogprob,
    Usage,
)
from pensieve.errors import CloudError, CloudUnavailableError, InvalidRequestError, UnsupportedParameterError

logger = logging.getLogger(__name__)

# Used when a provider does not report usage: ~4 characters per token for English text.
_CHARS_PER_TOKEN = 4
_CONNECT_TIMEOUT_SECONDS = 10.0
# The longest a provider's Retry-After may keep its circuit open; past that, the circuit's own probe decides.
MAX_RETRY_AFTER_SECONDS = 3600.0


def estimate_tokens(text: str) -> int:
    """A provider-independent token estimate for text whose exact count is unknown."""
    return max(1, math.ceil(len(text) / _CHARS_PER_TOKEN)) if text else 0


def _token_bytes(token: str, given: list[int] | None) -> tuple[int, ...]:
    return tuple(given) if given is not None else tuple(token.encode())


def _usage(reported: Any) -> Usage:
    """The provider's token counts, with its prompt-cache hits when it reports them."""
    details = getattr(reported, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return Usage(reported.prompt_tokens or 0, reported.completion_tokens or 0, int(cached))


def _chat_logprobs(choice: Any) -> tuple[TokenLogprob, ...]:
    """The tokens behind a chat chunk's text, from its `logprobs.content` (empty when the provider sent none)."""
    content = getattr(getattr(choice, "logprobs", None), "content", None) or ()
    return tuple(
        TokenLogprob(
            item.token,
            item.logprob,
            _token_bytes(item.token, item.bytes),
            tuple((top.token, top.logprob, _token_bytes(top.token, top.bytes)) for top in item.top_logprobs or ()),
        )
        for item in content
    )


def _completion_logprobs(choice: Any) -> tuple[TokenLogprob, ...]:
    """The tokens behind a text-completion chunk, from its legacy `logprobs` (parallel lists)."""
    logprobs = getattr(choice, "logprobs", None)
    tokens = getattr(logprobs, "tokens", None) or []
    values = getattr(logprobs, "token_logprobs", None) or []
    tops = getattr(logprobs, "top_logprobs", None) or []
    found = []
    for index, (token, value) in enumerate(zip(tokens, values, strict=False)):
        top = tops[index] if index < len(tops) and tops[index] else {}
        alternatives = tuple((text, float(lp), tuple(text.encode())) for text, lp in top.items())
        found.append(TokenLogprob(token, float(value or 0.0), tuple(token.encode()), alternatives))
    return tuple(found)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header, clamped to 0..MAX_RETRY_AFTER_SECONDS.

    The value comes from a provider (or whatever sits between us and it): "inf", "1e308", "nan" or a date
    must never open a circuit for a year or overflow later arithmetic. HTTP dates are rare here and ignored.
    """
    milliseconds = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    try:
        if milliseconds is not None:
            seconds = float(milliseconds) / 1000
        elif raw is not None:
            seconds = float(raw)
        else:
            return None
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_SECONDS)


def _finish_reason(reported: str) -> FinishReason:
    """The provider's finish_reason as it was; one outside OpenAI's list reads as `stop` (the answer ended)."""
    known: tuple[FinishReason, ...] = ("stop", "length", "content_filter", "tool_calls", "function_call")
    return next((reason for reason in known if reason == reported), "stop")


def _providerchat_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:500]
    return error.message[:500]


class CloudEngine:
    """Generates with one cloud model; counts outcomes in its provider's circuit breaker."""

    def __init__(self, provider: ProviderConfig, model: CloudModel, breaker: CircuitBreaker) -> None:
        self.provider = provider
        self.model = model
        self.breaker = breaker
        self._client = openai.AsyncOpenAI(
            base_url=provider.base_url,
            # Keyless endpoints (a local vLLM) still need a non-empty string for the SDK.
            api_key=provider.api_key.get_secret_value() if provider.api_key else "no-key",
            max_retries=0,
            timeout=openai.Timeout(
                provider.timeout_seconds, connect=min(_CONNECT_TIMEOUT_SECONDS, provider.timeout_seconds)
            ),
            default_headers=provider.headers or None,
            default_query=provider.query or None,
        )
        self._stats = EngineStats(model=self.model_id)
        self._active = 0

    @property
    def model_id(self) -> str:
        """`<provider>/<model>`."""
        return f"{self.provider.name}/{self.model.id}"

    @property
    def context_length(self) -> int:
        """The model's context window when declared, else 0 (unknown)."""
        return self.model.context_length or 0

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """An estimate: the provider's tokenizer is not available here (tool definitions and calls count too,
        as the JSON they travel as: the budget reserves for them)."""
        if request.messages is not None:
            tools = estimate_tokens(json.dumps(list(request.tools))) if request.tools else 0
            calls = sum(estimate_tokens(c.name + c.arguments) + 8 for m in request.messages for c in m.tool_calls)
            return sum(estimate_tokens(message.content) + 4 for message in request.messages) + 3 + tools + calls
        return estimate_tokens(request.prompt) if isinstance(request.prompt, str) else len(request.prompt or ())

    def stats(self) -> EngineStats:
        """Requests in flight and served, tokens generated."""
        self._stats.busy = self._active > 0
        self._stats.extra["in_flight"] = float(self._active)
        return self._stats

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()

    # --- generation -----------------------------------------------------------------------------

    async def _open_stream(self, request: GenerationRequest) -> Any:
        common: dict[str, Any] = {
            "model": request.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            **sampling_params(request),
            **logprob_params(request),
        }
        if request.messages is not None:
            messages = [chat_message(message) for message in request.messages]
            common.update(tool_params(request))
            return await self._client.chat.completions.create(messages=messages, **common)  # type: ignore[arg-type]
        return await self._client.completions.create(prompt=request.prompt, **common)

    def _failure(self, error: Exception, *, streamed: bool) -> CloudError:
        """Translate an SDK/transport error into a CloudError and count it in the circuit breaker."""
        name = self.provider.name
        if isinstance(error, openai.APIStatusError):
            status, message = error.status_code, _providerchat_message(error)
            if status in (400, 413, 422):
                # The provider rejected this request itself: not a sign of an unhealthy provider.
                self.breaker.release()
                return CloudError(
                    f"Cloud provider '{name}' rejected the request: {message}",
                    provider=name,
                    retryable=False,
                    status_code=400,
                    code="cloud_rejected_request",
                )
            retry_after = retry_after_seconds(error.response.headers) if status in (429, 503) else None
            self.breaker.record_failure(f"HTTP {status}", retry_after_seconds=retry_after)
            unavailable = CloudUnavailableError if status in (429, 503) else CloudError
            return unavailable(
                f"Cloud provider '{name}' answered HTTP {status}: {message}",
                provider=name,
                retry_after_seconds=retry_after,
            )
        if isinstance(error, asyncio.TimeoutError | openai.APITimeoutError):
            summary = "timed out"
        elif streamed:
            summary = "dropped the connection mid-stream"
        else:
            summary = "could not be reached"
        self.breaker.record_failure(summary)
        return CloudUnavailableError(f"Cloud provider '{name}' {summary}.", provider=name)

    def _incomplete(self, *, streamed: bool) -> CloudError:
        """The provider's stream ended without saying why (no finish_reason): a failure, not an answer."""
        summary = "ended its stream before the answer was complete"
        self.breaker.record_failure(summary)
        return CloudError(
            f"Cloud provider '{self.provider.name}' {summary} (no finish_reason).",
            provider=self.provider.name,
            # Before any text another route may still answer; after it, the client already has part of this one.
            retryable=not streamed,
            code="cloud_stream_incomplete",
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the completion from the provider; CloudError before or during the stream."""
        if request.messages is None and not isinstance(request.prompt, str):
            # Token ids belong to the local tokenizer; they mean nothing to a cloud model.
            raise InvalidRequestError("Token-id prompts can only run on local models.", param="prompt")
        if request.params.grammar is not None:
            # GBNF is llama.cpp's; no OpenAI-compatible API takes it (json_schema / response_format do travel).
            raise UnsupportedParameterError("A GBNF grammar can only be enforced by local models.", param="grammar")
        if not self.breaker.try_acquire():
            raise CloudUnavailableError(
                f"Cloud provider '{self.provider.name}' is failing; its circuit breaker is open.",
                provider=self.provider.name,
                retry_after_seconds=self.breaker.retry_in_seconds() or None,
            )
        self._active += 1
        started = time.monotonic()
        try:
            async for chunk in self._generate(request, started):
                yield chunk
        finally:
            self._active -= 1

    async def _generate(self, request: GenerationRequest, started: float) -> AsyncGenerator[GenerationChunk, None]:
        provider = self.provider
        deadline = started + provider.timeout_seconds
        first_deadline = started + min(provider.first_token_timeout_seconds, provider.timeout_seconds)
        text_parts: list[str] = []
        finish: FinishReason | None = None
        usage: Usage | None = None
        received_any = streamed = finished = False
        logprob_sum, logprob_count = 0.0, 0
        chat, want = request.messages is not None, request.params.logprobs
        stream: Any = None
        try:
            stream = await asyncio.wait_for(self._open_stream(request), timeout=first_deadline - time.monotonic())
            events: AsyncIterator[Any] = stream.__aiter__()
            while True:
                limit = (deadline if received_any else first_deadline) - time.monotonic()
                try:
                    event = await asyncio.wait_for(events.__anext__(), timeout=max(0.001, limit))
                except StopAsyncIteration:
                    break
                received_any = True
                if event.usage is not None:
                    usage = _usage(event.usage)
                for choice in event.choices:
                    piece = (choice.delta.content if hasattr(choice, "delta") else choice.text) or ""
                    if choice.finish_reason is not None:
                        finish = _finish_reason(choice.finish_reason)
                    calls = tool_deltas(choice) if chat else ()
                    if calls:
                        text_parts.extend(call.arguments for call in calls)  # counts toward the usage estimate
                        streamed = True
                        yield GenerationChunk("", tool_calls=calls)
                    if piece:
                        text_parts.append(piece)
                        streamed = True
                        tokens = (_chat_logprobs(choice) if chat else _completion_logprobs(choice)) if want else ()
                        logprob_sum += sum(token.logprob for token in tokens)
                        logprob_count += len(tokens)
                        yield GenerationChunk(piece, logprobs=tokens)
            if finish is None:
                raise self._incomplete(streamed=streamed)
            finished = True
        except (openai.APIError, asyncio.TimeoutError) as exc:
            raise self._failure(exc, streamed=streamed) from exc
        finally:
            if not finished:
                # Cancelled by the client (or failed): stop the provider's generation, free the probe slot.
                self.breaker.release()
            if stream is not None:
                await stream.close()
        self.breaker.record_success()
        text = "".join(text_parts)
        if usage is None:
            usage = Usage(await self.count_prompt_tokens(request), estimate_tokens(text))
        self._stats.requests_served += 1
        self._stats.tokens_generated += usage.completion_tokens
        elapsed = time.monotonic() - started
        self._stats.recent_service_seconds = elapsed
        self._stats.recent_tokens_per_second = usage.completion_tokens / elapsed if elapsed > 0 else None
        mean = logprob_sum / logprob_count if logprob_count else None
        yield GenerationChunk("", finish_reason=finish, usage=usage, mean_logprob=mean)
