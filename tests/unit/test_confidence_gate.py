"""The confidence gate: the signal, the fixed threshold, and a cloud share that tracks its target."""

from __future__ import annotations

import math
import random

import pytest

from pensieve.burst.confidence import (
    WARMUP_ANSWERS,
    ConfidenceGate,
    GateConfig,
    answer_confidence,
    as_probability,
    quantile,
)


def test_the_signal_is_the_least_likely_token() -> None:
    assert answer_confidence([-0.1, -2.5, -0.3]) == -2.5
    assert answer_confidence([]) is None
    assert as_probability(0.0) == 1.0 and as_probability(-math.log(2)) == 0.5
    assert as_probability(-10_000.0) == 0.0


def test_quantile_interpolates_between_ranks() -> None:
    assert quantile([3.0, 1.0, 2.0], 0.0) == 1.0
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([1.0, 2.0], 0.25) == pytest.approx(1.25)
    assert quantile([5.0], 0.9) == 5.0


def test_without_a_target_the_fixed_threshold_decides() -> None:
    gate = ConfidenceGate(GateConfig(threshold=-1.0))
    assert gate.judge(-1.5) is True
    assert gate.judge(-0.5) is False
    assert gate.judge(None) is True  # an answer without a single token is as unsure as can be
    assert gate.realised_share == pytest.approx(2 / 3)


def test_the_threshold_applies_while_the_window_warms_up() -> None:
    gate = ConfidenceGate(GateConfig(threshold=-1.0, target_share=0.5))
    for _ in range(WARMUP_ANSWERS - 1):
        assert gate.judge(-0.5) is False
    assert gate.threshold() == -1.0
    gate.judge(-0.5)
    assert gate.threshold() != -1.0  # the window now decides


@pytest.mark.parametrize("target", [0.1, 0.3, 0.5])
def test_the_realised_share_tracks_the_target_on_a_stationary_stream(target: float) -> None:
    gate = ConfidenceGate(GateConfig(threshold=-2.0, target_share=target, window=200))
    rng = random.Random(16)
    decisions = [gate.judge(-5 * rng.betavariate(0.5, 2)) for _ in range(1000)]
    for start in range(0, 801, 100):
        share = sum(decisions[start : start + 200]) / 200
        assert abs(share - target) <= 0.05, (start, share)


def test_the_least_sure_answers_are_the_ones_escalated() -> None:
    gate = ConfidenceGate(GateConfig(target_share=0.3, window=200))
    rng = random.Random(7)
    judged = [(value, gate.judge(value)) for value in (-rng.expovariate(1.0) for _ in range(600))]
    settled = judged[200:]
    kept = sorted(value for value, escalated in settled if not escalated)
    sent = sorted(value for value, escalated in settled if escalated)
    # Nearly every escalated answer is less sure than nearly every kept one (the quantile moves a little).
    assert quantile(sent, 0.9) <= quantile(kept, 0.1)


def test_reconfigure_keeps_the_recent_answers() -> None:
    gate = ConfidenceGate(GateConfig(target_share=0.3, window=100))
    for index in range(50):
        gate.judge(-0.01 * index)
    gate.reconfigure(GateConfig(target_share=0.5, window=30))
    snapshot = gate.snapshot()
    assert (snapshot["target_share"], snapshot["window"], snapshot["judged"]) == (0.5, 30, 30)
    assert 0.0 <= snapshot["threshold_probability"] <= 1.0
    assert snapshot["threshold_logprob"] is not None
