"""What the soak watches besides the clients: the server's memory over time, and its spend against the bills.

RSS is the server process plus its model worker processes (every descendant), read from /proc every few
seconds. Spend is read from GET /api/burst/stats (the ledger's all-time cloud tokens and USD) once the clients
have stopped, and compared with what the fake cloud billed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from common import children, median, rss_bytes
from support.fake_cloud import FakeCloud


@dataclass
class RssSample:
    """One reading: seconds since the start, the server's RSS and its workers' RSS (bytes)."""

    at_s: float
    server: int
    workers: int

    @property
    def total(self) -> int:
        """Server and workers together."""
        return self.server + self.workers


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the model workers, and anything they started)."""
    found, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


async def sample_rss(pid: int, started: float, stop: asyncio.Event, every_s: float) -> list[RssSample]:
    """Read the RSS of `pid` and its descendants every `every_s` until `stop` is set."""
    samples: list[RssSample] = []
    while True:
        # /proc walks take a few ms; off the event loop so the clients' timings are not disturbed.
        kids = await asyncio.to_thread(descendants, pid)
        workers = sum(rss_bytes(kid) for kid in kids)
        samples.append(RssSample(time.monotonic() - started, rss_bytes(pid), workers))
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
            return samples
        except asyncio.TimeoutError:
            continue


@dataclass
class RssGrowth:
    """Memory at the end of the warm-up and at the end (medians of a few samples each), and the growth."""

    warm_up_s: float
    start_bytes: float
    end_bytes: float
    samples: int

    @property
    def growth_pct(self) -> float:
        """Growth from the end of the warm-up to the end, in %."""
        return (self.end_bytes / self.start_bytes - 1.0) * 100.0 if self.start_bytes else float("nan")


def rss_growth(samples: list[RssSample], warm_up_s: float, window: int = 5) -> RssGrowth:
    """The median of the first `window` samples after the warm-up against the median of the last `window`."""
    after = [s.total for s in samples if s.at_s >= warm_up_s] or [s.total for s in samples[-window:]]
    width = max(1, min(window, len(after) // 2))
    return RssGrowth(warm_up_s, median(after[:width]), median(after[-width:]), len(after))


@dataclass
class Spend:
    """Cloud spend the server recorded against what the fake cloud billed."""

    recorded_prompt: int
    recorded_completion: int
    recorded_usd: float
    billed_prompt: int
    billed_completion: int
    billed_usd: float
    bills: int
    cloud_requests: int  # the ledger's count of cloud runs
    settled_after_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def token_difference(self) -> int:
        """Recorded minus billed tokens (prompt + completion): must be 0."""
        return self.recorded_prompt + self.recorded_completion - self.billed_prompt - self.billed_completion

    @property
    def usd_difference(self) -> float:
        """Recorded minus billed USD."""
        return self.recorded_usd - self.billed_usd

    @property
    def matches(self) -> bool:
        """Prompt and completion tokens both equal (the USD then equal up to float rounding)."""
        return (self.recorded_prompt, self.recorded_completion) == (self.billed_prompt, self.billed_completion)


async def settle_spend(base_url: str, cloud: FakeCloud, prices: tuple[float, float], wait_s: float = 20.0) -> Spend:
    """Compare the ledger with the bills, waiting up to `wait_s` for the two to agree.

    A record is written when the server notices that a cloud call ended (an abandoned stream a moment after the
    client left), so the last few may land after the clients stopped.
    """
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        while True:
            stats = (await http.get("/api/burst/stats", params={"recent": 0})).json()
            tokens = stats["tokens"]
            billed_prompt, billed_completion = cloud.billed_tokens()
            spend = Spend(
                recorded_prompt=int(tokens["cloud_prompt_tokens"]),
                recorded_completion=int(tokens["cloud_completion_tokens"]),
                recorded_usd=float(stats["spend"]["all_time_usd"]),
                billed_prompt=billed_prompt,
                billed_completion=billed_completion,
                billed_usd=(billed_prompt * prices[0] + billed_completion * prices[1]) / 1_000_000,
                bills=len(cloud.bills),
                cloud_requests=int(tokens["cloud_requests"]),
                settled_after_s=time.monotonic() - started,
            )
            if spend.matches or time.monotonic() - started > wait_s:
                return spend
            await asyncio.sleep(0.5)


async def collect_decisions(base_url: str, stop: asyncio.Event, every_s: float = 5.0) -> list[dict[str, Any]]:
    """Every entry of the server's recent-decisions log, polled until `stop` is set (then read once more).

    The log keeps the last 200 decisions; polled every few seconds it misses none at the soak's pace, and
    gives each cloud run's recorded tokens, to be matched one by one with the fake's bills.
    """
    seen: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        while True:
            last = stop.is_set()
            try:
                response = await http.get("/api/burst/stats", params={"recent": 200})
                for entry in response.json()["recent"]:
                    seen[json.dumps(entry, sort_keys=True)] = entry
            except (httpx.HTTPError, ValueError, KeyError):
                pass  # a busy moment: the next poll reads the same ring again
            if last:
                return list(seen.values())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)


@dataclass
class Reconciliation:
    """The ledger's cloud runs matched one by one with the fake's bills, on (prompt, completion) tokens."""

    collected: int  # cloud runs read from the decisions log
    unmatched_records: list[dict[str, Any]]  # recorded runs no bill equals (with their error and usage_source)
    unmatched_bills: list[tuple[int, int]]  # bills no recorded run equals

    @property
    def only_abandoned_streams(self) -> bool:
        """Whether every difference is a stream the client left while cloud text was on its way.

        The ledger records the text the server received before the client left (docs/routing.md); a provider
        bills what it sent, and what was still in flight is never seen by the server.
        """
        return bool(self.unmatched_records) and all(
            r.get("error") == "client_disconnected" for r in self.unmatched_records
        )


def reconcile(decisions: list[dict[str, Any]], bills: list[dict[str, int]]) -> Reconciliation:
    """Match recorded cloud runs (a cost above 0) and bills that carry the same token counts."""
    runs = [d for d in decisions if float(d.get("cost_usd") or 0) > 0]
    left = Counter((b["prompt_tokens"], b["completion_tokens"]) for b in bills)
    unmatched_records = []
    for run in runs:
        key = (int(run["prompt_tokens"]), int(run["completion_tokens"]))
        if left[key] > 0:
            left[key] -= 1
        else:
            unmatched_records.append(run)
    return Reconciliation(len(runs), unmatched_records, sorted(left.elements()))
