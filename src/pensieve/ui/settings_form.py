"""The settings form's logic: labels, the widget kind of each key, and which values the user changed.

The admin API describes every `PENSIEVE_*` key with a type (`bool`, `int`, `float`, `choice:a,b`,
`secret`, `str`); lists and JSON objects come as `str` and are edited as text. Only changed keys are
sent back, and a secret shown masked is never sent back as if it were a new key.
"""

from __future__ import annotations

import json
from typing import Any

_WORDS = {"usd": "(USD)", "ms": "(ms)", "api": "API", "url": "URL", "ctx": "context", "n": "", "cors": "CORS"}
# Keys whose generic label would be ambiguous.
_LABELS = {"PENSIEVE_DEFAULT_MODEL": "Default model", "PENSIEVE_CLOUD_MODEL": "Cloud model"}
_GROUP_PREFIXES = ("PENSIEVE_BURST_", "PENSIEVE_PRIVACY_", "PENSIEVE_BUDGET_", "PENSIEVE_CLOUD_", "PENSIEVE_DEFAULT_")


def label(key: str) -> str:
    """`PENSIEVE_BURST_MAX_LOCAL_WAIT_MS` -> `Max local wait (ms)`; the group's prefix is left out."""
    if key in _LABELS:
        return _LABELS[key]
    name = key
    for prefix in _GROUP_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix) :]
            break
    name = name.removeprefix("PENSIEVE_")
    words = [_WORDS.get(word.lower(), word.lower()) for word in name.split("_")]
    text = " ".join(word for word in words if word)
    return text[:1].upper() + text[1:] if text else key


def widget_value(kind: str, value: Any) -> Any:
    """The server's value as its widget holds it (lists and objects become text)."""
    if kind in ("str", "secret"):
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        if isinstance(value, dict):
            return json.dumps(value) if value else ""
        return "" if value is None else str(value)
    return value


def changed_values(types: dict[str, str], current: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """The `{KEY: value}` the user changed, in the form the PATCH endpoint takes."""
    changes: dict[str, Any] = {}
    for key, new in edited.items():
        kind = types.get(key, "str")
        old = widget_value(kind, current.get(key))
        if kind in ("str", "secret"):
            new = (new or "").strip()
            if kind == "secret" and (new == old or (not new and not old)):
                continue
        if kind == "float" and new is not None and old is not None:
            if abs(float(new) - float(old)) < 1e-12:
                continue
        elif new == old:
            continue
        changes[key] = new
    return changes


def choices(kind: str) -> list[str]:
    """The options of a `choice:a,b,c` type."""
    return kind.removeprefix("choice:").split(",") if kind.startswith("choice:") else []
