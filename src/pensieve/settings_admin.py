"""Settings as the admin API shows and edits them: grouped, typed, secrets masked, saved to `.env` on request.

Keys are the `PENSIEVE_*` names users see in `.env`. Changes are validated by building a whole new
Settings object, so a bad value is refused with the same one-line message start-up would print.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr, ValidationError

from pensieve.config import ENV_PREFIX, Settings, SettingsError, describe_validation_error, mask_secret

# Group of each field, by name prefix (first match wins); the order is the order a UI shows them in.
_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Burst", ("burst_",)),
    ("Privacy", ("privacy_",)),
    ("Budget", ("budget_",)),
    ("Cloud", ("cloud_",)),
    (
        "Sampling",
        (
            "default_temperature",
            "default_top",
            "default_min",
            "default_repeat",
            "default_presence",
            "default_frequency",
            "default_max",
        ),
    ),
    ("Local engine", ("default_model", "preload_", "n_", "chat_format", "max_loaded_", "memory_limit", "keep_alive")),
    ("Server", ("",)),
)
# These are read once when the server starts (socket, folders, loaded models), so a change waits for a restart.
RESTART_REQUIRED = frozenset(
    {
        "host", "port", "api_key", "cors_origins", "max_request_bytes", "models_dir", "data_dir", "log_dir",
        "log_level", "preload_default_model", "n_threads", "n_threads_batch", "n_ctx", "n_batch", "chat_format",
    }
)  # fmt: skip


def env_key(field: str) -> str:
    """`burst_load` -> `PENSIEVE_BURST_LOAD`."""
    return ENV_PREFIX + field.upper()


def field_name(key: str) -> str:
    """`PENSIEVE_BURST_LOAD` (any case, prefix optional) -> `burst_load`."""
    upper = key.strip().upper()
    return (upper[len(ENV_PREFIX) :] if upper.startswith(ENV_PREFIX) else upper).lower()


def _type_name(annotation: Any) -> str:
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    origin = get_origin(annotation)
    if annotation is SecretStr or SecretStr in args:
        return "secret"
    if origin is Literal:
        return "choice:" + ",".join(str(arg) for arg in get_args(annotation))
    if args and get_origin(args[0]) is Literal:
        return "choice:" + ",".join(str(arg) for arg in get_args(args[0]))
    base = args[0] if args else annotation
    base_origin = get_origin(base) or base
    for python_type, name in ((bool, "bool"), (int, "int"), (float, "float"), (list, "list"), (dict, "json")):
        if base_origin is python_type:
            return name
    return "str"


def _group_of(field: str) -> str:
    return next(group for group, prefixes in _GROUPS if any(field.startswith(prefix) for prefix in prefixes))


def _public_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return mask_secret(value)
    if isinstance(value, Path):
        return str(value)
    return value


def describe_settings(settings: Settings, env_file: Path) -> dict[str, Any]:
    """The admin view: values (secrets masked), groups, descriptions, types, restart-only keys."""
    fields = Settings.model_fields
    groups: dict[str, list[str]] = {group: [] for group, _ in _GROUPS}
    for name in fields:
        groups[_group_of(name)].append(env_key(name))
    return {
        "settings": {env_key(name): _public_value(getattr(settings, name)) for name in fields},
        "groups": groups,
        "descriptions": {env_key(name): info.description or "" for name, info in fields.items()},
        "types": {env_key(name): _type_name(info.annotation) for name, info in fields.items()},
        "env_file": str(env_file.resolve()),
        "restart_required": sorted(env_key(name) for name in RESTART_REQUIRED),
    }


def updated_settings(settings: Settings, changes: dict[str, Any]) -> Settings:
    """A new Settings with `changes` ({PENSIEVE_KEY: value}) applied; SettingsError names a bad key or value.

    A secret sent back exactly as masked means "unchanged", so a UI can round-trip the form safely.
    """
    values = {name: getattr(settings, name) for name in Settings.model_fields}
    for key, value in changes.items():
        name = field_name(key)
        if name not in Settings.model_fields:
            raise SettingsError(f"unknown setting {key!r}")
        current = values[name]
        if isinstance(current, SecretStr) and value == mask_secret(current):
            continue
        values[name] = value
    try:
        # Built from explicit values only: the environment and .env must not sneak back in.
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from error


def _env_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value) if value else ""
    return str(value)


def _quoted(text: str) -> str:
    """Quote a value so `.env` readers give it back unchanged (in single quotes only \\ and \' are escapes)."""
    if text and not re.search(r"[\s#'\"\\]", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def save_env_file(settings: Settings, env_file: Path) -> Path:
    """Write every setting into `env_file`, replacing existing `KEY=` lines in place (comments stay)."""
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    pending = {env_key(name): _quoted(_env_text(getattr(settings, name))) for name in Settings.model_fields}
    pattern = re.compile(r"^\s*(?:export\s+)?(PENSIEVE_[A-Z0-9_]+)\s*=")
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if match and match.group(1) in pending:
            key = match.group(1)
            lines[index] = f"{key}={pending.pop(key)}"
    lines.extend(f"{key}={value}" for key, value in pending.items())
    temporary = env_file.with_name(env_file.name + ".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(env_file)
    return env_file
