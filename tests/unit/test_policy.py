"""The burst policy is pure: every criterion, their precedence and the fallbacks, without any I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pensieve.burst.policy import Decision, PolicyConfig, RequestFacts, Signals, decide

LOCAL, CLOUD = "gemma-3-270m-q4_k_m", "cloud/gpt-4o-mini"

FACTS = RequestFacts(
    pin=None, local_model=LOCAL, cloud_model=CLOUD, prompt_tokens=100, max_tokens=100, complexity_score=0.1
)
SIGNALS = Signals(
    local_available=True,
    local_unavailable_reason=None,
    local_context_length=4096,
    local_wait_ms=0.0,
    cloud_configured=True,
    circuit_allows=True,
    circuit_state="closed",
    spent_today_usd=0.0,
    spent_month_usd=0.0,
    daily_cap_usd=5.0,
    monthly_cap_usd=50.0,
    estimated_cost_usd=0.001,
)
CONFIG = PolicyConfig()


def run(config: PolicyConfig = CONFIG, **changes: object) -> Decision:
    facts_changes = {k: v for k, v in changes.items() if k in RequestFacts.__dataclass_fields__}
    signal_changes = {k: v for k, v in changes.items() if k in Signals.__dataclass_fields__}
    return decide(config, replace(FACTS, **facts_changes), replace(SIGNALS, **signal_changes))  # type: ignore[arg-type]


def verdict(decision: Decision, criterion: str) -> str:
    return next(v.vote for v in decision.verdicts if v.criterion == criterion)


def test_plain_request_runs_locally_with_cloud_fallback() -> None:
    decision = run()
    assert (decision.route, decision.reason, decision.model, decision.fallback) == ("local", "default", LOCAL, "cloud")
    assert {v.criterion for v in decision.verdicts} == {
        "privacy", "budget", "connectivity", "explicit", "context", "local_failure", "load", "complexity",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"pin": "header_cloud"}, "explicit"),
        ({"pin": "model_cloud"}, "explicit"),
        ({"prompt_tokens": 4000}, "context"),
        ({"local_wait_ms": 20_000.0}, "load"),
        ({"complexity_score": 0.9}, "complexity"),
        ({"local_available": False, "local_unavailable_reason": "corrupt file"}, "local_failure"),
    ],
)
def test_each_criterion_can_send_a_request_to_the_cloud(changes: dict[str, object], reason: str) -> None:
    decision = run(**changes)
    assert (decision.route, decision.reason, decision.model) == ("cloud", reason, CLOUD)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"pin": "header_cloud"}, "explicit"),
        ({"prompt_tokens": 4000}, "context"),
        ({"local_wait_ms": 20_000.0}, "load"),
        ({"complexity_score": 0.9}, "complexity"),
        ({"pin": "model_cloud", "complexity_score": 0.9, "local_wait_ms": 1e9}, "all"),
    ],
)
def test_privacy_block_beats_every_other_criterion(changes: dict[str, object], reason: str) -> None:
    decision = run(private_kinds={"email": 1}, **changes)
    assert decision.route != "cloud"
    assert decision.fallback is None  # not even a fallback may reach the cloud
    assert verdict(decision, "privacy") == "no_cloud"
    if decision.route is None:
        assert decision.error_code == "private_data_blocked"
    else:
        assert decision.reason == "privacy"


def test_private_prompt_that_only_the_cloud_could_take_is_refused_clearly() -> None:
    decision = run(private_kinds={"credit_card": 2}, prompt_tokens=5000)
    assert decision.route is None
    assert decision.error_code == "private_data_blocked"
    assert "credit_card" in decision.detail and "4096" in decision.detail


def test_redact_mode_allows_the_cloud_but_masks() -> None:
    decision = run(replace(CONFIG, privacy_mode="redact"), private_kinds={"email": 1}, complexity_score=0.9)
    assert (decision.route, decision.redact) == ("cloud", True)
    assert run(replace(CONFIG, privacy_mode="redact"), private_kinds={"email": 1}).redact is False  # local: no mask


def test_privacy_off_ignores_findings() -> None:
    decision = run(replace(CONFIG, privacy_mode="off"), private_kinds={"email": 1}, pin="header_cloud")
    assert decision.route == "cloud"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"spent_today_usd": 5.0}, "budget"),
        ({"spent_month_usd": 50.0}, "budget"),
        ({"circuit_allows": False, "circuit_state": "open"}, "circuit_open"),
    ],
)
def test_budget_and_open_circuit_keep_cloud_wanting_requests_local(changes: dict[str, object], reason: str) -> None:
    for wants_cloud in ({"complexity_score": 0.95}, {"pin": "header_cloud"}, {"local_wait_ms": 1e6}):
        decision = run(**changes, **wants_cloud)
        assert (decision.route, decision.reason, decision.fallback) == ("local", reason, None)


def test_disabled_budget_check_lets_spend_continue() -> None:
    decision = run(replace(CONFIG, budget=False), spent_today_usd=100.0, complexity_score=0.95)
    assert decision.route == "cloud"


def test_no_cloud_configured_serves_locally_and_refuses_what_local_cannot_do() -> None:
    assert run(cloud_model=None, cloud_configured=False, complexity_score=0.95).reason == "default"
    refused = run(cloud_model=None, cloud_configured=False, prompt_tokens=5000)
    assert (refused.route, refused.error_code) == (None, "context_length_exceeded")


def test_header_local_is_a_hard_pin() -> None:
    decision = run(pin="header_local", prompt_tokens=5000, complexity_score=1.0, local_wait_ms=1e9)
    assert (decision.route, decision.reason, decision.fallback) == ("local", "explicit", None)


def test_local_model_pin_may_move_for_context_only_when_allowed() -> None:
    moved = run(pin="model_local", prompt_tokens=5000)
    assert (moved.route, moved.reason) == ("cloud", "context")
    kept = run(replace(CONFIG, pinned_local_fallback=False), pin="model_local", prompt_tokens=5000)
    assert (kept.route, kept.fallback) == ("local", None)
    # Load and complexity never move a pinned request.
    assert run(pin="model_local", complexity_score=1.0, local_wait_ms=1e9).route == "local"


def test_cloud_route_falls_back_locally_only_when_the_prompt_fits() -> None:
    assert run(complexity_score=0.9).fallback == "local"
    assert run(prompt_tokens=5000).fallback is None
    assert run(replace(CONFIG, cloud_failure=False), complexity_score=0.9).fallback is None


def test_switched_off_criteria_do_not_vote() -> None:
    off = replace(CONFIG, complexity=False, load=False, context=False)
    decision = run(off, complexity_score=0.99, local_wait_ms=1e9)
    assert decision.route == "local"
    assert verdict(decision, "complexity") == "abstain" and verdict(decision, "load") == "abstain"
    # With the context criterion off, an overflowing prompt is refused instead of bursting.
    assert run(off, prompt_tokens=5000).route is None


def test_explicit_cloud_ignored_when_switched_off() -> None:
    assert run(replace(CONFIG, explicit=False), pin="header_cloud").route == "local"


def test_default_route_cloud_bursts_while_budget_allows() -> None:
    config = replace(CONFIG, default_route="cloud")
    assert (run(config).route, run(config).reason) == ("cloud", "default")
    assert (run(config, spent_today_usd=9.0).route, run(config, spent_today_usd=9.0).reason) == ("local", "budget")


def test_confidence_cascade_for_unpinned_local_answers_streamed_or_not() -> None:
    config = replace(CONFIG, confidence=True)
    assert run(config).cascade is True
    assert run(config, stream=True).cascade is True
    assert run(config, pin="model_local").cascade is False
    assert run(config, private_kinds={"email": 1}).cascade is False


def test_decision_record_holds_no_text_only_figures() -> None:
    record = run(private_kinds={"email": 2}).as_dict()
    criteria = {c["criterion"]: c for c in record["criteria"]}  # type: ignore[union-attr]
    assert criteria["privacy"]["detail"].startswith("found email×2")
    assert criteria["context"]["value"] == 200.0
