"""Cloud provider configuration: the `.env` provider and the optional TOML providers file.

A provider is any OpenAI-compatible endpoint (OpenAI, Azure OpenAI's v1 API, Groq, Together, OpenRouter,
Mistral, vLLM, TGI, another Pensieve). Each has its own models with prices (USD per million tokens),
timeouts and an API key that is a secret: held as SecretStr, shown masked, never logged.

A provider marked `private_ok` is the organisation's own endpoint (its vLLM or llama-server cluster): the
trusted tier. Requests holding private data may go there, never to any other provider (docs/routing.md,
"Private tier").

The providers file (`PENSIEVE_CLOUD_PROVIDERS_FILE`):

    [[providers]]
    name = "groq"                             # models appear as groq/<model id>
    base_url = "https://api.groq.com/openai/v1"
    api_key_env = "GROQ_API_KEY"              # read the key from this variable (or api_key = "..." inline)
    timeout_seconds = 30                      # optional (default 60)
    first_token_timeout_seconds = 10          # optional (default 20)
    default = true                            # optional: the provider `auto` bursts to
    private_ok = false                        # optional: true = trusted tier (private requests may go here)
    headers = { "X-Title" = "pensieve" }      # optional extra HTTP headers
    query = { "api-version" = "preview" }     # optional query parameters (Azure)

    [[providers.models]]
    id = "llama-3.1-8b-instant"
    price_input = 0.05                        # USD per million prompt tokens
    price_output = 0.08                       # USD per million completion tokens
    context_length = 131072                   # optional
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pensieve.config import mask_secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NAME_PATTERN = re.compile(r"^[a-z0-9_-]+$")
DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_FIRST_TOKEN_TIMEOUT_SECONDS = 20.0
_PROVIDER_KEYS = frozenset(
    {"name", "base_url", "api_key", "api_key_env", "timeout_seconds", "first_token_timeout_seconds", "default",
     "headers", "query", "models", "private_ok"}
)  # fmt: skip
_MODEL_KEYS = frozenset({"id", "price_input", "price_output", "context_length"})


class ProviderConfigError(ValueError):
    """A provider is declared wrongly; the message names the provider and the key."""


@dataclass(frozen=True)
class CloudModel:
    """One model at a provider with its prices in USD per million tokens."""

    id: str
    price_input: float = 0.0
    price_output: float = 0.0
    context_length: int | None = None

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What a call with these token counts costs."""
        return (prompt_tokens * self.price_input + completion_tokens * self.price_output) / 1_000_000


