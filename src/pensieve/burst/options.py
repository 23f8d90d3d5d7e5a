"""The burst settings turned into the objects routing uses: policy switches, privacy scanner, weights, caps.

Built once per settings value: a settings change builds a new BurstOptions and the planner swaps it in,
so no request ever sees half of an old configuration and half of a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pensieve.burst.complexity import ComplexityWeights
from pensieve.burst.confidence import GateConfig
from pensieve.burst.policy import PolicyConfig
from pensieve.cloud.providers import ProviderConfigError
from pensieve.cloud.registry import providers_from_settings
from pensieve.config import Settings, SettingsError
from pensieve.privacy.detectors import BUILTIN_DETECTORS
from pensieve.privacy.scanner import PrivacyConfig, PrivacyScanner


def policy_config(settings: Settings) -> PolicyConfig:
    """The policy's switches and thresholds from the settings."""
    return PolicyConfig(
        default_route=settings.burst.default_route,
        explicit=settings.burst.explicit,
        context=settings.burst.context,
        load=settings.burst.load,
        max_local_wait_ms=settings.burst.max_local_wait_ms,
        local_failure=settings.burst.local_failure,
        cloud_failure=settings.burst.cloud_failure,
        pinned_local_fallback=settings.burst.pinned_local_fallback,
        complexity=settings.burst.complexity,
        complexity_threshold=settings.burst.complexity_threshold,
        confidence=settings.burst.confidence,
        budget=settings.burst.budget,
        circuit=settings.burst.circuit,
        privacy_mode=settings.privacy.mode,
    )


def privacy_scanner(settings: Settings) -> PrivacyScanner:
    """The detectors the settings switch on, plus the user's own patterns and keywords."""
    wanted = {name.strip().lower() for name in settings.privacy.detectors}
    unknown = wanted - set(BUILTIN_DETECTORS) - {"all"}
    if unknown:
        raise ValueError(
            f"PENSIEVE_PRIVACY_DETECTORS: unknown detector(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(BUILTIN_DETECTORS)}"
        )
    detectors = frozenset(BUILTIN_DETECTORS) if "all" in wanted else frozenset(wanted)
    return PrivacyScanner(
        PrivacyConfig(
            detectors=detectors,
            custom_patterns=tuple(settings.privacy.patterns.items()),
            keywords=tuple(settings.privacy.keywords),
        )
    )


@dataclass(frozen=True)
class BurstOptions:
    """Everything routing reads from the settings, built and checked once."""

    policy: PolicyConfig
    scanner: PrivacyScanner
    weights: ComplexityWeights
    default_model: str
    daily_cap_usd: float | None
    monthly_cap_usd: float | None
    confidence: GateConfig
    hold_tokens: int  # the first tokens the cascade judges (and a cascaded stream holds back)

    @classmethod
    def from_settings(cls, settings: Settings) -> BurstOptions:
        """Build the options (ValueError names the bad PENSIEVE_* key)."""
        return cls(
            policy=policy_config(settings),
            scanner=privacy_scanner(settings),
            weights=ComplexityWeights.from_mapping(settings.burst.complexity_weights),
            default_model=settings.engine.default_model,
            daily_cap_usd=settings.budget.daily_usd,
            monthly_cap_usd=settings.budget.monthly_usd,
            confidence=GateConfig(
                threshold=settings.burst.confidence_threshold,
                target_share=settings.burst.confidence_target_share,
                window=settings.burst.confidence_window,
            ),
            hold_tokens=settings.burst.stream_hold_tokens,
        )

    @property
    def redactor(self) -> PrivacyScanner | None:
        """The scanner that masks private data before a cloud call (privacy mode `redact`), else None."""
        return self.scanner if self.policy.privacy_mode == "redact" else None


def check_burst_settings(settings: Settings) -> None:
    """Build everything the burst settings describe once, so a bad value stops start-up with one clear line."""
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("PENSIEVE_PRIVACY_PATTERNS / PENSIEVE_PRIVACY_DETECTORS", lambda: privacy_scanner(settings)),
        (
            "PENSIEVE_BURST_COMPLEXITY_WEIGHTS",
            lambda: ComplexityWeights.from_mapping(settings.burst.complexity_weights),
        ),
        ("PENSIEVE_CLOUD_PROVIDERS_FILE", lambda: providers_from_settings(settings.cloud)),
    ]
    for key, build in checks:
        try:
            build()
        except (ValueError, ProviderConfigError, OSError) as exc:
            raise SettingsError(f"invalid setting {key}: {exc}") from exc
