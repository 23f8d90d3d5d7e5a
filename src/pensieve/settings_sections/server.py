"""The HTTP server's section: address, keys, limits, logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from pensieve.settings_sections.base import RESTART, LogFormat, LogLevel, Section, empty_is_none, split_list


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

    _api_key = field_validator("api_key", "api_keys", "admin_key", mode="before")(empty_is_none)

    def inference_keys(self) -> list[str]:
        """Every inference key in clear: API_KEY, then each of API_KEYS."""
        keys = [self.api_key.get_secret_value()] if self.api_key is not None else []
        if self.api_keys is not None:
            keys += [key.strip() for key in self.api_keys.get_secret_value().split(",") if key.strip()]
        return keys

    _cors = field_validator("cors_origins", "allowed_hosts", mode="before")(split_list)
