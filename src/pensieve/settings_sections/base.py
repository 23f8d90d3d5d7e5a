"""What every section shares: the `Section` base, the `RESTART` marker, value parsers, common types."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

DEFAULT_MODEL_ID = "gemma-3-270m-q4_k_m"
DEFAULT_UI_PORT = 8501
# Metadata of a field read once at start-up (socket, folders, loaded models): a change waits for a restart.
RESTART: dict[str, Any] = {"restart_required": True}

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]
ChatFormat = Literal["auto", "template", "gemma", "chatml", "phi3", "dialogue"]
KvLayout = Literal["auto", "split", "unified"]


def empty_is_none(value: Any) -> Any:
    """`.env` lines like `PENSIEVE_CLOUD_API_KEY=` mean "not set"."""
    return None if isinstance(value, str) and not value.strip() else value


def split_list(value: Any) -> Any:
    """Accept "a,b" as well as a JSON list, because .env users write comma lists."""
    if isinstance(value, str):
        if value.strip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def json_object(value: Any) -> Any:
    """Accept a JSON object written as text (an empty value is an empty object)."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


class Section(BaseModel):
    """A group of settings; subclasses name their title and the prefix of their keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
    title: ClassVar[str]
    env_prefix: ClassVar[str] = ""
