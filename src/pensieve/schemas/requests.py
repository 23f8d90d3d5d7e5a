"""Request bodies of the OpenAI endpoints, named and shaped as OpenAI's API reference has them.

Models are strict (a string where a number belongs is a 400, not silently coerced) and ignore unknown
fields, because SDKs and frameworks add vendor extras (llama-server's own fields with a meaning here are in
schemas/llamacpp.py). `to_request()` converts a body into the engine's GenerationRequest, filling unset
sampling values from the server's defaults and noting which ones the client set (a cloud call forwards
only those).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pensieve.config import Settings
from pensieve.engine_api import ChatMessage, GenerationRequest, SamplingParams
from pensieve.errors import InvalidRequestError, UnsupportedParameterError
from pensieve.schemas.llamacpp import LlamaCppFields, schema_format
from pensieve.schemas.messages import ChatMessageIn, StrictModel
from pensieve.schemas.tools import ToolFields
from pensieve.settings_sections import SamplingSettings
from pensieve.units import parse_duration_seconds

# OpenAI documents no cap; a bias per token of a whole vocabulary would be a denial of service.
MAX_LOGIT_BIAS = 1024
MAX_TOKEN_ID_DIGITS = 10
MAX_STOP_SEQUENCES = 16
MAX_CHOICES = 16
MAX_PROMPTS = 128  # prompts in one /v1/completions request (each is a separate run)
# Body fields that are SamplingParams fields of the same name (what `client_set` tracks).
_SAMPLING_FIELDS = frozenset(
    {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "seed",
     "stop", "logit_bias"}
)  # fmt: skip
_LIMIT_FIELDS = frozenset({"max_tokens", "max_completion_tokens", "n_predict"})


@dataclass(frozen=True)
class RequestDefaults:
    """What a request gets for what it leaves out: sampling values, the model, prompt-cache reuse."""

    sampling: SamplingSettings
    model: str
    cache_prompt: bool
    # What a request may ask for: tokens to generate in all (prompts x n x max_tokens); a request without
    # max_tokens counts the context window for each choice.
    max_request_tokens: int = 65536
    context_tokens: int = 4096
    file_context_tokens: int = 1024  # retrieved file passages a chat request may get
    speculative: bool = True  # prompt-lookup speculative decoding for requests that do not say

    @classmethod
    def of(cls, settings: Settings) -> RequestDefaults:
        """The defaults the server's settings give."""
        return cls(
            settings.sampling,
            settings.engine.default_model,
            settings.engine.cache_prompt,
            max_request_tokens=settings.server.max_request_tokens,
            context_tokens=settings.engine.n_ctx,
            file_context_tokens=settings.files.file_context_tokens,
            speculative=settings.engine.speculative,
        )


class StreamOptions(StrictModel):
    """Options for streamed responses."""

    include_usage: bool = False


