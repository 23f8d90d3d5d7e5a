"""Settings as the admin API shows and edits them: grouped, typed, secrets masked, saved to `.env` on request.

Keys are the `PENSIEVE_*` names users see in `.env`. Groups are the settings' sections and the
restart-only keys are the fields marked `RESTART`, both read from the declarations in
`pensieve.settings_sections`. Changes are validated by building a whole new Settings object, so a bad
value is refused with the same one-line message start-up would print.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from pensieve.config import ENV_PREFIX, Settings, SettingsError, env_fields, mask_secret, section_class


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


def _public_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return mask_secret(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _restart_required(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and extra.get("restart_required") is True


def describe_settings(settings: Settings, env_file: Path) -> dict[str, Any]:
    """The admin view: values (secrets masked), groups (the sections), descriptions, types, restart-only keys."""
    fields = list(env_fields())
    groups: dict[str, list[str]] = {}
    for name, section, _, _ in fields:
        groups.setdefault(section_class(section).title, []).append(env_key(name))
    values = settings.flat()
    return {
        "settings": {env_key(name): _public_value(values[name]) for name, *_ in fields},
        "groups": groups,
        "descriptions": {env_key(name): info.description or "" for name, _, _, info in fields},
        "types": {env_key(name): _type_name(info.annotation) for name, _, _, info in fields},
        "env_file": str(env_file.resolve()),
        "restart_required": sorted(env_key(name) for name, _, _, info in fields if _restart_required(info)),
    }


_LINE_BREAKS = re.compile(r"[\r\n\x00]")


def _check_text(key: str, value: Any) -> None:
    """No setting holds a line break or NUL: in `.env` it could start a line (a key) of its own."""
    texts = [value] if isinstance(value, str) else []
    if isinstance(value, list):
        texts = [item for item in value if isinstance(item, str)]
    elif isinstance(value, dict):
        texts = [str(item) for pair in value.items() for item in pair]
    if any(_LINE_BREAKS.search(text) for text in texts):
        raise SettingsError(f"{key}: a value may not contain a line break")


def updated_settings(settings: Settings, changes: dict[str, Any]) -> Settings:
    """A new Settings with `changes` ({PENSIEVE_KEY: value}) applied; SettingsError names a bad key or value.

    A secret sent back exactly as masked means "unchanged", so a UI can round-trip the form safely.
    """
    values = settings.flat()
    kept_secrets: set[str] = set()
    for key, value in changes.items():
        name = field_name(key)
        if name not in values:
            raise SettingsError(f"unknown setting {key!r}")
        current = values[name]
        if isinstance(current, SecretStr) and value == mask_secret(current):
            kept_secrets.add(name)
            continue
        _check_text(key, value)
        values[name] = value
    # The cloud key goes only where it went before: a new base URL drops it unless this change sets a key
    # too (a page that reached the admin API must not redirect the stored key to itself).
    new_url = values["cloud_base_url"].strip() if isinstance(values["cloud_base_url"], str) else None
    key_given = "cloud_api_key" in {field_name(key) for key in changes} and "cloud_api_key" not in kept_secrets
    if (new_url or None) != settings.cloud.base_url and not key_given:
        values["cloud_api_key"] = None
    # Built from explicit values only: the environment and .env must not sneak back in.
    return Settings.from_values(**values)


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


def _from_environment(key: str, value: object) -> bool:
    """A secret whose value came from the process environment: it stays there, not copied into `.env`."""
    return isinstance(value, SecretStr) and os.environ.get(key) == value.get_secret_value()


def save_env_file(settings: Settings, env_file: Path) -> Path:
    """Write every setting into `env_file`, replacing existing `KEY=` lines in place (comments stay).

    The file is replaced atomically (written, fsynced, renamed) and keeps its permissions; a new one is
    created readable by its owner only, since it may hold API keys. Secrets set in the environment are
    left out, and a value with a line break is refused (it could start a line of its own).
    """
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    pending: dict[str, str] = {}
    for name, value in settings.flat().items():
        key, text = env_key(name), _env_text(value)
        if _LINE_BREAKS.search(text):
            raise SettingsError(f"{key}: a value may not contain a line break")
        if not _from_environment(key, value):
            pending[key] = _quoted(text)
    pattern = re.compile(r"^\s*(?:export\s+)?(PENSIEVE_[A-Z0-9_]+)\s*=")
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if match and match.group(1) in pending:
            key = match.group(1)
            lines[index] = f"{key}={pending.pop(key)}"
    lines.extend(f"{key}={value}" for key, value in pending.items())
    mode = stat.S_IMODE(env_file.stat().st_mode) if env_file.exists() else 0o600
    temporary = env_file.with_name(env_file.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    temporary.chmod(mode)  # O_CREAT's mode is filtered by the umask; an existing file's mode is kept
    temporary.replace(env_file)
    with contextlib.suppress(OSError):  # the rename itself survives a crash once the folder is synced
        folder = os.open(env_file.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return env_file
