"""The routing sections: the cloud provider, the burst criteria, the budget, privacy."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from pensieve.settings_sections.base import Section, empty_is_none, json_object, split_list


class CloudSettings(Section):
    """The cloud provider of the common case: one OpenAI-compatible endpoint (more in the providers file)."""

    title: ClassVar[str] = "Cloud"
    env_prefix: ClassVar[str] = "cloud_"

    name: str = Field(
        "cloud", pattern=r"^[a-z0-9_-]+$", description="Provider name; its models appear as '<name>/<model>'."
    )
    base_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. https://api.openai.com/v1.")
    api_key: SecretStr | None = Field(None, description="The provider's API key (never logged or returned).")
    model: str | None = Field(None, description="Model id at the provider, e.g. gpt-4o-mini.")
    price_input: float = Field(0.0, ge=0.0, description="USD per million prompt tokens.")
    price_output: float = Field(0.0, ge=0.0, description="USD per million completion tokens.")
    timeout_seconds: float = Field(60.0, gt=0.0, description="Whole-request timeout for cloud calls.")
    first_token_timeout_seconds: float = Field(
        20.0, gt=0.0, description="A cloud stream that sends nothing for this long counts as failed."
    )
    private_ok: bool = Field(
        False,
        description="Trusted tier: this provider is the organisation's own endpoint, so private requests may go "
        "there (unmasked); never set it for a public provider.",
    )
    providers_file: Path | None = Field(None, description="Optional TOML file declaring more providers.")
    circuit_failures: int = Field(3, ge=1, description="Consecutive cloud failures that open the circuit.")
    circuit_cooldown_seconds: float = Field(
        30.0, gt=0.0, description="Seconds an open circuit waits before one probe request."
    )

    _optional = field_validator("api_key", "base_url", "model", "providers_file", mode="before")(empty_is_none)


class BurstSettings(Section):
    """The burst criteria: when a request goes to the cloud (docs/routing.md)."""

    title: ClassVar[str] = "Burst"
    env_prefix: ClassVar[str] = "burst_"

    default_route: Literal["local", "cloud"] = Field(
        "local", description="Route when no criterion decides; 'cloud' bursts whenever budget and privacy allow."
    )
    explicit: bool = Field(True, description="Honour the model / X-Pensieve-Route header asking for cloud.")
    context: bool = Field(True, description="Send prompts that do not fit the local context to the cloud.")
    load: bool = Field(True, description="Burst when the local estimated wait exceeds the limit below.")
    max_local_wait_ms: float = Field(10_000.0, ge=0.0, description="Local wait (ms) above which to burst.")
    local_failure: bool = Field(True, description="Retry on the cloud when the local model fails.")
    cloud_failure: bool = Field(True, description="Fall back to the local model when the cloud fails.")
    pinned_local_fallback: bool = Field(
        True, description="Let context and local-failure move a request naming a local model to the cloud."
    )
    complexity: bool = Field(True, description="Burst prompts whose complexity score reaches the threshold.")
    complexity_threshold: float = Field(0.6, ge=0.0, le=1.0)
    complexity_weights: dict[str, float] = Field(
        default_factory=dict, description="JSON object overriding weights of length, code, math, reasoning."
    )
    confidence: bool = Field(False, description="Cascade: re-ask the cloud when the local answer is unsure.")
    confidence_target_share: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Share of cascaded answers to send to the cloud, e.g. 0.3: the least sure ones; empty = use "
        "the threshold.",
    )
    confidence_window: int = Field(
        200, ge=20, le=100_000, description="Recent answers the target share is measured and kept over."
    )
    confidence_threshold: float = Field(
        -2.0,
        le=0.0,
        description="Expert: lowest token log-probability of the first held tokens below which an answer is unsure "
        "(used without a target share).",
    )
    stream_hold_tokens: int = Field(
        2,
        ge=1,
        le=64,
        description="Tokens the cascade judges an answer by; a cascaded stream holds them back before its first byte.",
    )
    budget: bool = Field(True, description="Enforce the cloud spend caps (PENSIEVE_BUDGET_*).")
    circuit: bool = Field(True, description="Keep requests local while a provider's circuit is open.")

    _weights = field_validator("complexity_weights", mode="before")(json_object)
    _share = field_validator("confidence_target_share", mode="before")(empty_is_none)


class BudgetSettings(Section):
    """The cloud spend caps the budget criterion enforces."""

    title: ClassVar[str] = "Budget"
    env_prefix: ClassVar[str] = "budget_"

    daily_usd: float | None = Field(5.0, ge=0.0, description="Daily cloud spend cap in USD; empty = none.")
    monthly_usd: float | None = Field(50.0, ge=0.0, description="Monthly cap in USD; empty = none.")

    _optional = field_validator("daily_usd", "monthly_usd", mode="before")(empty_is_none)


class PrivacySettings(Section):
    """What counts as private data, and what happens to a request that holds some."""

    title: ClassVar[str] = "Privacy"
    env_prefix: ClassVar[str] = "privacy_"

    mode: Literal["block", "redact", "off"] = Field(
        "block", description="block: private data never leaves; redact: masked before cloud; off: no check."
    )
    detectors: list[str] = Field(
        default_factory=lambda: ["all"], description="Comma list of built-in detectors, or 'all'."
    )
    patterns: dict[str, str] = Field(
        default_factory=dict, description='JSON object of extra detectors: {"name": "regex"}.'
    )
    keywords: list[str] = Field(default_factory=list, description="Comma list of words that mark a request private.")

    _lists = field_validator("detectors", "keywords", mode="before")(split_list)
    _patterns = field_validator("patterns", mode="before")(json_object)