class SamplingFields(StrictModel, LlamaCppFields):
    """Sampling parameters shared by chat and text completions (plus llama.cpp's top_k/min_p/repeat_penalty)."""

    model: str | None = Field(None, description="Model id; defaults to the server's default model.")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, description="Extension: keep the k most likely tokens (0 = off).")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="Extension: min-p sampling.")
    repeat_penalty: float | None = Field(None, gt=0.0, le=10.0, description="Extension: llama.cpp repeat penalty.")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    keep_alive: float | str | None = Field(
        None,
        description="Extension (as Ollama's): how long the local model stays loaded after this request, from now on: "
        "seconds or a duration such as '5m'; 0 = unload when done, -1 = never.",
    )

    cache_prompt: bool | None = Field(
        None,
        description="Extension (as llama.cpp's server): reuse the cached KV of a shared prompt prefix; false = "
        "compute the prompt in full, removing the commonest reason a greedy or seeded answer changes.",
    )

    speculative: bool | None = Field(
        None,
        description="Extension: draft tokens from the prompt and the answer so far (prompt lookup) and verify them "
        "in one step; the output is unchanged, copying from the input gets faster. false = off for this request; "
        "unset = the server's PENSIEVE_SPECULATIVE.",
    )

    @field_validator("keep_alive")
    @classmethod
    def _check_keep_alive(cls, value: float | str | None) -> float | None:
        return None if value is None else parse_duration_seconds(value)

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _check_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and len(value) > MAX_LOGIT_BIAS:
            raise ValueError(f"logit_bias may hold at most {MAX_LOGIT_BIAS} tokens, got {len(value)}")
        for token, bias in (value or {}).items():
            # ASCII digits only: str.isdigit() also accepts "²" and "١٢", which int() reads or refuses. Ten
            # digits at most keeps the id inside llama.cpp's 32-bit token type; the model checks its vocabulary.
            if not (token.isascii() and token.isdigit() and len(token) <= MAX_TOKEN_ID_DIGITS):
                raise ValueError(f"logit_bias keys must be token ids (0 to 9,999,999,999), got {token!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"logit_bias values must be between -100 and 100, got {bias}")
        return value

    def stop_sequences(self) -> tuple[str, ...]:
        """The stop sequences as a tuple without empty strings."""
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(stop for stop in stops if stop)

    def sampling(self, defaults: RequestDefaults, max_tokens: int | None) -> SamplingParams:
        """Engine sampling parameters: this request's values, else the server's defaults."""

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return SamplingParams(
            max_tokens=max_tokens,
            temperature=pick(self.temperature, defaults.sampling.temperature),
            top_p=pick(self.top_p, defaults.sampling.top_p),
            top_k=pick(self.top_k, defaults.sampling.top_k),
            min_p=pick(self.min_p, defaults.sampling.min_p),
            repeat_penalty=pick(self.repeat_penalty, defaults.sampling.repeat_penalty),
            presence_penalty=pick(self.presence_penalty, defaults.sampling.presence_penalty),
            frequency_penalty=pick(self.frequency_penalty, defaults.sampling.frequency_penalty),
            seed=self.seed,
            stop=self.stop_sequences(),
            logit_bias=tuple((int(token), bias) for token, bias in (self.logit_bias or {}).items()),
            client_set=self.client_set(),
        )

    def client_set(self) -> frozenset[str]:
        """The SamplingParams fields this body set itself (any of the token-limit fields sets max_tokens)."""
        given = self.model_fields_set
        return frozenset(given & _SAMPLING_FIELDS) | ({"max_tokens"} if given & _LIMIT_FIELDS else frozenset())

    def model_id(self, defaults: RequestDefaults) -> str:
        """The requested model, or the default one."""
        return self.model.strip() if self.model and self.model.strip() else defaults.model

    def reuses_cached_prompt(self, defaults: RequestDefaults) -> bool:
        """Whether a cached prompt prefix may be reused: this request's cache_prompt, else the server's."""
        return defaults.cache_prompt if self.cache_prompt is None else self.cache_prompt

    def speculates(self, defaults: RequestDefaults) -> bool:
        """Whether speculative decoding may run: this request's `speculative`, else the server's setting."""
        return defaults.speculative if self.speculative is None else self.speculative

    @property
    def keep_alive_seconds(self) -> float | None:
        """The requested keep-alive in seconds (-1 = forever), or None when the request sets none."""
        return None if self.keep_alive is None else parse_duration_seconds(self.keep_alive)

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class JsonSchemaSpec(BaseModel):
    """`response_format.json_schema`: a named JSON Schema the answer must follow."""

    model_config = ConfigDict(extra="allow")
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(StrictModel):
    """`response_format`: free text, any JSON object, or JSON following a schema (enforced by a grammar).

    `schema` beside `type: json_object` is llama-server's way of giving a schema: it becomes OpenAI's json_schema.
    """

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="Extension (llama.cpp), with json_object.")

    def as_dict(self) -> dict[str, object] | None:
        """The OpenAI-shaped value the engines take (None for text)."""
        if self.type == "text":
            return None
        if self.type == "json_schema":
            if self.json_schema is None:
                raise InvalidRequestError(
                    "response_format type 'json_schema' needs a json_schema object.", param="response_format"
                )
            return {"type": "json_schema", "json_schema": self.json_schema.model_dump(by_alias=True, exclude_none=True)}
        return schema_format(self.schema_) if self.schema_ is not None else {"type": self.type}


class ChatCompletionRequest(SamplingFields, ToolFields):
    """Body of POST /v1/chat/completions."""

    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    session_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Extension: a session (POST /api/sessions) whose history the server adds; send only the new "
        "message. The X-Pensieve-Session header does the same.",
    )
    file_ids: list[str] | None = Field(
        None,
        max_length=20,
        description="Extension: uploaded files (POST /api/files or /v1/files) whose passages that best match the "
        "last user message go into the prompt; the response cites them.",
    )

    def to_request(self, defaults: RequestDefaults) -> GenerationRequest:
        """The engine request; refuses features this server does not offer yet."""
        self._refuse_unsupported()
        messages = tuple(
            ChatMessage(
                role=message.role,
                content=message.text(index),
                name=message.name,
                tool_calls=message.calls(),
                tool_call_id=message.tool_call_id if message.role == "tool" else None,
            )
            for index, message in enumerate(self.messages)
        )
        limit = self.max_completion_tokens or self.max_tokens
        max_tokens = self.token_limit(limit, max_tokens_set=limit is not None)
        response_format, grammar = self.constraint(self.response_format.as_dict() if self.response_format else None)
        params = replace(
            self.sampling(defaults, max_tokens),
            logprobs=bool(self.logprobs),
            top_logprobs=self.top_logprobs or 0,
            response_format=response_format,
            grammar=grammar,
        )
        return GenerationRequest(
            model=self.model_id(defaults),
            params=params,
            messages=messages,
            cache_prompt=self.reuses_cached_prompt(defaults),
            speculative=self.speculates(defaults),
            **self.tool_fields(),
        )

    def _refuse_unsupported(self) -> None:
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequestError("top_logprobs needs logprobs set to true.", param="top_logprobs")


