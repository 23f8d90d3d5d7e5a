"""Routing quality from one local pass: how well a confidence signal separates right from wrong answers,
and what a cascade that escalates the least confident share would reach, against random and perfect routers.

The cloud is an oracle (always right), so escalating an item makes it right. PGR (performance gap
recovered) = (accuracy - local accuracy) / (cloud accuracy - local accuracy).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    """One local answer: right or wrong, and its confidence signals (higher = surer)."""

    right: bool
    signals: dict[str, float]


def auc(scored: Sequence[Scored], signal: str) -> float:
    """P(a right answer is surer than a wrong one), ties counting half (the ROC area)."""
    right = [s.signals[signal] for s in scored if s.right]
    wrong = [s.signals[signal] for s in scored if not s.right]
    if not right or not wrong:
        return float("nan")
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return wins / (len(right) * len(wrong))


def cascade_accuracy(scored: Sequence[Scored], signal: str, share: float) -> float:
    """Accuracy when the `share` least confident answers go to the (always right) cloud."""
    ranked = sorted(scored, key=lambda s: s.signals[signal])
    escalated = round(share * len(ranked))
    kept = ranked[escalated:]
    return (escalated + sum(s.right for s in kept)) / len(ranked)


def random_accuracy(scored: Sequence[Scored], share: float, trials: int = 200, seed: int = 1) -> float:
    """Mean accuracy when a random `share` goes to the cloud."""
    rng = random.Random(seed)
    n, escalated = len(scored), round(share * len(scored))
    total = 0.0
    for _ in range(trials):
        chosen = set(rng.sample(range(n), escalated))
        total += sum(1 if i in chosen else s.right for i, s in enumerate(scored)) / n
    return total / trials


def perfect_accuracy(scored: Sequence[Scored], share: float) -> float:
    """Accuracy when the wrong answers go to the cloud first."""
    n = len(scored)
    wrong = sum(not s.right for s in scored)
    return (n - wrong + min(wrong, round(share * n))) / n


def pgr(accuracy: float, local: float, cloud: float = 1.0) -> float:
    """Performance gap recovered: 0 = local alone, 1 = the cloud's accuracy."""
    return (accuracy - local) / (cloud - local) if cloud > local else float("nan")


# The confidence signals of one answer: whole-answer mean and minimum, and the minimum and mean over its
# first k tokens (the window a streamed cascade holds back before its first byte). At k = 1 both are the
# first token's log-probability. `text@k`: the minimum over the first k tokens that carry text, skipping
# whitespace-only tokens (a leading space before a number is near-certain and says nothing): what the
# server's cascade judges (burst/confidence.py).
WINDOWS = (1, 2, 4, 8)
TEXT_WINDOWS = (1, 2, 3, 4)
SIGNALS = (
    "mean",
    "min",
    "first",
    *(f"{stat}@{k}" for k in WINDOWS[1:] for stat in ("min", "mean")),
    *(f"text@{k}" for k in TEXT_WINDOWS),
)
EMPTY = -99.0  # the signal of an empty answer: as unsure as can be


def signals(logprobs: Sequence[float], tokens: Sequence[str] = ()) -> dict[str, float]:
    """Every signal of `SIGNALS` for one answer's token log-probabilities and tokens (a window longer than the
    answer covers the whole answer; without tokens every token counts as text)."""
    if not logprobs:
        return dict.fromkeys(SIGNALS, EMPTY)
    found = {"mean": sum(logprobs) / len(logprobs), "min": min(logprobs), "first": logprobs[0]}
    for k in WINDOWS[1:]:
        head = logprobs[:k]
        found[f"min@{k}"] = min(head)
        found[f"mean@{k}"] = sum(head) / len(head)
    texts = tokens or ["x"] * len(logprobs)
    with_text = [lp for lp, token in zip(logprobs, texts, strict=False) if token.strip()]
    for k in TEXT_WINDOWS:
        found[f"text@{k}"] = min(with_text[:k]) if with_text else EMPTY
    return found


def best_signal(scored: Sequence[Scored]) -> tuple[str, float]:
    """The signal with the highest AUC (the first listed on a tie) and that AUC."""
    aucs = {name: auc(scored, name) for name in SIGNALS}
    name = max(SIGNALS, key=lambda n: (aucs[n] if aucs[n] == aucs[n] else -1.0, -SIGNALS.index(n)))
    return name, aucs[name]
