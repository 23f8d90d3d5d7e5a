"""The configured cloud providers and their models: one CloudEngine per model, one circuit breaker per provider.

Model ids are `<provider>/<model>`; a bare model id is accepted when exactly one provider offers it.
Providers marked `private_ok` form the trusted tier: `trusted_model_id` is where private requests go.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pensieve.cloud.circuit import CircuitBreaker
from pensieve.cloud.engine import CloudEngine
from pensieve.cloud.providers import (
    CloudModel,
    ProviderConfig,
    ProviderConfigError,
    load_providers_file,
    provider_from_env,
)
from pensieve.settings_sections import CloudSettings


def providers_from_settings(settings: CloudSettings) -> list[ProviderConfig]:
    """The `.env` provider (when base URL and model are set) followed by those of the providers file."""
    providers: list[ProviderConfig] = []
    if settings.base_url and settings.model:
        providers.append(
            provider_from_env(
                name=settings.name,
                base_url=settings.base_url,
                api_key=settings.api_key,
                model=settings.model,
                price_input=settings.price_input,
                price_output=settings.price_output,
                timeout_seconds=settings.timeout_seconds,
                first_token_timeout_seconds=settings.first_token_timeout_seconds,
                private_ok=settings.private_ok,
            )
        )
    if settings.providers_file is not None:
        providers.extend(load_providers_file(Path(settings.providers_file)))
    names = [provider.name for provider in providers]
    if len(set(names)) != len(names):
        raise ProviderConfigError(
            f"provider name {settings.name!r} (PENSIEVE_CLOUD_NAME) is also declared in the providers file"
        )
    return providers


class CloudRegistry:
    """Every cloud model the server may burst to, with the breakers that guard their providers."""

    def __init__(self, providers: list[ProviderConfig], *, circuit_failures: int, circuit_cooldown: float) -> None:
        self._engines: dict[str, CloudEngine] = {}
        self._install(providers, circuit_failures, circuit_cooldown)

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> CloudRegistry:
        """The registry of the providers the settings declare."""
        return cls(
            providers_from_settings(settings),
            circuit_failures=settings.circuit_failures,
            circuit_cooldown=settings.circuit_cooldown_seconds,
        )

    def _install(self, providers: list[ProviderConfig], circuit_failures: int, circuit_cooldown: float) -> None:
        self.providers = providers
        self.breakers = {p.name: CircuitBreaker(circuit_failures, circuit_cooldown) for p in providers}
        self._models: dict[str, tuple[ProviderConfig, CloudModel]] = {}
        for provider in providers:
            for model in provider.models:
                self._models[f"{provider.name}/{model.id}"] = (provider, model)
        default = next((p for p in providers if p.default), providers[0] if providers else None)
        self.default_model_id = f"{default.name}/{default.models[0].id}" if default and default.models else None
        # The trusted tier's model: the default provider's when it is trusted (so `auto` and private requests
        # agree), else the first trusted provider's first model; None when no provider is trusted.
        trusted = default if default is not None and default.private_ok else None
        trusted = trusted or next((p for p in providers if p.private_ok and p.models), None)
        self.trusted_model_id = f"{trusted.name}/{trusted.models[0].id}" if trusted and trusted.models else None

    async def reconfigure(self, settings: CloudSettings) -> None:
        """Switch to the providers of `settings` in place (breakers start closed), closing the old clients.

        In place, so every service holding this registry sees the new providers from the next request on.
        """
        old_engines = list(self._engines.values())
        self._engines = {}
        self._install(
            providers_from_settings(settings),
            settings.circuit_failures,
            settings.circuit_cooldown_seconds,
        )
        for engine in old_engines:
            await engine.close()

    @property
    def configured(self) -> bool:
        """True when at least one cloud model exists."""
        return bool(self._models)

    def model_ids(self) -> list[str]:
        """Every `<provider>/<model>` id."""
        return list(self._models)

    def resolve(self, model_id: str) -> str | None:
        """The full id for `model_id` (`provider/model`, or a bare model id offered by one provider)."""
        if model_id in self._models:
            return model_id
        matches = [full for full, (_, model) in self._models.items() if model.id == model_id]
        return matches[0] if len(matches) == 1 else None

    def is_trusted(self, model_id: str) -> bool:
        """Whether a cloud model (full id) belongs to a `private_ok` provider: it may receive private data."""
        entry = self._models.get(model_id)
        return entry is not None and entry[0].private_ok

    def model(self, model_id: str) -> CloudModel:
        """The price and limits of a cloud model (full id)."""
        return self._models[model_id][1]

    def provider_of(self, model_id: str) -> ProviderConfig:
        """The provider serving a cloud model (full id)."""
        return self._models[model_id][0]

    def breaker(self, model_id: str) -> CircuitBreaker:
        """The circuit breaker of the provider of a cloud model (full id)."""
        return self.breakers[self._models[model_id][0].name]

    def reset_circuits(self, provider: str | None = None) -> list[str]:
        """Close the circuit of `provider` (every provider when None); the names reset. KeyError if unknown."""
        names = [provider] if provider is not None else list(self.breakers)
        for name in names:
            self.breakers[name].reset()
        return names

    def engine(self, model_id: str) -> CloudEngine:
        """The engine for a cloud model (full id), created on first use."""
        engine = self._engines.get(model_id)
        if engine is None:
            provider, model = self._models[model_id]
            engine = CloudEngine(provider, model, self.breakers[provider.name])
            self._engines[model_id] = engine
        return engine

    def public_info(self) -> list[dict[str, Any]]:
        """Providers as the stats and settings endpoints show them: keys masked, never in clear."""
        return [{**p.public_info(), "circuit": self.breakers[p.name].snapshot()} for p in self.providers]

    async def close(self) -> None:
        """Close every provider client."""
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()
