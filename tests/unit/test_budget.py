"""Budget reservations: in-flight cloud calls count against the caps, consumed by spend, released at the end."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pensieve.burst.budget import Reservations
from pensieve.burst.policy import PolicyConfig, RequestFacts, Signals, decide

FACTS = RequestFacts(pin="header_cloud", local_model="local", cloud_model="p/m", prompt_tokens=10, max_tokens=10)
SIGNALS = Signals(True, None, 4096, 0.0, True, True, "closed", 0.4, 0.4, 1.0, 10.0, 0.1)


def test_reserved_spend_counts_against_the_caps() -> None:
    assert decide(PolicyConfig(), FACTS, SIGNALS).route == "cloud"
    full = decide(PolicyConfig(), FACTS, replace(SIGNALS, reserved_usd=0.6))
    assert (full.route, full.reason) == ("local", "budget")
    assert "reserved in flight" in next(v.detail for v in full.verdicts if v.criterion == "budget")
    # The monthly cap counts reservations too.
    monthly = decide(PolicyConfig(), FACTS, replace(SIGNALS, daily_cap_usd=None, monthly_cap_usd=0.5, reserved_usd=0.1))
    assert monthly.reason == "budget"


def test_reservations_are_consumed_by_spend_and_released_once() -> None:
    reservations = Reservations()
    first, second = reservations.reserve(0.3), reservations.reserve(0.2)
    assert reservations.total_usd == pytest.approx(0.5)
    first.consume(0.1)
    assert reservations.total_usd == pytest.approx(0.4)
    first.consume(1.0)  # spent beyond its estimate: the reservation cannot go below zero
    assert first.remaining_usd == 0.0 and reservations.total_usd == pytest.approx(0.2)
    second.release()
    second.release()
    assert reservations.total_usd == 0.0
    assert reservations.reserve(-1.0).remaining_usd == 0.0
