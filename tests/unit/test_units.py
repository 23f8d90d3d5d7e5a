"""Byte sizes and durations as settings and requests write them (PENSIEVE_MEMORY_LIMIT, keep_alive)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pensieve.config import SettingsError, load_settings
from pensieve.units import FOREVER, format_bytes, parse_byte_size, parse_duration_seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1_048_576),
        ("8GB", 8_000_000_000),
        ("8 gb", 8_000_000_000),
        ("512MiB", 512 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("100KB", 100_000),
        ("3Ti", 3 * 1024**4),
        (4096, 4096),
    ],
)
def test_byte_sizes(text: str | int, expected: int) -> None:
    assert parse_byte_size(text) == expected


@pytest.mark.parametrize("bad", ["", "eight", "8XB", "-1", "8 G B", "1e9"])
def test_bad_byte_sizes_say_which_forms_work(bad: str) -> None:
    with pytest.raises(ValueError, match=r"size|unit"):
        parse_byte_size(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (300, 300.0),
        (2.5, 2.5),
        ("300", 300.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("-1", FOREVER),
        (-1, FOREVER),
        (-30, FOREVER),
        ("-5m", FOREVER),
        ("0", 0.0),
    ],
)
def test_durations(value: str | float, expected: float) -> None:
    assert parse_duration_seconds(value) == expected


@pytest.mark.parametrize("bad", ["", "soon", "5 minutes", "m5", "5mm", "1h x"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_seconds(bad)


def test_format_bytes() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(253_113_024) == "253 MB"
    assert format_bytes(8_000_000_000) == "8 GB"


def test_settings_accept_sizes_and_durations_and_name_the_key_when_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for key in ("PENSIEVE_MEMORY_LIMIT", "PENSIEVE_KEEP_ALIVE", "PENSIEVE_MAX_LOADED_MODELS"):
        monkeypatch.delenv(key, raising=False)
    engine = load_settings(memory_limit="8GB", keep_alive="5m", max_loaded_models=0).engine
    assert (engine.memory_limit, engine.keep_alive, engine.max_loaded_models) == (8_000_000_000, 300.0, 0)
    assert load_settings(keep_alive=-7).engine.keep_alive == FOREVER
    defaults = load_settings().engine
    assert (defaults.memory_limit, defaults.keep_alive, defaults.max_loaded_models) == (0, 300.0, 2)
    with pytest.raises(SettingsError, match=r"PENSIEVE_MEMORY_LIMIT='lots'.*8GB"):
        load_settings(memory_limit="lots")
    with pytest.raises(SettingsError, match=r"PENSIEVE_KEEP_ALIVE='later'.*5m"):
        load_settings(keep_alive="later")
