"""The sections of Pensieve's settings: one pydantic model per concern, each field one `PENSIEVE_*` key.

A field's key is `PENSIEVE_` + its section's `env_prefix` + its name (`BurstSettings.load` is
`PENSIEVE_BURST_LOAD`), so the keys users write in `.env` read the same as before the settings were cut
into sections. Fields read only at start-up carry `RESTART` in their metadata; the admin view derives its
groups (the section titles) and its restart-only list from these declarations. `pensieve.config` composes
the sections and reads them from the environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pensieve.diagnostics.cpu_features import available_cores
from pensieve.units import parse_byte_size, parse_duration_seconds

DEFAULT_MODEL_ID = "gemma-3-270m-q4_k_m"
DEFAULT_UI_PORT = 8501
# Metadata of a field read once at start-up (socket, folders, loaded models): a change waits for a restart.
RESTART: dict[str, Any] = {"restart_required": True}

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]
ChatFormat = Literal["auto", "template", "gemma", "chatml", "phi3", "dialogue"]


def _empty_is_none(value: Any) -> Any:
    """`.env` lines like `PENSIEVE_CLOUD_API_KEY=` mean "not set"."""
    return None if isinstance(value, str) and not value.strip() else value


def _split_list(value: Any) -> Any:
    """Accept "a,b" as well as a JSON list, because .env users write comma lists."""
    if isinstance(value, str):
        if value.strip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _json_object(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


class Section(BaseModel):
    """A group of settings; subclasses name their title and the prefix of their keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    title: ClassVar[str]
    env_prefix: ClassVar[str] = ""


