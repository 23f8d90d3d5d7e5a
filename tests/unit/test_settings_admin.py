"""The admin view of settings: masking, typed groups, validated changes and a faithful `.env` round trip."""

from __future__ import annotations

import stat
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


def test_a_value_with_a_line_break_cannot_add_a_key(tmp_path: Path) -> None:
    """#14: `PENSIEVE_CLOUD_MODEL="gpt\\nPENSIEVE_API_KEY=x"` would be a second line, a second key, in .env."""
    with pytest.raises(SettingsError, match="PENSIEVE_CLOUD_MODEL: a value may not contain a line break"):
        updated_settings(base(), {"PENSIEVE_CLOUD_MODEL": "gpt\nPENSIEVE_API_KEY=pwned"})
    with pytest.raises(SettingsError, match="line break"):
        updated_settings(base(), {"PENSIEVE_PRIVACY_KEYWORDS": ["ok", "bad\r\nPENSIEVE_HOST=0.0.0.0"]})
    sneaked = base(cloud_model="gpt\nPENSIEVE_API_KEY=pwned")  # e.g. from the environment
    with pytest.raises(SettingsError):
        save_env_file(sneaked, tmp_path / ".env")
    assert not (tmp_path / ".env").exists()


def test_env_file_is_private_when_created_and_keeps_its_mode(tmp_path: Path) -> None:
    created = save_env_file(base(cloud_api_key="sk-live-abcdefghijklmnop1234"), tmp_path / ".env")
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    existing = tmp_path / "shared.env"
    existing.write_text("PENSIEVE_PORT=8000\n", encoding="utf-8")
    existing.chmod(0o640)
    save_env_file(base(port=9001), existing)
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    assert "PENSIEVE_PORT=9001" in existing.read_text(encoding="utf-8")


def test_secrets_from_the_environment_stay_out_of_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENSIEVE_CLOUD_API_KEY", "sk-from-the-shell-1234567890")
    settings = load_settings(env_file=tmp_path / "missing.env")
    text = save_env_file(settings, tmp_path / ".env").read_text(encoding="utf-8")
    assert "sk-from-the-shell" not in text
    assert "PENSIEVE_PORT=8000" in text


def test_a_new_cloud_base_url_drops_the_stored_key_unless_the_change_sets_one() -> None:
    key = "sk-test-0123456789abcdef"
    settings = Settings.from_values(cloud_base_url="https://api.example.com/v1", cloud_api_key=key)
    moved = updated_settings(settings, {"PENSIEVE_CLOUD_BASE_URL": "http://attacker.example/v1"})
    assert moved.cloud.base_url == "http://attacker.example/v1" and moved.cloud.api_key is None
    # A settings form sends every field back, the key masked: that does not carry the key over either.
    masked = mask_secret(settings.cloud.api_key)
    form = updated_settings(
        settings, {"PENSIEVE_CLOUD_BASE_URL": "http://other.example/v1", "PENSIEVE_CLOUD_API_KEY": masked}
    )
    assert form.cloud.api_key is None
    typed = updated_settings(
        settings, {"PENSIEVE_CLOUD_BASE_URL": "http://other.example/v1", "PENSIEVE_CLOUD_API_KEY": "sk-new"}
    )
    assert typed.cloud.api_key is not None and typed.cloud.api_key.get_secret_value() == "sk-new"
    same = updated_settings(
        settings, {"PENSIEVE_CLOUD_BASE_URL": "https://api.example.com/v1", "PENSIEVE_BURST_LOAD": True}
    )
    assert same.cloud.api_key is not None and same.cloud.api_key.get_secret_value() == key
