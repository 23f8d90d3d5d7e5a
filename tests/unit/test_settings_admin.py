"""The admin view of settings: masking, typed groups, validated changes and a faithful `.env` round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from pensieve.config import Settings, SettingsError, load_settings
from pensieve.settings_admin import describe_settings, mask_secret, save_env_file, updated_settings


def base(**values: object) -> Settings:
    return Settings.from_values(**values)


def test_secrets_are_masked_everywhere_in_the_view(tmp_path: Path) -> None:
    settings = base(cloud_api_key="sk-live-abcdefghijklmnop1234", api_key="local-key-123456")
    view = describe_settings(settings, tmp_path / ".env")
    assert view["settings"]["PENSIEVE_CLOUD_API_KEY"] == "sk-…1234"
    assert "abcdefghijklmnop" not in str(view)
    assert view["types"]["PENSIEVE_CLOUD_API_KEY"] == "secret"
    assert view["types"]["PENSIEVE_PRIVACY_MODE"] == "choice:block,redact,off"
    assert view["types"]["PENSIEVE_BURST_LOAD"] == "bool"
    assert view["types"]["PENSIEVE_BUDGET_DAILY_USD"] == "float"
    assert "PENSIEVE_BURST_LOAD" in view["groups"]["Burst"]
    assert "PENSIEVE_DEFAULT_TEMPERATURE" in view["groups"]["Sampling"]
    assert "PENSIEVE_DEFAULT_MODEL" in view["groups"]["Local engine"]
    assert "PENSIEVE_PORT" in view["restart_required"]
    assert mask_secret(SecretStr("short")) == "………"


def test_changes_are_validated_like_start_up() -> None:
    settings = base()
    changed = updated_settings(settings, {"PENSIEVE_BURST_COMPLEXITY_THRESHOLD": 0.3, "privacy_mode": "redact"})
    assert changed.burst.complexity_threshold == 0.3 and changed.privacy.mode == "redact"
    with pytest.raises(SettingsError, match="PENSIEVE_BURST_COMPLEXITY_THRESHOLD"):
        updated_settings(settings, {"PENSIEVE_BURST_COMPLEXITY_THRESHOLD": 7})
    with pytest.raises(SettingsError, match="unknown setting"):
        updated_settings(settings, {"PENSIEVE_NOPE": 1})


def test_masked_secret_sent_back_means_unchanged() -> None:
    settings = base(cloud_api_key="sk-live-abcdefghijklmnop1234")
    same = updated_settings(settings, {"PENSIEVE_CLOUD_API_KEY": "sk-…1234"})
    assert same.cloud.api_key is not None
    assert same.cloud.api_key.get_secret_value() == "sk-live-abcdefghijklmnop1234"


def test_save_keeps_comments_and_round_trips(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# my comment\nPENSIEVE_PORT=8000\nOTHER=1\n", encoding="utf-8")
    settings = base(
        port=9001,
        privacy_keywords=["bluebird", "red kite"],
        privacy_patterns={"emp": r"EMP-\d{6}"},
        cloud_api_key="sk-it's-secret",
        budget_daily_usd=None,
    )
    save_env_file(settings, env)
    text = env.read_text(encoding="utf-8")
    assert text.startswith("# my comment\nPENSIEVE_PORT=9001\nOTHER=1\n")
    again = load_settings(env_file=env)
    assert again.server.port == 9001
    assert again.privacy.keywords == ["bluebird", "red kite"]
    assert again.privacy.patterns == {"emp": r"EMP-\d{6}"}
    assert again.cloud.api_key is not None and again.cloud.api_key.get_secret_value() == "sk-it's-secret"
    assert again.budget.daily_usd is None
