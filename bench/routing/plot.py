"""The routing bench's figure: accuracy against cloud share for the cascade, a random and a perfect router.

Offline curves come from one local pass (bench/routing/metrics.py), computed at every 5% of cloud share;
live runs add one point per cascade mode at the share they realised. Drawn with matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routing.metrics import Scored, cascade_accuracy, perfect_accuracy, random_accuracy

STEPS = [i / 20 for i in range(21)]  # cloud shares 0, 5%, ..., 100%


def draw(path: Path, scored: Sequence[Scored], signal: str, live: Sequence[dict[str, Any]] = ()) -> None:
    """Write the figure to `path` (PNG): offline curves for `signal`, random, perfect; `live` summaries as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    axes.plot(STEPS, [perfect_accuracy(scored, s) for s in STEPS], "--", color="tab:green", label="perfect router")
    axes.plot(STEPS, [cascade_accuracy(scored, signal, s) for s in STEPS], "-", color="tab:blue",
              label=f"cascade on {signal} (offline)")  # fmt: skip
    axes.plot(STEPS, [random_accuracy(scored, s, trials=50) for s in STEPS], ":", color="tab:gray",
              label="random router")  # fmt: skip
    for mode, marker, label in (("cascade", "o", "live, not streamed"), ("cascade_stream", "s", "live, streamed")):
        points = [(run[mode]["share"], run[mode]["accuracy"]) for run in live]
        if points:
            axes.scatter(*zip(*points, strict=True), marker=marker, color="tab:red", zorder=3, label=label)
    axes.set_xlabel("cloud share")
    axes.set_ylabel("accuracy (cloud = oracle)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    axes.set_title(f"Routing bench: {len(scored)} items, local accuracy {perfect_accuracy(scored, 0):.2f}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
