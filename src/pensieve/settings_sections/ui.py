"""The web UI's section (read by the UI process)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from pensieve.settings_sections.base import DEFAULT_UI_PORT, RESTART, Section, empty_is_none


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

    _server_url = field_validator("server_url", mode="before")(empty_is_none)
