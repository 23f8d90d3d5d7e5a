"""Pensieve's settings: one pydantic-settings tree read from CLI flags, `PENSIEVE_*` variables and `.env`.

Precedence, highest first: values passed to `Settings(...)` (the CLI flags), environment variables,
the `.env` file, the defaults below. Every key is documented in `.env.example`; keep the two in step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

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
    chat_format: ChatFormat = Field(
        "auto",
        description="auto, template, gemma, chatml, phi3 or dialogue; auto picks per model (see README).",
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

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase_log_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # Accept "a,b" as well as a JSON list, because .env users write comma lists.
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
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
    def resolved_n_threads_batch(self) -> int:
        """Prompt-processing threads: the setting, or the generation threads."""
        return self.n_threads_batch or self.resolved_n_threads


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


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
