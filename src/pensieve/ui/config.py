"""Where the UI finds the server: `PENSIEVE_*` variables and `.env`, read with a small settings class.

`PENSIEVE_SERVER_URL` wins; otherwise the URL is built from `PENSIEVE_HOST` and `PENSIEVE_PORT`, the
same keys the server binds with (a wildcard bind address is reached through the loopback address).
`PENSIEVE_ENV_FILE` names another settings file (the CLI's `--env-file` passes it this way).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pensieve.settings_sections import DEFAULT_UI_PORT, WebUISettings

__all__ = ["DEFAULT_UI_PORT", "UISettings", "load_ui_settings"]

_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}


class UISettings(BaseSettings, WebUISettings):
    """The few settings the UI needs: the server's address and key, and the Web UI section's fields (declared
    once, in `pensieve.settings_sections`); every other `PENSIEVE_*` key is ignored."""

    model_config = SettingsConfigDict(
        env_prefix="PENSIEVE_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    host: str = Field("127.0.0.1", description="Address the server binds (used to reach it).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the server.")
    api_key: SecretStr | None = Field(None, description="Bearer key the server requires, if any.")
    api_keys: SecretStr | None = Field(None, description="The server's further inference keys (the first is used).")
    admin_key: SecretStr | None = Field(None, description="The server's admin key: settings, models, circuits.")

    @field_validator("api_key", "api_keys", "admin_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def base_url(self) -> str:
        """The server's URL without a trailing slash, e.g. `http://127.0.0.1:8000`."""
        if self.server_url:
            return self.server_url.rstrip("/")
        host = "127.0.0.1" if self.host.strip() in _WILDCARD_HOSTS else self.host.strip()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # a bare IPv6 address
        return f"http://{host}:{self.port}"

    @property
    def api_key_value(self) -> str | None:
        """The inference key in clear (API_KEY, else the first of API_KEYS), for the Authorization header only."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        listed = self.api_keys.get_secret_value().split(",") if self.api_keys is not None else []
        return next((key.strip() for key in listed if key.strip()), None)

    @property
    def admin_key_value(self) -> str | None:
        """The admin key in clear, for the Authorization header only."""
        return self.admin_key.get_secret_value() if self.admin_key is not None else None


def load_ui_settings(env_file: Path | None = None) -> UISettings:
    """Read the settings from the environment and `env_file` (default: `PENSIEVE_ENV_FILE` or `.env`)."""
    chosen = env_file or Path(os.environ.get("PENSIEVE_ENV_FILE") or ".env")
    return UISettings(_env_file=chosen)  # type: ignore[call-arg]