@dataclass(frozen=True)
class ProviderConfig:
    """An OpenAI-compatible endpoint and the models Pensieve may send to it."""

    name: str
    base_url: str
    api_key: SecretStr | None
    models: tuple[CloudModel, ...]
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    first_token_timeout_seconds: float = DEFAULT_FIRST_TOKEN_TIMEOUT_SECONDS
    default: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    # Trusted: the organisation's own endpoint, which may receive private data (unmasked).
    private_ok: bool = False

    def public_info(self) -> dict[str, Any]:
        """The provider as endpoints show it: the key masked, never in clear."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "api_key": mask_secret(self.api_key),
            "default": self.default,
            "private_ok": self.private_ok,
            "timeout_seconds": self.timeout_seconds,
            "first_token_timeout_seconds": self.first_token_timeout_seconds,
            "models": [
                {
                    "id": f"{self.name}/{model.id}",
                    "price_input_per_million": model.price_input,
                    "price_output_per_million": model.price_output,
                    "context_length": model.context_length,
                }
                for model in self.models
            ],
        }


def _check_common(name: str, base_url: str, timeout: float, first_token_timeout: float) -> None:
    if not NAME_PATTERN.match(name):
        raise ProviderConfigError(f"provider name {name!r} must use lowercase letters, digits, '_' and '-' only")
    if not re.match(r"^https?://[^\s/]+", base_url):
        raise ProviderConfigError(f"provider {name!r}: base_url {base_url!r} must start with http:// or https://")
    if timeout <= 0 or first_token_timeout <= 0:
        raise ProviderConfigError(f"provider {name!r}: timeouts must be positive")


def provider_from_env(
    *,
    name: str,
    base_url: str,
    api_key: SecretStr | None,
    model: str,
    price_input: float,
    price_output: float,
    timeout_seconds: float,
    first_token_timeout_seconds: float,
    private_ok: bool = False,
) -> ProviderConfig:
    """The provider described by the PENSIEVE_CLOUD_* settings (`private_ok`: it is the trusted tier)."""
    base_url = base_url.strip().rstrip("/")
    _check_common(name, base_url, timeout_seconds, first_token_timeout_seconds)
    return ProviderConfig(
        name=name,
        base_url=base_url,
        api_key=api_key,
        models=(CloudModel(model.strip(), price_input, price_output),),
        timeout_seconds=timeout_seconds,
        first_token_timeout_seconds=first_token_timeout_seconds,
        private_ok=private_ok,
    )


def _flag(table: dict[str, Any], key: str, where: str) -> bool:
    """A true/false key (false when absent): a string such as "yes" is refused, not guessed."""
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ProviderConfigError(f"{where}: {key} must be true or false, not {value!r}")
    return value


def _number(table: dict[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProviderConfigError(f"{where}: {key} must be a non-negative number, not {value!r}")
    return float(value)


def _string_map(table: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ProviderConfigError(f"{where}: {key} must be a table of strings")
    return {str(k): v for k, v in value.items()}


def _model(table: Any, where: str) -> CloudModel:
    if not isinstance(table, dict):
        raise ProviderConfigError(f"{where}: each [[providers.models]] must be a table")
    unknown = set(table) - _MODEL_KEYS
    if unknown:
        raise ProviderConfigError(f"{where}: unknown model key(s) {', '.join(sorted(unknown))}")
    model_id = table.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ProviderConfigError(f"{where}: every model needs an id")
    where = f"{where} model {model_id!r}"
    context = table.get("context_length")
    if context is not None and (isinstance(context, bool) or not isinstance(context, int) or context < 1):
        raise ProviderConfigError(f"{where}: context_length must be a positive integer")
    return CloudModel(
        id=model_id.strip(),
        price_input=_number(table, "price_input", where, 0.0),
        price_output=_number(table, "price_output", where, 0.0),
        context_length=context,
    )


def _api_key(table: dict[str, Any], where: str) -> SecretStr | None:
    inline, variable = table.get("api_key"), table.get("api_key_env")
    if inline is not None and variable is not None:
        raise ProviderConfigError(f"{where}: set api_key or api_key_env, not both")
    if variable is not None:
        if not isinstance(variable, str) or not variable:
            raise ProviderConfigError(f"{where}: api_key_env must name an environment variable")
        value = os.environ.get(variable, "").strip()
        if not value:
            raise ProviderConfigError(f"{where}: the environment variable {variable} (api_key_env) is not set")
        return SecretStr(value)
    if inline is not None:
        if not isinstance(inline, str):
            raise ProviderConfigError(f"{where}: api_key must be a string")
        return SecretStr(inline) if inline.strip() else None
    return None


def provider_from_table(table: Any, index: int) -> ProviderConfig:
    """One `[[providers]]` table, validated."""
    where = f"providers[{index}]"
    if not isinstance(table, dict):
        raise ProviderConfigError(f"{where} must be a table")
    name = table.get("name")
    if not isinstance(name, str):
        raise ProviderConfigError(f"{where}: name is required")
    where = f"provider {name!r}"
    unknown = set(table) - _PROVIDER_KEYS
    if unknown:
        raise ProviderConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    base_url = table.get("base_url")
    if not isinstance(base_url, str):
        raise ProviderConfigError(f"{where}: base_url is required")
    timeout = _number(table, "timeout_seconds", where, DEFAULT_TIMEOUT_SECONDS)
    first_token = _number(table, "first_token_timeout_seconds", where, DEFAULT_FIRST_TOKEN_TIMEOUT_SECONDS)
    _check_common(name, base_url.strip(), timeout, first_token)
    models = table.get("models")
    if not isinstance(models, list) or not models:
        raise ProviderConfigError(f"{where}: declare at least one [[providers.models]]")
    return ProviderConfig(
        name=name,
        base_url=base_url.strip().rstrip("/"),
        api_key=_api_key(table, where),
        models=tuple(_model(model, where) for model in models),
        timeout_seconds=timeout,
        first_token_timeout_seconds=first_token,
        default=_flag(table, "default", where),
        headers=_string_map(table, "headers", where),
        query=_string_map(table, "query", where),
        private_ok=_flag(table, "private_ok", where),
    )


def parse_providers(data: dict[str, Any]) -> list[ProviderConfig]:
    """Providers from the parsed TOML document; names must be unique and at most one may be the default."""
    tables = data.get("providers", [])
    if not isinstance(tables, list):
        raise ProviderConfigError("'providers' must be an array of tables ([[providers]])")
    providers = [provider_from_table(table, index) for index, table in enumerate(tables)]
    names = [provider.name for provider in providers]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ProviderConfigError(f"provider name(s) declared twice: {', '.join(duplicates)}")
    if sum(provider.default for provider in providers) > 1:
        raise ProviderConfigError("only one provider may set default = true")
    return providers


def load_providers_file(path: Path) -> list[ProviderConfig]:
    """Read and validate a providers TOML file (OSError when unreadable, ProviderConfigError when wrong)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProviderConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_providers(data)