class ServerSettings(Section):
    """The HTTP server: where it listens, who may call it, how it logs."""

    title: ClassVar[str] = "Server"

    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to bind; 0.0.0.0 exposes the server to the network.",
        json_schema_extra=RESTART,
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the HTTP API.", json_schema_extra=RESTART)
    api_key: SecretStr | None = Field(
        None,
        description="Inference key: when set (or API_KEYS), /v1 and the read-only /api routes need "
        "'Authorization: Bearer <key>'.",
        json_schema_extra=RESTART,
    )
    api_keys: SecretStr | None = Field(
        None,
        description="More inference keys, comma-separated (one per app or user: each has its own rate limits "
        "and prompt cache).",
        json_schema_extra=RESTART,
    )
    admin_key: SecretStr | None = Field(
        None,
        description="Key for settings, model load/unload/install and circuit resets (it also works as an "
        "inference key). Unset: those answer only same-origin requests from this machine.",
        json_schema_extra=RESTART,
    )
    insecure_no_auth: bool = Field(
        False, description="Serve on a non-loopback address without an API key.", json_schema_extra=RESTART
    )
    rate_limit_requests_per_minute: int = Field(0, ge=0, description="Requests per minute per key; 0 = no limit.")
    rate_limit_tokens_per_minute: int = Field(
        0,
        ge=0,
        description="Tokens per minute per key (or per address), counted as OpenAI does when a request is "
        "admitted: its estimated prompt tokens plus max_tokens for each choice; 0 = no limit.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the server answers besides IP addresses and localhost (e.g. pensieve.lan, "
        ".example.com for a domain, * for any); others get 403 (DNS-rebinding defence).",
        json_schema_extra=RESTART,
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS); empty = none.",
        json_schema_extra=RESTART,
    )
    max_request_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones get HTTP 413.",
        json_schema_extra=RESTART,
    )
    max_request_tokens: int = Field(
        65536,
        ge=1,
        description="Most tokens one generation request may ask for: prompts x n x max_tokens (a request "
        "without max_tokens counts the context window); larger ones get HTTP 400.",
    )
    request_timeout_seconds: float = Field(
        600.0,
        ge=0,
        description="Deadline of a generation request, queue wait included: then it is stopped (HTTP 504, or an "
        "error event ending the stream); 0 = none.",
    )
    shutdown_timeout: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM or Ctrl-C, seconds running requests may take to finish (new ones get 503); then "
        "they are stopped and the server exits.",
        json_schema_extra=RESTART,
    )
    log_dir: Path = Field(Path("logs"), description="Folder for log files.", json_schema_extra=RESTART)
    log_level: LogLevel = Field(
        "info", description="critical, error, warning, info or debug.", json_schema_extra=RESTART
    )
    log_format: LogFormat = Field(
        "text", description="Log lines as readable text, or one JSON object per line (json).", json_schema_extra=RESTART
    )

    @field_validator("host", mode="before")
    @classmethod
    def _strip_host(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lowercase_log_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    _api_key = field_validator("api_key", "api_keys", "admin_key", mode="before")(_empty_is_none)

    def inference_keys(self) -> list[str]:
        """Every inference key in clear: API_KEY, then each of API_KEYS."""
        keys = [self.api_key.get_secret_value()] if self.api_key is not None else []
        if self.api_keys is not None:
            keys += [key.strip() for key in self.api_keys.get_secret_value().split(",") if key.strip()]
        return keys

    _cors = field_validator("cors_origins", "allowed_hosts", mode="before")(_split_list)


class EngineSettings(Section):
    """The local llama.cpp engine: which models, how they load, batch, queue and stay in memory."""

    title: ClassVar[str] = "Local engine"

    models_dir: Path = Field(
        Path("models"), description="Folder scanned for *.gguf model files.", json_schema_extra=RESTART
    )
    default_model: str = Field(DEFAULT_MODEL_ID, description="Model id (file stem) used when none is loaded.")
    preload_default_model: bool = Field(
        True, description="Load the default model at start-up.", json_schema_extra=RESTART
    )
    n_threads: int = Field(
        0, ge=0, le=512, description="Threads for generation; 0 = number of CPU cores.", json_schema_extra=RESTART
    )
    n_threads_batch: int = Field(
        0, ge=0, le=512, description="Threads for prompt processing; 0 = n_threads.", json_schema_extra=RESTART
    )
    n_ctx: int = Field(
        4096,
        ge=0,
        le=1_048_576,
        description="Context window in tokens; 0 = the model's trained context.",
        json_schema_extra=RESTART,
    )
    n_batch: int = Field(
        512, ge=16, le=65536, description="Prompt tokens evaluated per llama_decode call.", json_schema_extra=RESTART
    )
    parallel: int = Field(
        0,
        ge=0,
        le=256,
        description="Requests decoded together per model (continuous batching); 0 = auto (see docs/engine.md).",
    )
    kv_cache_tokens: int = Field(
        0, ge=0, description="KV cache cells shared by a model's sequences; 0 = n_ctx x min(parallel, 4)."
    )
    max_queue: int = Field(
        64, ge=0, description="Requests that may wait per model beyond the running ones; more get HTTP 429."
    )
    chat_format: ChatFormat = Field(
        "auto",
        description="auto, template, gemma, chatml, phi3 or dialogue; auto picks per model (see docs/engine.md).",
        json_schema_extra=RESTART,
    )
    max_loaded_models: int = Field(
        2,
        ge=0,
        description="Models kept loaded at once; one more unloads the least recently used idle one. 0 = no limit.",
    )
    memory_limit: int = Field(
        0, ge=0, description="Estimated memory all loaded models may use, in bytes or e.g. 8GB, 512MiB; 0 = no limit."
    )
    cache_prompt: bool = Field(
        True,
        description="Reuse the cached KV of a shared prompt prefix (a request's cache_prompt wins); off = every "
        "prompt is computed in full (a reused prefix is the commonest reason a greedy answer changes; "
        "see docs/engine.md).",
    )
    keep_alive: float = Field(
        300.0,
        ge=-1,
        description="Seconds an idle model stays loaded (or 5m, 1h); 0 = unload after each request, -1 = never.",
    )

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _parse_memory_limit(cls, value: Any) -> Any:
        # "8GB" and "512MiB" are what people write; the parser's message says which forms work.
        return parse_byte_size(value) if isinstance(value, str) else value

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _parse_keep_alive(cls, value: Any) -> Any:
        return parse_duration_seconds(value) if isinstance(value, str | int | float) else value

    @property
    def resolved_n_threads(self) -> int:
        """Generation threads: the setting, or every CPU core llama.cpp may use."""
        return self.n_threads or available_cores()

    @property
    def resolved_parallel(self) -> int:
        """Sequences per model: the setting, or 8 per core between 4 and 16.

        Batched decoding on a CPU gains little at a few sequences and most at 8-16 (memory bandwidth is
        shared); more sequences mostly add latency to each. The figures: bench/README.md, bench_batching.py.
        """
        return self.parallel or max(4, min(16, 8 * available_cores()))

    @property
    def resolved_n_threads_batch(self) -> int:
        """Prompt-processing threads: the setting, or the generation threads."""
        return self.n_threads_batch or self.resolved_n_threads


class SamplingSettings(Section):
    """Sampling defaults for requests that do not set their own (a request's own values win)."""

    title: ClassVar[str] = "Sampling"
    env_prefix: ClassVar[str] = "default_"

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, gt=0.0, le=10.0)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    max_tokens: int = Field(
        0, ge=0, description="Token limit when a request sets none; 0 = whatever fits in the context."
    )


