"""How sure a local answer is, and which answers count as unsure: a fixed threshold or a cloud share you set.

The signal is the lowest log-probability among the answer's first N sampled tokens that carry text (N =
PENSIEVE_BURST_STREAM_HOLD_TOKENS, default 2; whitespace-only tokens are skipped: engine/text.py
ConfidenceWindow). The routing bench (bench/README.md, "bench_routing.py") chose it: AUC 0.85, against
0.76-0.81 for the minimum or mean over raw first tokens and the whole answer, and judging only the first
tokens lets a stream decide before its first byte with the verdict a non-streamed request gets (98.6% of
the bench's items); holding 2 kept a confident stream's first text at 1.43x an uncascaded one's.
Clients see it as a probability (`x-pensieve-confidence`: the chance the model gave its least likely token).

`ConfidenceGate` turns the signal into escalations. With a target share it keeps the confidences of the
recent answers it judged (a rolling window) and escalates those below the quantile that sends the target
share to the cloud; a small feedback term corrects for the share actually realised, so the share tracks
the target even while the window fills. Until the window holds `warmup` answers the fixed threshold
applies. The budget caps still win: a request whose plan may not use the cloud is never judged here.
Pure and synchronous (the event loop is its only caller), so it is unit-tested directly.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The gate falls back to the fixed threshold until it has seen this many answers.
WARMUP_ANSWERS = 20
# How strongly the realised share pulls the quantile aimed at (aim = target + gain x (target - realised)).
# Simulated on stationary streams (40 seeds x 600 answers, window 200, target 0.3): the worst 200-answer
# window missed the target by 8.5 points without feedback, 6 with gain 1, 5 with gain 3, while a gain of 3
# still settles without swinging on a window as small as 40.
SHARE_FEEDBACK = 3.0


def answer_confidence(logprobs: Sequence[float]) -> float | None:
    """The confidence signal of an answer: the minimum of its measured token log-probabilities (None if none)."""
    return min(logprobs) if logprobs else None


def as_probability(confidence: float) -> float:
    """A log-probability as the probability clients see (0..1, rounded to 4 places)."""
    return round(math.exp(max(confidence, -700.0)), 4)


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` (0 <= q <= 1), interpolated between the two nearest ranks."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class GateConfig:
    """How the gate judges: the expert threshold, or a target share over a window of recent answers."""

    threshold: float = -1.0  # log-probability below which an answer is unsure (no target share, or warming up)
    target_share: float | None = None  # fraction of judged answers to send to the cloud
    window: int = 200


class ConfidenceGate:
    """Decides which local answers are unsure enough to re-ask the cloud."""

    def __init__(self, config: GateConfig) -> None:
        self.config = config
        self._confidences: deque[float] = deque(maxlen=config.window)
        self._escalated: deque[bool] = deque(maxlen=config.window)

    def reconfigure(self, config: GateConfig) -> None:
        """Use new settings; the recent answers are kept (resized to the new window)."""
        if config.window != self.config.window:
            self._confidences = deque(self._confidences, maxlen=config.window)
            self._escalated = deque(self._escalated, maxlen=config.window)
        self.config = config

    @property
    def realised_share(self) -> float | None:
        """The share of the recently judged answers that went to the cloud (None before the first)."""
        return sum(self._escalated) / len(self._escalated) if self._escalated else None

    def threshold(self) -> float:
        """The log-probability below which an answer is unsure right now."""
        target = self.config.target_share
        if target is None or len(self._confidences) < WARMUP_ANSWERS:
            return self.config.threshold
        realised = self.realised_share
        aim = target + SHARE_FEEDBACK * (target - realised) if realised is not None else target
        aim = min(max(aim, 0.0), 1.0)
        if aim <= 0.0:
            return -math.inf
        if aim >= 1.0:
            return math.inf
        return quantile(self._confidences, aim)

    def judge(self, confidence: float | None) -> bool:
        """Whether an answer of this confidence goes to the cloud; the answer joins the window.

        An answer without a measured token (an empty answer) is as unsure as can be.
        """
        value = confidence if confidence is not None else -math.inf
        escalate = value < self.threshold()
        if math.isfinite(value):
            self._confidences.append(value)
        self._escalated.append(escalate)
        return escalate

    def snapshot(self) -> dict[str, Any]:
        """The gate as the stats endpoint shows it: target, realised share, current threshold."""
        threshold = self.threshold()
        finite = math.isfinite(threshold)
        return {
            "signal": "min_logprob_first_tokens",
            "target_share": self.config.target_share,
            "window": self.config.window,
            "judged": len(self._escalated),
            "realised_share": self.realised_share,
            "threshold_logprob": threshold if finite else None,
            "threshold_probability": as_probability(threshold) if finite else (0.0 if threshold < 0 else 1.0),
        }
