"""`.env.example` documents every setting, and nothing that is not one (the sections are the source)."""

from __future__ import annotations

import re
from pathlib import Path

from pensieve.config import ENV_PREFIX, env_fields, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def _documented_keys() -> set[str]:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*(PENSIEVE_[A-Z0-9_]+)=", text, re.MULTILINE))


def test_every_setting_is_in_env_example_and_every_key_there_is_a_setting() -> None:
    declared = {ENV_PREFIX + name.upper() for name, *_ in env_fields()}
    documented = _documented_keys()
    assert declared - documented == set(), "settings missing from .env.example"
    assert documented - declared == set(), ".env.example keys that no section declares"


def test_env_example_as_shipped_loads() -> None:
    settings = load_settings(env_file=ENV_EXAMPLE)
    assert settings.server.host == "127.0.0.1"