class CloudSettings(Section):
    """The cloud provider of the common case: one OpenAI-compatible endpoint (more in the providers file)."""

    title: ClassVar[str] = "Cloud"
    env_prefix: ClassVar[str] = "cloud_"

    name: str = Field(
        "cloud", pattern=r"^[a-z0-9_-]+$", description="Provider name; its models appear as '<name>/<model>'."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. https://api.openai.com/v1.")
    api_key: SecretStr | None = Field(None, description="The provider's API key (never logged or returned).")
    model: str | None = Field(None, description="Model id at the provider, e.g. gpt-4o-mini.")
    price_input: float = Field(0.0, ge=0.0, description="USD per million prompt tokens.")
    price_output: float = Field(0.0, ge=0.0, description="USD per million completion tokens.")
    timeout_seconds: float = Field(60.0, gt=0.0, description="Whole-request timeout for cloud calls.")
    first_token_timeout_seconds: float = Field(
        20.0, gt=0.0, description="A cloud stream that sends nothing for this long counts as failed."
    )
    providers_file: Path | None = Field(None, description="Optional TOML file declaring more providers.")
    circuit_failures: int = Field(3, ge=1, description="Consecutive cloud failures that open the circuit.")
    circuit_cooldown_seconds: float = Field(
        30.0, gt=0.0, description="Seconds an open circuit waits before one probe request."
    )

    _optional = field_validator("api_key", "base_url", "model", "providers_file", mode="before")(_empty_is_none)


class BurstSettings(Section):
    """The burst criteria: when a request goes to the cloud (docs/routing.md)."""

    title: ClassVar[str] = "Burst"
    env_prefix: ClassVar[str] = "burst_"

    default_route: Literal["local", "cloud"] = Field(
        "local", description="Route when no criterion decides; 'cloud' bursts whenever budget and privacy allow."
    )
    explicit: bool = Field(True, description="Honour the model / X-Pensieve-Route header asking for cloud.")
    context: bool = Field(True, description="Send prompts that do not fit the local context to the cloud.")
    load: bool = Field(True, description="Burst when the local estimated wait exceeds the limit below.")
    max_local_wait_ms: float = Field(10_000.0, ge=0.0, description="Local wait (ms) above which to burst.")
    local_failure: bool = Field(True, description="Retry on the cloud when the local model fails.")
    cloud_failure: bool = Field(True, description="Fall back to the local model when the cloud fails.")
    pinned_local_fallback: bool = Field(
        True, description="Let context and local-failure move a request naming a local model to the cloud."
    )
    complexity: bool = Field(True, description="Burst prompts whose complexity score reaches the threshold.")
    complexity_threshold: float = Field(0.6, ge=0.0, le=1.0)
    complexity_weights: dict[str, float] = Field(
        default_factory=dict, description="JSON object overriding weights of length, code, math, reasoning."
    )
    confidence: bool = Field(False, description="Cascade: re-ask the cloud when the local answer is unsure.")
    confidence_threshold: float = Field(
        -1.0, le=0.0, description="Mean token log-probability below which a local answer counts as unsure."
    )
    budget: bool = Field(True, description="Enforce the cloud spend caps (PENSIEVE_BUDGET_*).")
    circuit: bool = Field(True, description="Keep requests local while a provider's circuit is open.")

    _weights = field_validator("complexity_weights", mode="before")(_json_object)


class BudgetSettings(Section):
    """The cloud spend caps the budget criterion enforces."""

    title: ClassVar[str] = "Budget"
    env_prefix: ClassVar[str] = "budget_"

    daily_usd: float | None = Field(5.0, ge=0.0, description="Daily cloud spend cap in USD; empty = none.")
    monthly_usd: float | None = Field(50.0, ge=0.0, description="Monthly cap in USD; empty = none.")

    _optional = field_validator("daily_usd", "monthly_usd", mode="before")(_empty_is_none)


class PrivacySettings(Section):
    """What counts as private data, and what happens to a request that holds some."""

    title: ClassVar[str] = "Privacy"
    env_prefix: ClassVar[str] = "privacy_"

    mode: Literal["block", "redact", "off"] = Field(
        "block", description="block: private data never leaves; redact: masked before cloud; off: no check."
    )
    detectors: list[str] = Field(
        default_factory=lambda: ["all"], description="Comma list of built-in detectors, or 'all'."
    )
    patterns: dict[str, str] = Field(
        default_factory=dict, description='JSON object of extra detectors: {"name": "regex"}.'
    )
    keywords: list[str] = Field(default_factory=list, description="Comma list of words that mark a request private.")

    _lists = field_validator("detectors", "keywords", mode="before")(_split_list)
    _patterns = field_validator("patterns", mode="before")(_json_object)


class PersistenceSettings(Section):
    """What the server keeps on disk between runs (the spend ledger today)."""

    title: ClassVar[str] = "Persistence"

    data_dir: Path = Field(
        Path("data"), description="Folder for uploads and persistent state.", json_schema_extra=RESTART
    )


class WebUISettings(Section):
    """The Streamlit UI: where it listens and where it finds the server. Read by the UI process at its start."""

    title: ClassVar[str] = "Web UI"

    server_url: str | None = Field(
        None,
        description="Full server URL the UI calls; overrides PENSIEVE_HOST and PENSIEVE_PORT.",
        json_schema_extra=RESTART,
    )
    ui_host: str = Field("127.0.0.1", description="Address the UI binds.", json_schema_extra=RESTART)
    ui_port: int = Field(DEFAULT_UI_PORT, ge=1, le=65535, description="Port of the UI.", json_schema_extra=RESTART)
    ui_refresh_seconds: float = Field(
        5.0, ge=1.0, le=3600.0, description="Monitoring page refresh interval.", json_schema_extra=RESTART
    )

    _server_url = field_validator("server_url", mode="before")(_empty_is_none)
