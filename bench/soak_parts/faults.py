"""The fault schedule: every few seconds the fake cloud is told to misbehave for its next requests.

Faults are the fake cloud's own (`FakeCloud.set_fault`), queued and consumed by the next generation
requests in order: 500 and 503 errors, 429 with `Retry-After`, hangs (the server's first-token timeout
ends them), connections dropped mid-stream, streams that stall until the server gives up, added latency.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from support.fake_cloud import FakeCloud

# The faults drawn from, with their weights: (name, weight, the keywords of set_fault minus `times`).
FAULTS: tuple[tuple[str, int, dict[str, Any]], ...] = (
    ("http_500", 3, {"status": 500}),
    ("http_503", 1, {"status": 503}),
    ("rate_limit_429", 2, {"rate_limit_retry_after": 2}),
    ("hang", 2, {"hang": True}),
    ("drop_mid_stream", 3, {"drop_after_chunks": 1}),
    ("drop_at_start", 1, {"drop_after_chunks": 0}),
    ("stall_mid_stream", 2, {"stall_after_chunks": 1}),
    ("latency", 2, {"latency": 1.5}),
)


async def inject_faults(cloud: FakeCloud, deadline: float, interval_s: float, seed: int) -> Counter[str]:
    """Queue random faults until `deadline`; count what was queued (by the requests it affects).

    A fault (for 1-3 requests) is queued at most every `interval_s` seconds and only once the previous one has
    been used up and 1-4 healthy cloud requests have passed: faults then hit a steady share of the cloud calls
    however fast the machine is, instead of piling up in the queue while the circuit keeps the cloud away.
    """
    rng = random.Random(seed)
    queued: Counter[str] = Counter()
    names, weights = [f[0] for f in FAULTS], [f[1] for f in FAULTS]
    keywords = {f[0]: f[2] for f in FAULTS}
    next_at = rng.randint(1, 4)  # the fake's request count at which the next fault may be queued
    while time.monotonic() < deadline:
        await asyncio.sleep(interval_s)
        seen = len(cloud.requests)
        if seen < next_at:
            continue
        name = rng.choices(names, weights)[0]
        times = rng.randint(1, 3)
        extra = dict(keywords[name])
        if extra.get("drop_after_chunks"):
            extra["drop_after_chunks"] = rng.randint(1, 3)
        cloud.set_fault(times=times, **extra)
        queued[name] += times
        next_at = seen + times + rng.randint(1, 4)
    return queued
