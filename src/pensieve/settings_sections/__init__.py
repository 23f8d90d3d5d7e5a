"""The sections of Pensieve's settings: one pydantic model per concern, each field one `PENSIEVE_*` key.

A field's key is `PENSIEVE_` + its section's `env_prefix` + its name (`BurstSettings.load` is
`PENSIEVE_BURST_LOAD`), so the keys users write in `.env` read the same as before the settings were cut
into sections. Fields read only at start-up carry `RESTART` in their metadata; the admin view derives its
groups (the section titles) and its restart-only list from these declarations. `pensieve.config` composes
the sections and reads them from the environment.
"""

from pensieve.settings_sections.base import (
    DEFAULT_MODEL_ID,
    DEFAULT_UI_PORT,
    RESTART,
    ChatFormat,
    LogFormat,
    LogLevel,
    Section,
)
from pensieve.settings_sections.engine import EngineSettings, SamplingSettings
from pensieve.settings_sections.routing import BudgetSettings, BurstSettings, CloudSettings, PrivacySettings
from pensieve.settings_sections.server import ServerSettings
from pensieve.settings_sections.storage import FilesSettings, PersistenceSettings
from pensieve.settings_sections.ui import WebUISettings

__all__ = [
    "DEFAULT_MODEL_ID",
    "DEFAULT_UI_PORT",
    "RESTART",
    "BudgetSettings",
    "BurstSettings",
    "ChatFormat",
    "CloudSettings",
    "EngineSettings",
    "FilesSettings",
    "LogFormat",
    "LogLevel",
    "PersistenceSettings",
    "PrivacySettings",
    "SamplingSettings",
    "Section",
    "ServerSettings",
    "WebUISettings",
]