class CompletionRequest(SamplingFields):
    """Body of POST /v1/completions (legacy text completions)."""

    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, a list of texts, token ids, or a list of token-id lists."
    )
    max_tokens: int | None = Field(
        16, ge=0, description="OpenAI's default for this endpoint is 16; 0 with echo and logprobs scores the prompt."
    )
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)
    logprobs: int | None = Field(None, ge=0, le=5)

    def prompts(self) -> list[str | tuple[int, ...]]:
        """Each prompt of the request (a batch gives several)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if not prompt:
            raise InvalidRequestError("The prompt must not be an empty list.", param="prompt")
        if len(prompt) > MAX_PROMPTS and not all(isinstance(item, int) for item in prompt):
            raise InvalidRequestError(
                f"At most {MAX_PROMPTS} prompts per request; this one has {len(prompt)}.", param="prompt"
            )
        if all(isinstance(item, str) for item in prompt):
            return [str(item) for item in prompt]
        if all(isinstance(item, int) for item in prompt):
            return [tuple(int(item) for item in prompt)]  # type: ignore[arg-type]
        return [tuple(item) for item in prompt if isinstance(item, list)]

    def to_requests(self, defaults: RequestDefaults) -> list[GenerationRequest]:
        """One engine request per prompt."""
        if self.suffix:
            raise UnsupportedParameterError("suffix (fill-in-the-middle) is not supported.", param="suffix")
        if self.best_of is not None and self.best_of != self.n:
            raise UnsupportedParameterError("best_of must equal n.", param="best_of")
        max_tokens = self.token_limit(self.max_tokens, max_tokens_set="max_tokens" in self.model_fields_set)
        response_format, grammar = self.constraint(None)
        params = replace(self.sampling(defaults, max_tokens), response_format=response_format, grammar=grammar)
        if self.logprobs is not None:
            # The legacy API's `logprobs: n` asks for the sampled token's and the n likeliest ones.
            params = replace(params, logprobs=True, top_logprobs=self.logprobs)
        model, cache_prompt = self.model_id(defaults), self.reuses_cached_prompt(defaults)
        return [
            GenerationRequest(
                model=model,
                params=params,
                prompt=prompt,
                cache_prompt=cache_prompt,
                score_prompt=self.scores_prompt,
                speculative=self.speculates(defaults),
            )
            for prompt in self.prompts()
        ]

    @property
    def scores_prompt(self) -> bool:
        """`echo` with `logprobs`: the prompt's tokens get log-probabilities too (lm-evaluation-harness's
        loglikelihood requests; with max_tokens 0 nothing is generated). Only a local model can do it."""
        return self.echo and self.logprobs is not None


MAX_EMBEDDING_INPUTS = 2048


class EmbeddingRequest(StrictModel):
    """Body of POST /v1/embeddings."""

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text, a list of texts, token ids, or a list of token-id lists."
    )
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    def inputs(self) -> list[str | tuple[int, ...]]:
        """Each input to embed."""
        value = self.input
        if isinstance(value, str):
            items: list[str | tuple[int, ...]] = [value]
        elif not value:
            raise InvalidRequestError("The input must not be an empty list.", param="input")
        elif all(isinstance(item, str) for item in value):
            items = [str(item) for item in value]
        elif all(isinstance(item, int) for item in value):
            items = [tuple(int(item) for item in value)]  # type: ignore[arg-type]
        else:
            items = [tuple(item) for item in value if isinstance(item, list)]
        if len(items) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequestError(f"At most {MAX_EMBEDDING_INPUTS} inputs per request.", param="input")
        empty = next((index for index, item in enumerate(items) if not item), None)
        if empty is not None:  # as OpenAI does: an empty text has no meaning to embed
            where = "The input" if len(items) == 1 else f"Input {empty}"
            raise InvalidRequestError(f"{where} is empty; every input needs at least one token.", param="input")
        if self.dimensions is not None:
            raise UnsupportedParameterError(
                "dimensions is not supported: local models return their native embedding size.", param="dimensions"
            )
        return items
