"""Pensieve's settings: sections composed into one tree, read from CLI flags, `PENSIEVE_*` variables and `.env`.

Precedence, highest first: values passed to `load_settings(...)` (the CLI flags), environment variables,
the `.env` file, the defaults. Each setting lives in one section (`pensieve.settings_sections`) and keeps
its flat `PENSIEVE_<NAME>` key; every key is documented in `.env.example`; keep the two in step.
Consumers take their section (`settings.engine`, `settings.burst`, ...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from pensieve.settings_sections import (
    DEFAULT_MODEL_ID,
    BudgetSettings,
    BurstSettings,
    CloudSettings,
    EngineSettings,
    FilesSettings,
    PersistenceSettings,
    PrivacySettings,
    SamplingSettings,
    Section,
    ServerSettings,
    WebUISettings,
)

__all__ = [
    "DEFAULT_MODEL_ID",
    "ENV_PREFIX",
    "Settings",
    "SettingsError",
    "describe_validation_error",
    "env_fields",
    "load_settings",
    "mask_secret",
    "section_class",
]

ENV_PREFIX = "PENSIEVE_"


class Settings(BaseModel):
    """Every setting of the server, by section. Immutable: a change builds a new tree (`reconfigure`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: ServerSettings = ServerSettings.model_validate({})
    engine: EngineSettings = EngineSettings.model_validate({})
    sampling: SamplingSettings = SamplingSettings.model_validate({})
    cloud: CloudSettings = CloudSettings.model_validate({})
    burst: BurstSettings = BurstSettings.model_validate({})
    budget: BudgetSettings = BudgetSettings.model_validate({})
    privacy: PrivacySettings = PrivacySettings.model_validate({})
    persistence: PersistenceSettings = PersistenceSettings.model_validate({})
    files: FilesSettings = FilesSettings.model_validate({})
    ui: WebUISettings = WebUISettings.model_validate({})

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_keys(cls, data: Any) -> Any:
        """Accept flat keys (`burst_load`, the env name without its prefix) beside or instead of sections."""
        if not isinstance(data, Mapping):
            return data
        nested: dict[str, Any] = {}
        for key, value in data.items():
            located = _FLAT.get(key.lower()) if isinstance(key, str) else None
            if located is None:
                nested[key] = value  # a section (or an unknown key, refused by extra="forbid")
                continue
            section, field = located
            current = nested.setdefault(section, {})
            if isinstance(current, dict):
                current[field] = value
        return nested

    @classmethod
    def from_values(cls, **values: Any) -> Settings:
        """Settings from explicit flat values only (no environment, no `.env`): for tests and the admin API."""
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise SettingsError(describe_validation_error(error)) from error

    def flat(self) -> dict[str, Any]:
        """Every setting by flat name (`burst_load`), in section order."""
        return {name: getattr(getattr(self, section), field) for name, section, field, _ in env_fields()}


def env_fields() -> Iterator[tuple[str, str, str, FieldInfo]]:
    """(flat name, section, field, field info) of every setting, in section order."""
    for section_name, section_info in Settings.model_fields.items():
        section_cls: type[Section] = section_info.annotation  # type: ignore[assignment]
        for field_name, info in section_cls.model_fields.items():
            yield section_cls.env_prefix + field_name, section_name, field_name, info


def section_class(section: str) -> type[Section]:
    """The model class of a section by its attribute name."""
    cls: type[Section] = Settings.model_fields[section].annotation  # type: ignore[assignment]
    return cls


_FLAT: dict[str, tuple[str, str]] = {}
for _name, _section, _field, _ in env_fields():
    if _name in _FLAT:  # two sections would claim one PENSIEVE_* key
        raise RuntimeError(f"settings key {_name!r} is declared twice")
    _FLAT[_name] = (_section, _field)


class _RawSettings(BaseSettings):
    """Reads every `PENSIEVE_*` key as raw text from the environment and `.env`; the sections validate it."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore")


# Typed `Any` so that pydantic-settings hands values over untouched (no JSON decoding of lists here).
_RawReader: type[_RawSettings] = create_model(  # type: ignore[call-overload]
    "_RawReader", __base__=_RawSettings, **{name: (Any, None) for name in _FLAT}
)


def mask_secret(secret: SecretStr | None) -> str | None:
    """A key shown without revealing it: its first three and last four characters at most."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    return f"{value[:3]}…{value[-4:]}" if len(value) >= 12 else "…" * 3


class SettingsError(Exception):
    """A setting is invalid; the message is one line naming the key and the problem."""


def _key_of(loc: tuple[int | str, ...]) -> str:
    """The `PENSIEVE_*` key a validation error location points at (`("burst", "load")` -> PENSIEVE_BURST_LOAD)."""
    if len(loc) >= 2 and str(loc[0]) in Settings.model_fields:
        section = section_class(str(loc[0]))
        if str(loc[1]) in section.model_fields:
            return ENV_PREFIX + (section.env_prefix + str(loc[1])).upper()
    return ENV_PREFIX + str(loc[0]).upper() if loc else "settings"


def describe_validation_error(error: ValidationError) -> str:
    """Turn pydantic's multi-line report into one line per problem, each naming the `PENSIEVE_*` key."""
    problems = []
    for item in error.errors():
        value = item.get("input")
        shown = "" if isinstance(value, dict) or value is None else f"={value!r}"
        problems.append(f"invalid setting {_key_of(item['loc'])}{shown}: {item['msg']}")
    return "; ".join(problems)


def load_settings(env_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from flat overrides, the environment and `.env`; SettingsError on bad values.

    `env_file` None reads `.env` in the working directory.
    """
    cleaned = {key: value for key, value in overrides.items() if value is not None}
    try:
        # `_env_file` None would mean "no .env": only pass it when the caller named a file.
        raw = _RawReader(_env_file=env_file, **cleaned) if env_file is not None else _RawReader(**cleaned)  # type: ignore[call-arg]
        return Settings.model_validate(raw.model_dump(exclude_unset=True))
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from error
    except SourceError as error:  # a value pydantic-settings could not even read
        raise SettingsError(f"invalid setting: {error}") from error
