"""Settings: precedence of flags, environment and .env, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pensieve.cli import main
from pensieve.config import SettingsError, load_settings


def test_defaults_bind_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8000
    assert settings.server.api_key is None


def test_flags_beat_environment_which_beats_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("PENSIEVE_PORT=7000\nPENSIEVE_N_CTX=1024\nPENSIEVE_LOG_LEVEL=DEBUG\n")
    monkeypatch.setenv("PENSIEVE_N_CTX", "2048")
    settings = load_settings(env_file=env_file, port=9000)
    assert settings.server.port == 9000
    assert settings.engine.n_ctx == 2048
    assert settings.server.log_level == "debug"


def test_invalid_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENSIEVE_PORT", "99999")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "PENSIEVE_PORT" in message and "99999" in message
    assert "\n" not in message


def test_api_key_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENSIEVE_API_KEY", "sekrit")
    settings = load_settings()
    assert "sekrit" not in repr(settings)
    assert settings.server.api_key is not None and settings.server.api_key.get_secret_value() == "sekrit"


def test_cors_origins_accept_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENSIEVE_CORS_ORIGINS", "http://a.test, http://b.test")
    assert load_settings().server.cors_origins == ["http://a.test", "http://b.test"]


def test_cli_stops_with_one_clear_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PENSIEVE_N_THREADS", "lots")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pensieve: invalid setting PENSIEVE_N_THREADS='lots'")
    assert len(err.splitlines()) == 1


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["serve", "--help"], ["models", "--help"], ["models", "list", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
    assert "install-default" in capsys.readouterr().out
