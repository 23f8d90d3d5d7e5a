"""The Engine contract: what the server needs from anything that generates text, and the data it passes.

Both the local llama.cpp engine (`pensieve.engine`) and the cloud providers (`pensieve.cloud`) implement
`Engine`; the serving and routing layers above depend on this module only, never on an implementation.
Everything here is plain data, free of HTTP and of llama.cpp, so any process may import it.

Contract:
- `generate` is an async generator of GenerationChunk; the final chunk has finish_reason and usage.
- Errors a client caused (context too long, bad parameter) are raised before the first chunk.
- Closing the generator early (client disconnect) cancels the run within a token or two.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "ChatMessage",
    "Engine",
    "EngineStats",
    "FinishReason",
    "GenerationChunk",
    "GenerationRequest",
    "Role",
    "SamplingParams",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]

# Local engines end with stop or length; a cloud provider's own reasons (a content filter, a tool call) pass
# through unchanged, so a client sees why the provider stopped.
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "function_call"]
Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens; `temperature == 0` means greedy decoding."""

    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()
    logprobs: bool = False  # measure each sampled token's log-probability (has a per-token cost)
    top_logprobs: int = 0  # with logprobs: also report this many likeliest alternatives per token
    # OpenAI's response_format ({"type": "json_object"} or {"type": "json_schema", ...}); None = free text.
    # Local engines turn it into a grammar; cloud engines pass it on.
    response_format: dict[str, object] | None = None
    # A llama.cpp GBNF grammar the output must follow (llama-server's `grammar`); local engines only.
    grammar: str | None = None
    # The names of the fields above the client set itself (None: all of them count as set, e.g. in code).
    # A cloud call forwards only these: a provider applies its own defaults to the rest, and reasoning models
    # refuse sampling values they did not ask for. Local runs use every value, defaults included.
    client_set: frozenset[str] | None = None

    def chose(self, name: str) -> bool:
        """Whether the client set field `name` (always True when the set is unknown)."""
        return self.client_set is None or name in self.client_set


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant asked for: OpenAI's `tool_calls[i]` (arguments a JSON text)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call as streamed: the first piece of call `index` has its id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn with its content already flattened to text."""

    role: Role
    content: str
    name: str | None = None
    # An assistant turn's function calls (its content may then be empty), and for a `tool` turn the id of
    # the call it answers: kept so a cloud provider gets the history as sent and a local prompt can show it.
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """A chat (`messages`) or a raw completion (`prompt`) to run on one model."""

    model: str
    params: SamplingParams
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | tuple[int, ...] | None = None
    # Reuse the cached KV of a shared prompt prefix. llama.cpp's arithmetic differs slightly with how many
    # tokens a step holds, so a reused prefix can change a greedy answer; False computes the prompt in full.
    cache_prompt: bool = True
    # Speculative decoding by prompt lookup (local models): same output, faster when it copies from its input.
    speculative: bool = True
    # Whose cached prompts this request may reuse: requests of different callers (API keys) never share a
    # cached prefix, so `cached_tokens` (or a faster answer) cannot reveal another caller's prompt.
    cache_partition: str = ""
    # Measure the log-probability of the first this-many sampled tokens (cheap: a handful of softmaxes)
    # and hand them on in `GenerationChunk.confidence_logprobs`: what the burst controller judges an answer by.
    confidence_tokens: int = 0
    # Measure every prompt token's log-probability too (`echo` with `logprobs` on /v1/completions), with
    # params.top_logprobs alternatives each: the whole prompt is then computed (no cached prefix). Local only.
    score_prompt: bool = False
    # OpenAI's `tools` (each {"type": "function", "function": {name, description, parameters}}), `tool_choice`
    # ("auto", "none", "required" or {"type": "function", "function": {"name": ...}}) and `parallel_tool_calls`
    # (None: not set by the client). A cloud engine forwards them; the local one renders them into the prompt.
    tools: tuple[dict[str, object], ...] = ()
    tool_choice: str | dict[str, object] | None = None
    parallel_tool_calls: bool | None = None

    @property
    def is_chat(self) -> bool:
        """True for chat requests, which need the model's chat template."""
        return self.messages is not None


@dataclass(frozen=True)
class Usage:
    """Token counts as OpenAI reports them."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose KV came from the prompt cache (OpenAI's cached_tokens)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token with its log-probability and the likeliest alternatives (OpenAI's logprobs)."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class GenerationChunk:
    """A piece of generated text; the last chunk of a run carries finish_reason and usage."""

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    mean_logprob: float | None = None  # on the last chunk, when SamplingParams.logprobs asked for it
    logprobs: tuple[TokenLogprob, ...] = ()  # the tokens behind this chunk's text, when logprobs were asked for
    # The sampled tokens' log-probabilities measured for GenerationRequest.confidence_tokens since the last
    # chunk (tokens a stop sequence holds back come with a later chunk; the last chunk brings the rest).
    confidence_logprobs: tuple[float, ...] = ()
    # With GenerationRequest.score_prompt, on the run's first chunk: one entry per prompt token. The first
    # token has no context to be predicted from: its entry's logprob (0.0) means nothing and it has no `top`.
    prompt_logprobs: tuple[TokenLogprob, ...] = ()
    # Pieces of function calls (a cloud provider's streamed `tool_calls` deltas); local engines send text only.
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass
class EngineStats:
    """Load signals an engine publishes (queue depth, busy, speed); the burst controller reads them."""

    model: str
    queue_depth: int = 0
    busy: bool = False
    requests_served: int = 0
    tokens_generated: int = 0
    recent_tokens_per_second: float | None = None
    recent_service_seconds: float | None = None
    busy_sequences: int = 0  # requests decoding now (continuous batching runs several at once)
    parallel: int = 1  # sequences the engine decodes together at most
    estimated_wait_seconds: float = 0.0  # how long a new request would wait before it starts
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Engine(Protocol):
    """A loaded model that can generate text."""

    @property
    def model_id(self) -> str:
        """The id clients use for this model."""
        ...

    @property
    def context_length(self) -> int:
        """Tokens the model can attend to (prompt + completion)."""
        ...

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """Tokens the request's prompt takes once formatted, without generating anything."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """Stream the completion of `request`."""
        ...

    def stats(self) -> EngineStats:
        """Current load and speed figures."""
        ...

    async def close(self) -> None:
        """Stop accepting work and free the model's memory."""
        ...
