"""Cloud provider configuration: the .env provider, the TOML providers file, the registry and key masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from pensieve.cloud.engine import retry_after_seconds
from pensieve.cloud.providers import (
    CloudModel,
    ProviderConfigError,
    load_providers_file,
    parse_providers,
    provider_from_env,
)
from pensieve.cloud.registry import CloudRegistry, providers_from_settings
from pensieve.config import Settings

GOOD = """
[[providers]]
name = "groq"
base_url = "https://api.groq.com/openai/v1/"
api_key_env = "PENSIEVE_TEST_GROQ_KEY"
timeout_seconds = 30
first_token_timeout_seconds = 5
default = true
headers = { "X-Title" = "pensieve" }

[[providers.models]]
id = "llama-3.1-8b-instant"
price_input = 0.05
price_output = 0.08
context_length = 131072

[[providers.models]]
id = "shared-model"

[[providers]]
name = "vllm"
base_url = "http://10.0.0.5:8000/v1"

[[providers.models]]
id = "shared-model"
price_input = 1
price_output = 2
"""


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings.from_values(data_dir=tmp_path, **values)


def test_cost_is_per_million_tokens() -> None:
    model = CloudModel("m", price_input=0.15, price_output=0.60)
    assert model.cost_usd(1_000_000, 0) == pytest.approx(0.15)
    assert model.cost_usd(2000, 500) == pytest.approx(0.0003 + 0.0003)


def test_providers_file_is_parsed_and_keys_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENSIEVE_TEST_GROQ_KEY", "gsk-supersecret-value-1234")
    path = tmp_path / "providers.toml"
    path.write_text(GOOD, encoding="utf-8")
    groq, vllm = load_providers_file(path)
    assert groq.base_url == "https://api.groq.com/openai/v1"
    assert groq.api_key is not None and groq.api_key.get_secret_value() == "gsk-supersecret-value-1234"
    assert groq.default and groq.timeout_seconds == 30 and groq.headers == {"X-Title": "pensieve"}
    assert groq.models[0] == CloudModel("llama-3.1-8b-instant", 0.05, 0.08, 131072)
    assert vllm.api_key is None and vllm.models[0].price_output == 2
    info = json.dumps(groq.public_info(), ensure_ascii=False)
    assert "supersecret" not in info and "gsk…1234" in info


def test_registry_resolves_ids_and_picks_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENSIEVE_TEST_GROQ_KEY", "k")
    path = tmp_path / "providers.toml"
    path.write_text(GOOD, encoding="utf-8")
    config = settings(
        tmp_path, cloud_base_url="https://api.openai.com/v1", cloud_model="gpt-4o-mini", cloud_providers_file=path
    )
    registry = CloudRegistry(providers_from_settings(config.cloud), circuit_failures=3, circuit_cooldown=30)
    assert registry.model_ids() == [
        "cloud/gpt-4o-mini",
        "groq/llama-3.1-8b-instant",
        "groq/shared-model",
        "vllm/shared-model",
    ]
    assert registry.default_model_id == "groq/llama-3.1-8b-instant"  # default = true beats the .env provider
    assert registry.resolve("gpt-4o-mini") == "cloud/gpt-4o-mini"
    assert registry.resolve("groq/shared-model") == "groq/shared-model"
    assert registry.resolve("shared-model") is None  # ambiguous: two providers offer it
    assert registry.resolve("nope") is None
    assert registry.breaker("groq/shared-model") is registry.breaker("groq/llama-3.1-8b-instant")
    assert registry.breaker("cloud/gpt-4o-mini") is not registry.breaker("groq/shared-model")


def test_env_provider_alone_is_the_default(tmp_path: Path) -> None:
    config = settings(tmp_path, cloud_base_url="http://127.0.0.1:9/v1", cloud_model="m", cloud_api_key="sk-x")
    registry = CloudRegistry(providers_from_settings(config.cloud), circuit_failures=3, circuit_cooldown=30)
    assert registry.configured and registry.default_model_id == "cloud/m"
    empty = CloudRegistry(providers_from_settings(settings(tmp_path).cloud), circuit_failures=3, circuit_cooldown=30)
    assert not empty.configured and empty.default_model_id is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[providers]]\nname = "Bad Name"\nbase_url = "http://x"\n[[providers.models]]\nid = "m"', "lowercase"),
        ('[[providers]]\nname = "a"\nbase_url = "ftp://x"\n[[providers.models]]\nid = "m"', "base_url"),
        ('[[providers]]\nname = "a"\nbase_url = "http://x"', "at least one"),
        ('[[providers]]\nname = "a"\nbase_url = "http://x"\n[[providers.models]]\nid = "m"\nprice_input = -1', "price"),
        ('[[providers]]\nname = "a"\nbase_url = "http://x"\ncolour = 1\n[[providers.models]]\nid = "m"', "colour"),
        ('[[providers]]\nname = "a"\nbase_url = "http://x"\napi_key_env = "PENSIEVE_SURELY_UNSET_VAR"\n'
         '[[providers.models]]\nid = "m"', "PENSIEVE_SURELY_UNSET_VAR"),
        ('[[providers]]\nname = "a"\nbase_url = "http://x"\n[[providers.models]]\nid = "m"\n'
         '[[providers]]\nname = "a"\nbase_url = "http://y"\n[[providers.models]]\nid = "n"', "twice"),
        ("providers = 3", "array"),
    ],
)  # fmt: skip
def test_bad_provider_files_are_refused_with_a_clear_message(toml: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "providers.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ProviderConfigError, match=message):
        load_providers_file(path)


def test_only_one_default_provider() -> None:
    table = {"base_url": "http://x", "default": True, "models": [{"id": "m"}]}
    with pytest.raises(ProviderConfigError, match="only one"):
        parse_providers({"providers": [{**table, "name": "a"}, {**table, "name": "b"}]})


def test_invalid_toml_and_duplicate_env_name(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[[providers]\n", encoding="utf-8")
    with pytest.raises(ProviderConfigError, match="not valid TOML"):
        load_providers_file(path)
    path.write_text('[[providers]]\nname = "cloud"\nbase_url = "http://x"\n[[providers.models]]\nid = "m"\n')
    config = settings(tmp_path, cloud_base_url="http://y/v1", cloud_model="m", cloud_providers_file=path)
    with pytest.raises(ProviderConfigError, match="also declared"):
        providers_from_settings(config.cloud)


def test_env_provider_validates_its_url() -> None:
    with pytest.raises(ProviderConfigError, match="base_url"):
        provider_from_env(
            name="cloud",
            base_url="api.openai.com",
            api_key=SecretStr("k"),
            model="m",
            price_input=0,
            price_output=0,
            timeout_seconds=1,
            first_token_timeout_seconds=1,
        )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "99999999"}, 3600.0),
        ({"retry-after": "1e308"}, 3600.0),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({}, None),
    ],
)
def test_a_providers_retry_after_is_clamped(headers: dict[str, str], seconds: float | None) -> None:
    """A hostile or broken Retry-After never opens a circuit for a year nor overflows (#14)."""
    assert retry_after_seconds(headers) == seconds
