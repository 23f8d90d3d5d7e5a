"""Pensieve's settings: one pydantic-settings tree read from CLI flags, `PENSIEVE_*` variables and `.env`.

Precedence, highest first: values passed to `Settings(...)` (the CLI flags), environment variables,
the `.env` file, the defaults below. Every key is documented in `.env.example`; keep the two in step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from pensieve.diagnostics.cpu_features import available_cores
from pensieve.units import parse_byte_size, parse_duration_seconds

ENV_PREFIX = "PENSIEVE_"
DEFAULT_MODEL_ID = "gemma-3-270m-q4_k_m"

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
ChatFormat = Literal["auto", "template", "gemma", "chatml", "phi3", "dialogue"]


class Settings(BaseSettings):
    """Every setting of the server, flat so that each maps to one `PENSIEVE_<NAME>` variable."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- Server -------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to bind; 0.0.0.0 exposes the server to the network.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the HTTP API.")
    api_key: SecretStr | None = Field(
        None, description="When set, every /v1 and /api request must send 'Authorization: Bearer <key>'."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS); empty = none."
    )
    max_request_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body accepted; larger ones get HTTP 413."
    )

    # --- Folders --------------------------------------------------------------------------------
    models_dir: Path = Field(Path("models"), description="Folder scanned for *.gguf model files.")
    data_dir: Path = Field(Path("data"), description="Folder for uploads and persistent state.")
    log_dir: Path = Field(Path("logs"), description="Folder for log files.")
    log_level: LogLevel = Field("info", description="critical, error, warning, info or debug.")

    # --- Local engine ---------------------------------------------------------------------------
    default_model: str = Field(DEFAULT_MODEL_ID, description="Model id (file stem) used when none is loaded.")
    preload_default_model: bool = Field(True, description="Load the default model at start-up.")
    n_threads: int = Field(0, ge=0, le=512, description="Threads for generation; 0 = number of CPU cores.")
    n_threads_batch: int = Field(0, ge=0, le=512, description="Threads for prompt processing; 0 = n_threads.")
    n_ctx: int = Field(
        4096, ge=0, le=1_048_576, description="Context window in tokens; 0 = the model's trained context."
    )
    n_batch: int = Field(512, ge=16, le=65536, description="Prompt tokens evaluated per llama_decode call.")
    parallel: int = Field(
        0, ge=0, le=256, description="Requests decoded together per model (continuous batching); 0 = auto (see README)."
    )
    kv_cache_tokens: int = Field(
        0, ge=0, description="KV cache cells shared by a model's sequences; 0 = n_ctx x min(parallel, 4)."
    )
    max_queue: int = Field(
        64, ge=0, description="Requests that may wait per model beyond the running ones; more get HTTP 429."
    )
    chat_format: ChatFormat = Field(
        "auto",
        description="auto, template, gemma, chatml, phi3 or dialogue; auto picks per model (see README).",
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
        "prompt is computed in full (a reused prefix is the commonest reason a greedy answer changes; see README).",
    )
    keep_alive: float = Field(
        300.0,
        ge=-1,
        description="Seconds an idle model stays loaded (or 5m, 1h); 0 = unload after each request, -1 = never.",
    )

    # --- Default sampling (a request's own values win) -------------------------------------------
    default_temperature: float = Field(0.7, ge=0.0, le=2.0)
    default_top_p: float = Field(0.95, gt=0.0, le=1.0)
    default_top_k: int = Field(40, ge=0)
    default_min_p: float = Field(0.05, ge=0.0, le=1.0)
    default_repeat_penalty: float = Field(1.1, gt=0.0, le=10.0)
    default_presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    default_frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    default_max_tokens: int = Field(
        0, ge=0, description="Token limit when a request sets none; 0 = whatever fits in the context."
    )

    # --- Cloud provider (the common case: one OpenAI-compatible endpoint) ---------------------------
    cloud_name: str = Field(
        "cloud", pattern=r"^[a-z0-9_-]+$", description="Provider name; its models appear as '<name>/<model>'."
    )
    cloud_base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. https://api.openai.com/v1.")
    cloud_api_key: SecretStr | None = Field(None, description="The provider's API key (never logged or returned).")
    cloud_model: str | None = Field(None, description="Model id at the provider, e.g. gpt-4o-mini.")
    cloud_price_input: float = Field(0.0, ge=0.0, description="USD per million prompt tokens.")
    cloud_price_output: float = Field(0.0, ge=0.0, description="USD per million completion tokens.")
    cloud_timeout_seconds: float = Field(60.0, gt=0.0, description="Whole-request timeout for cloud calls.")
    cloud_first_token_timeout_seconds: float = Field(
        20.0, gt=0.0, description="A cloud stream that sends nothing for this long counts as failed."
    )
    cloud_providers_file: Path | None = Field(None, description="Optional TOML file declaring more providers.")
    cloud_circuit_failures: int = Field(3, ge=1, description="Consecutive cloud failures that open the circuit.")
    cloud_circuit_cooldown_seconds: float = Field(
        30.0, gt=0.0, description="Seconds an open circuit waits before one probe request."
    )

    # --- Burst criteria (see README "Routing") ------------------------------------------------------
    burst_default_route: Literal["local", "cloud"] = Field(
        "local", description="Route when no criterion decides; 'cloud' bursts whenever budget and privacy allow."
    )
    burst_explicit: bool = Field(True, description="Honour the model / X-Pensieve-Route header asking for cloud.")
    burst_context: bool = Field(True, description="Send prompts that do not fit the local context to the cloud.")
    burst_load: bool = Field(True, description="Burst when the local estimated wait exceeds the limit below.")
    burst_max_local_wait_ms: float = Field(10_000.0, ge=0.0, description="Local wait (ms) above which to burst.")
    burst_local_failure: bool = Field(True, description="Retry on the cloud when the local model fails.")
    burst_cloud_failure: bool = Field(True, description="Fall back to the local model when the cloud fails.")
    burst_pinned_local_fallback: bool = Field(
        True, description="Let context and local-failure move a request naming a local model to the cloud."
    )
    burst_complexity: bool = Field(True, description="Burst prompts whose complexity score reaches the threshold.")
    burst_complexity_threshold: float = Field(0.6, ge=0.0, le=1.0)
    burst_complexity_weights: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="JSON object overriding weights of length, code, math, reasoning."
    )
    burst_confidence: bool = Field(False, description="Cascade: re-ask the cloud when the local answer is unsure.")
    burst_confidence_threshold: float = Field(
        -1.0, le=0.0, description="Mean token log-probability below which a local answer counts as unsure."
    )
    burst_budget: bool = Field(True, description="Enforce the cloud spend caps below.")
    budget_daily_usd: float | None = Field(5.0, ge=0.0, description="Daily cloud spend cap in USD; empty = none.")
    budget_monthly_usd: float | None = Field(50.0, ge=0.0, description="Monthly cap in USD; empty = none.")
    burst_circuit: bool = Field(True, description="Keep requests local while a provider's circuit is open.")

    # --- Privacy ------------------------------------------------------------------------------------
    privacy_mode: Literal["block", "redact", "off"] = Field(
        "block", description="block: private data never leaves; redact: masked before cloud; off: no check."
    )
    privacy_detectors: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["all"], description="Comma list of built-in detectors, or 'all'."
    )
    privacy_patterns: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description='JSON object of extra detectors: {"name": "regex"}.'
    )
    privacy_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma list of words that mark a request private."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_log_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _parse_memory_limit(cls, value: Any) -> Any:
        # "8GB" and "512MiB" are what people write; the parser's message says which forms work.
        return parse_byte_size(value) if isinstance(value, str) else value

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _parse_keep_alive(cls, value: Any) -> Any:
        return parse_duration_seconds(value) if isinstance(value, str | int | float) else value

    @field_validator("cors_origins", "privacy_detectors", "privacy_keywords", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # Accept "a,b" as well as a JSON list, because .env users write comma lists.
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("burst_complexity_weights", "privacy_patterns", mode="before")
    @classmethod
    def _parse_json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator(
        "api_key",
        "cloud_api_key",
        "cloud_base_url",
        "cloud_model",
        "cloud_providers_file",
        "budget_daily_usd",
        "budget_monthly_usd",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # `.env` lines like `PENSIEVE_CLOUD_API_KEY=` mean "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_host(self) -> Settings:
        if not self.host.strip():
            raise ValueError("host must not be empty")
        return self

    @property
    def resolved_n_threads(self) -> int:
        """Generation threads: the setting, or every CPU core llama.cpp may use."""
        return self.n_threads or available_cores()

    @property
    def resolved_parallel(self) -> int:
        """Sequences per model: the setting, or 8 per core between 4 and 16.

        Batched decoding on a CPU gains little at 2-4 sequences and 2-3x at 8-16 (memory bandwidth is
        shared); more sequences than that mostly add latency to each.
        """
        return self.parallel or max(4, min(16, 8 * available_cores()))

    @property
    def resolved_n_threads_batch(self) -> int:
        """Prompt-processing threads: the setting, or the generation threads."""
        return self.n_threads_batch or self.resolved_n_threads


def mask_secret(secret: SecretStr | None) -> str | None:
    """A key shown without revealing it: its first three and last four characters at most."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    return f"{value[:3]}…{value[-4:]}" if len(value) >= 12 else "…" * 3


class SettingsError(Exception):
    """A setting is invalid; the message is one line naming the key and the problem."""


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's multi-line report into one line per problem, each naming the `PENSIEVE_*` key."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else "settings"
        value = item.get("input")
        shown = "" if isinstance(value, dict) or value is None else f"={value!r}"
        key = ENV_PREFIX + field.upper()
        problems.append(f"invalid setting {key}{shown}: {item['msg']}")
    return "; ".join(problems)


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, environment and `.env`, raising SettingsError on bad values."""
    cleaned = {key: value for key, value in overrides.items() if value is not None}
    try:
        if env_file is not None:
            return Settings(_env_file=env_file, **cleaned)  # type: ignore[call-arg]
        return Settings(**cleaned)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from error
    except SourceError as error:  # a value pydantic-settings could not even read (e.g. malformed JSON)
        raise SettingsError(f"invalid setting: {error}") from error
