"""The private tier: `private_ok` providers, the registry's trusted model, the policy and the planner's target.

Order for a request holding private data: local, then the trusted tier (a `private_ok` provider), never a
public provider. The live proof (what each fake provider really received) is in
tests/integration/test_private_tier_live.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from pensieve.burst.accounting import RouteInfo
from pensieve.burst.ledger import SpendLedger
from pensieve.burst.options import BurstOptions
from pensieve.burst.planner import Plan, RoutePlanner
from pensieve.burst.policy import Decision, PolicyConfig, RequestFacts, Signals, decide, tier_of
from pensieve.cloud.providers import CloudModel, ProviderConfig, ProviderConfigError, parse_providers
from pensieve.cloud.registry import CloudRegistry, providers_from_settings
from pensieve.config import Settings
from pensieve.engine_api import ChatMessage, EngineStats, GenerationRequest, SamplingParams

LOCAL = "gemma-local"
TRUSTED, PUBLIC = "cluster/llama-70b", "openai/gpt-4o-mini"
EMAIL = "jane.doe@example.com"


def provider(name: str, model: str, *, private_ok: bool = False, default: bool = False) -> ProviderConfig:
    return ProviderConfig(
        name=name,
        base_url=f"http://{name}.invalid/v1",
        api_key=None,
        models=(CloudModel(model, price_input=1.0, price_output=2.0),),
        default=default,
        private_ok=private_ok,
    )


def registry(*providers: ProviderConfig) -> CloudRegistry:
    return CloudRegistry(list(providers), circuit_failures=3, circuit_cooldown=30)


BOTH = (provider("openai", "gpt-4o-mini", default=True), provider("cluster", "llama-70b", private_ok=True))


# --- configuration ----------------------------------------------------------------------------------------


def _table(**extra: Any) -> dict[str, Any]:
    return {"providers": [{"name": "cluster", "base_url": "http://10.0.0.5:8000/v1", "models": [{"id": "m"}], **extra}]}


def test_private_ok_is_parsed_shown_and_off_by_default() -> None:
    assert parse_providers(_table())[0].private_ok is False
    trusted = parse_providers(_table(private_ok=True))[0]
    assert trusted.private_ok is True and trusted.public_info()["private_ok"] is True


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, None])
def test_private_ok_must_be_a_toml_boolean(value: object) -> None:
    data = _table(private_ok=value)
    if value is None:  # TOML has no null: a missing key is the only "unset"
        data["providers"][0].pop("private_ok")
        assert parse_providers(data)[0].private_ok is False
        return
    with pytest.raises(ProviderConfigError, match="private_ok must be true or false"):
        parse_providers(data)


def test_env_provider_takes_private_ok_from_the_settings(tmp_path: Path) -> None:
    values = {"cloud_base_url": "http://10.0.0.5:8000/v1", "cloud_model": "m", "cloud_name": "cluster"}
    trusted = Settings.from_values(data_dir=tmp_path, cloud_private_ok=True, **values)
    assert providers_from_settings(trusted.cloud)[0].private_ok is True
    untrusted = Settings.from_values(data_dir=tmp_path, **values)
    assert providers_from_settings(untrusted.cloud)[0].private_ok is False


def test_trusted_model_id_prefers_a_trusted_default_then_the_first_trusted_provider() -> None:
    assert registry(provider("openai", "gpt-4o-mini")).trusted_model_id is None
    assert registry().trusted_model_id is None
    both = registry(*BOTH)
    assert (both.default_model_id, both.trusted_model_id) == (PUBLIC, TRUSTED)
    assert both.is_trusted(TRUSTED) and not both.is_trusted(PUBLIC) and not both.is_trusted("nope/x")
    trusted_default = registry(
        provider("cluster", "llama-70b", private_ok=True),
        provider("other", "small", private_ok=True, default=True),
    )
    assert trusted_default.trusted_model_id == "other/small" == trusted_default.default_model_id


# --- the policy -------------------------------------------------------------------------------------------

FACTS = RequestFacts(
    pin=None,
    local_model=LOCAL,
    cloud_model=TRUSTED,
    prompt_tokens=100,
    max_tokens=100,
    complexity_score=0.1,
    private_kinds={"email": 1},
    cloud_trusted=True,
)
SIGNALS = Signals(True, None, 4096, 0.0, True, True, "closed", 0.0, 0.0, 5.0, 50.0, 0.001)


CONFIG = PolicyConfig()


def run(config: PolicyConfig = CONFIG, **changes: Any) -> Decision:
    facts = {k: v for k, v in changes.items() if k in RequestFacts.__dataclass_fields__}
    signals = {k: v for k, v in changes.items() if k in Signals.__dataclass_fields__}
    return decide(config, replace(FACTS, **facts), replace(SIGNALS, **signals))


def privacy(decision: Decision) -> tuple[str, str]:
    return next((v.vote, v.detail) for v in decision.verdicts if v.criterion == "privacy")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"prompt_tokens": 5000}, "context"),
        ({"local_available": False, "local_unavailable_reason": "cannot be loaded"}, "local_failure"),
        ({"local_wait_ms": 1e9}, "load"),
        ({"pin": "header_cloud"}, "explicit"),
        ({"pin": "model_cloud"}, "explicit"),  # the trusted model named explicitly
    ],
)
def test_private_request_local_cannot_serve_escalates_to_the_trusted_tier(changes: dict[str, Any], reason: str) -> None:
    decision = run(**changes)
    assert (decision.route, decision.reason, decision.model, decision.tier) == ("cloud", reason, TRUSTED, "trusted")
    assert decision.redact is False
    vote, detail = privacy(decision)
    assert vote == "abstain" and detail == "found email×1: may go only to the trusted provider 'cluster', unmasked"


def test_private_request_that_fits_stays_local_with_the_trusted_tier_as_its_fallback() -> None:
    decision = run()
    assert (decision.route, decision.reason, decision.tier, decision.fallback) == ("local", "default", "local", "cloud")
    assert run(replace(CONFIG, confidence=True)).cascade is True  # unsure answers ask the trusted tier
    # From the trusted tier a private request falls back to local only: it has no other cloud target.
    assert run(complexity_score=0.9).fallback == "local"


def test_without_a_trusted_tier_private_data_is_blocked_as_before() -> None:
    public: dict[str, Any] = {"cloud_model": PUBLIC, "cloud_trusted": False}
    refused = run(prompt_tokens=5000, **public)
    assert (refused.route, refused.error_code, refused.tier) == (None, "private_data_blocked", None)
    pinned = run(pin="model_cloud", **public)  # a public model named explicitly stays blocked
    assert (pinned.route, pinned.reason, pinned.fallback) == ("local", "privacy", None)
    assert privacy(pinned)[0] == "no_cloud"


def test_redact_mode_masks_for_public_providers_only() -> None:
    redact = replace(CONFIG, privacy_mode="redact")
    trusted = run(redact, prompt_tokens=5000)
    assert (trusted.route, trusted.tier, trusted.redact) == ("cloud", "trusted", False)
    public = run(redact, prompt_tokens=5000, cloud_model=PUBLIC, cloud_trusted=False)
    assert (public.route, public.tier, public.redact) == ("cloud", "public", True)


def test_a_private_session_may_use_the_trusted_tier_and_never_a_public_one() -> None:
    session: dict[str, Any] = {"private_kinds": {}, "session_private": ("email",)}
    trusted = run(prompt_tokens=5000, **session)
    assert (trusted.route, trusted.tier) == ("cloud", "trusted")
    assert privacy(trusted)[1].endswith("(email): it may go only to the trusted provider 'cluster'")
    assert run(**session).reason == "default"  # local by choice, not because the session is stuck here
    public = run(prompt_tokens=5000, cloud_model=PUBLIC, cloud_trusted=False, **session)
    assert (public.route, public.error_code) == (None, "private_data_blocked")
    assert run(cloud_model=PUBLIC, cloud_trusted=False, **session).reason == "session_private"


def test_the_tier_is_in_the_decision_record_and_the_headers() -> None:
    assert run(prompt_tokens=5000).as_dict()["tier"] == "trusted"
    plain = run(prompt_tokens=5000, private_kinds={}, cloud_model=PUBLIC, cloud_trusted=False)
    assert plain.as_dict()["tier"] == "public"
    assert (tier_of("local", True), tier_of(None, True)) == ("local", None)
    assert RouteInfo("local", "default", LOCAL).headers()["x-pensieve-tier"] == "local"
    assert RouteInfo("cloud", "context", TRUSTED, tier="trusted").headers()["x-pensieve-tier"] == "trusted"
    assert RouteInfo("cloud", "explicit", PUBLIC).tier == "public"


# --- the planner ------------------------------------------------------------------------------------------


@dataclass
class FakeLocal:
    """A loaded local model with a fixed context and prompt size; never generates."""

    model_id: str = LOCAL
    context_length: int = 4096
    prompt_tokens: int = 50

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """The scripted prompt size."""
        return self.prompt_tokens

    def stats(self) -> EngineStats:
        """Idle."""
        return EngineStats(model=self.model_id)


@dataclass
class FakePool:
    """The model pool as the planner sees it."""

    engine: FakeLocal

    async def get(self, model_id: str) -> FakeLocal:
        """The one local model."""
        return self.engine


def planner(tmp_path: Path, cloud: CloudRegistry, *, mode: str = "block", prompt_tokens: int = 50) -> RoutePlanner:
    settings = Settings.from_values(data_dir=tmp_path, privacy_mode=mode, default_model=LOCAL)
    pool: Any = FakePool(FakeLocal(prompt_tokens=prompt_tokens))
    return RoutePlanner(BurstOptions.from_settings(settings), pool, cloud, SpendLedger(None))


def plan(planner: RoutePlanner, text: str, model: str = "auto", **kwargs: Any) -> Plan:
    """Plan one chat request (the planner is async; these tests have no event loop of their own)."""
    request = GenerationRequest(
        model=model, params=SamplingParams(max_tokens=16), messages=(ChatMessage("user", text),)
    )
    return asyncio.run(planner.plan(request, stream=False, header=None, **kwargs))


def test_planner_targets_the_trusted_tier_for_private_requests_only(tmp_path: Path) -> None:
    route_planner = planner(tmp_path, registry(*BOTH), prompt_tokens=5000)
    private = plan(route_planner, f"Write to {EMAIL}")
    assert (private.facts.cloud_model, private.facts.cloud_trusted) == (TRUSTED, True)
    assert (private.decision.route, private.decision.tier, private.decision.reason) == ("cloud", "trusted", "context")
    assert private.explain()["facts"]["cloud_trusted"] is True
    plain = plan(route_planner, "Say hello.")
    assert (plain.facts.cloud_model, plain.decision.tier) == (PUBLIC, "public")
    session = plan(route_planner, "Say hello.", session_private=("email",))
    assert session.decision.tier == "trusted"
    attached = plan(route_planner, "Summarise the file.", file_private=("credit_card",))
    assert attached.decision.tier == "trusted"


def test_planner_keeps_an_explicitly_named_cloud_model(tmp_path: Path) -> None:
    route_planner = planner(tmp_path, registry(*BOTH))
    public = plan(route_planner, f"Write to {EMAIL}", model=PUBLIC)
    assert (public.facts.cloud_model, public.decision.route, public.decision.reason) == (PUBLIC, "local", "privacy")
    trusted = plan(route_planner, f"Write to {EMAIL}", model="llama-70b")
    assert (trusted.decision.route, trusted.decision.reason, trusted.decision.tier) == ("cloud", "explicit", "trusted")


def test_planner_sends_the_trusted_tier_unmasked_and_public_providers_masked(tmp_path: Path) -> None:
    trusted = plan(planner(tmp_path, registry(*BOTH), mode="redact", prompt_tokens=5000), f"Mail {EMAIL}")
    assert (trusted.decision.tier, trusted.redactor) == ("trusted", None)
    public_only = planner(tmp_path, registry(BOTH[0]), mode="redact", prompt_tokens=5000)
    public = plan(public_only, f"Mail {EMAIL}")
    assert (public.decision.tier, public.decision.redact) == ("public", True) and public.redactor is not None


def test_planner_reads_the_trusted_providers_circuit(tmp_path: Path) -> None:
    cloud = registry(*BOTH)
    for _ in range(3):
        cloud.breaker(TRUSTED).record_failure("HTTP 503")
    private = plan(planner(tmp_path, cloud, prompt_tokens=5000), f"Write to {EMAIL}")
    assert private.signals.circuit_allows is False
    # The trusted provider is failing and no public one may take it: refused, never sent to the public one.
    assert (private.decision.route, private.decision.reason) == (None, "circuit_open")
