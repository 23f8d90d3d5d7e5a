"""The live cascade: a real server whose cloud is an oracle, at a target cloud share.

The oracle is the suites' fake cloud (`support.fake_cloud.FakeCloud`, a real OpenAI-compatible HTTP server
on loopback) given a responder that answers each bench prompt with its known right answer. The server
runs the confidence cascade with a target share (PENSIEVE_BURST_CONFIDENCE_TARGET_SHARE) and a hold
window (PENSIEVE_BURST_STREAM_HOLD_TOKENS). For each item, in a seeded shuffled order, three requests go
out back to back (their order rotating from item to item, so the machine's noise hits all three alike):
the cascade not streamed, the cascade streamed, and an uncascaded stream (`X-Pensieve-Route: local`, the
local-only baseline on the same server). `run_share` returns what they did; `summary` turns it into the
figures issue #16 asks for, and `report` into text.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common import fmt, median, percentile, start_server, table
from routing.metrics import Scored, perfect_accuracy, pgr, random_accuracy
from routing.tasks import Item, first_word
from support.fake_cloud import FakeCloud
from support.fake_cloud.bodies import token_count

PRICE_INPUT, PRICE_OUTPUT = 0.15, 0.60  # USD per million tokens, the fake cloud's prices
MODES = ("cascade", "cascade_stream", "local_stream")
API_KEY = "sk-routing-bench"
MAX_TOKENS = 8


class Oracle:
    """The fake cloud's responder: the right answer to a bench prompt (chat or text completion)."""

    def __init__(self, items: list[Item]) -> None:
        """Know the answer of every item, by prompt."""
        self.answers = {item.prompt.strip(): item.answer for item in items}
        self.unknown = 0

    def text(self, prompt: str) -> str:
        """The answer as the local model would phrase it: a leading space, a full stop."""
        answer = self.answers.get(prompt.strip())
        if answer is None:
            answer = next((a for p, a in self.answers.items() if prompt.rstrip().endswith(p)), None)
        if answer is None:
            self.unknown += 1
            return " I do not know."
        return f" {answer}."

    def __call__(self, body: dict[str, Any]) -> str:
        """The answer to one request body."""
        if "prompt" in body:
            prompt = body["prompt"]
            return self.text(str(prompt[0] if isinstance(prompt, list) else prompt))
        users = [
            m.get("content") for m in body.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"
        ]
        return self.text(str(users[-1]) if users else "")


@dataclass
class Reply:
    """One answer: its text, the route headers, timings (seconds) and usage."""

    text: str
    route: str | None
    reason: str | None
    confidence: float | None
    total: float
    first: float  # time to the first text (streamed), or to the whole answer
    usage: dict[str, int] | None
    status: int


def send(http: httpx.Client, item: Item, mode: str) -> Reply:
    """Send `item` in one of `MODES` and read the answer."""
    stream = mode != "cascade"
    body: dict[str, Any] = {"model": "auto", "prompt": item.prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    body |= {"stop": ["\n"], "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"X-Pensieve-Route": "local"} if mode == "local_stream" else {}
    started = time.perf_counter()
    text, first, usage = "", math.nan, None
    with http.stream("POST", "/v1/completions", json=body, headers=headers) as response:
        if not stream:
            payload = json.loads(response.read()) if response.status_code == 200 else {}
            text = (payload.get("choices") or [{}])[0].get("text") or ""
            usage = payload.get("usage")
        else:
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                piece = "".join(choice.get("text") or "" for choice in event.get("choices") or ())
                if piece and math.isnan(first):
                    first = time.perf_counter() - started
                text += piece
                usage = event.get("usage") or usage
        total = time.perf_counter() - started
        confidence = response.headers.get("x-pensieve-confidence")
        return Reply(
            text=text,
            route=response.headers.get("x-pensieve-route"),
            reason=response.headers.get("x-pensieve-reason"),
            confidence=float(confidence) if confidence else None,
            total=total,
            first=total if math.isnan(first) else first,
            usage=usage,
            status=response.status_code,
        )


def server_env(fake: FakeCloud, share: float, hold: int | None) -> dict[str, str]:
    """The PENSIEVE_* settings of the cascade server: the fake as its cloud, the cascade on, complexity off."""
    env = fake.provider_env(
        PENSIEVE_CLOUD_PRICE_INPUT=str(PRICE_INPUT),
        PENSIEVE_CLOUD_PRICE_OUTPUT=str(PRICE_OUTPUT),
        PENSIEVE_BURST_CONFIDENCE="true",
        PENSIEVE_BURST_COMPLEXITY="false",
        PENSIEVE_BURST_CONFIDENCE_TARGET_SHARE=str(share),
    )
    if hold is not None:
        env["PENSIEVE_BURST_STREAM_HOLD_TOKENS"] = str(hold)
    return env


def run_share(items: list[Item], share: float, hold: int | None, model: Path, seed: int = 16) -> dict[str, Any]:
    """One server at one target share: every item in the three modes; the replies and the fake's bills."""
    oracle = Oracle(items)
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    replies: dict[str, list[Reply | None]] = {mode: [None] * len(items) for mode in MODES}
    with (
        FakeCloud(api_key=API_KEY, responder=oracle) as fake,
        tempfile.TemporaryDirectory(prefix="pensieve-live-") as work,
    ):
        server = start_server("routing-live", model, Path(work), server_env(fake, share, hold))
        try:
            with httpx.Client(base_url=server.base_url, timeout=120) as http:
                for item in items[:2]:  # warm-up, local only: loads the model, not counted
                    send(http, item, "local_stream")
                for turn, index in enumerate(order):
                    for mode in MODES[turn % 3 :] + MODES[: turn % 3]:
                        replies[mode][index] = send(http, items[index], mode)
        finally:
            server.stop()
        prompt_tokens, completion_tokens = fake.billed_tokens()
    done = {mode: [r for r in rs if r is not None] for mode, rs in replies.items()}
    return {
        "share": share,
        "hold": hold,
        "replies": done,
        "billed": (prompt_tokens, completion_tokens),
        "all_cloud": all_cloud_tokens(items, oracle),
        "oracle_misses": oracle.unknown,
    }


def all_cloud_tokens(items: list[Item], oracle: Oracle) -> tuple[int, int]:
    """What the fake would bill if every cascade request (two per item) went to the cloud."""
    prompt = sum(token_count(item.prompt) for item in items)
    completion = sum(token_count(oracle.text(item.prompt)) for item in items)
    oracle.unknown = 0
    return 2 * prompt, 2 * completion


def usd(tokens: tuple[int, int]) -> float:
    """The price of (prompt, completion) tokens at the fake's prices."""
    return (tokens[0] * PRICE_INPUT + tokens[1] * PRICE_OUTPUT) / 1e6


def summary(items: list[Item], run: dict[str, Any]) -> dict[str, Any]:
    """The figures of one live run: share, accuracy, PGR, cost, added latency, agreement, time to first byte."""
    replies: dict[str, list[Reply]] = run["replies"]
    cascade, streamed, local = replies["cascade"], replies["cascade_stream"], replies["local_stream"]

    def right(reply: Reply, item: Item) -> bool:
        return reply.status == 200 and first_word(reply.text) == item.answer.lower()

    def accuracy(rs: list[Reply]) -> float:
        return sum(right(r, item) for r, item in zip(rs, items, strict=True)) / len(items)

    def cloud(rs: list[Reply]) -> list[bool]:
        return [r.route == "cloud" for r in rs]

    local_accuracy = accuracy(local)
    scored = [Scored(right(r, item), {}) for r, item in zip(local, items, strict=True)]
    figures: dict[str, Any] = {"share_target": run["share"], "hold": run["hold"], "items": len(items)}
    figures["local_accuracy"] = local_accuracy
    figures["confidence_header"] = any(r.confidence is not None for r in cascade + streamed)
    figures["errors"] = sum(r.status != 200 for rs in replies.values() for r in rs)
    figures["oracle_misses"] = run["oracle_misses"]
    for name, rs in (("cascade", cascade), ("cascade_stream", streamed)):
        share = sum(cloud(rs)) / len(rs)
        acc = accuracy(rs)
        perfect, rand = perfect_accuracy(scored, share), random_accuracy(scored, share)
        escalated = [r.total - base.total for r, base in zip(rs, local, strict=True) if r.route == "cloud"]
        kept = [r.total - base.total for r, base in zip(rs, local, strict=True) if r.route != "cloud"]
        figures[name] = {
            "share": share,
            "accuracy": acc,
            "pgr": pgr(acc, local_accuracy),
            "random_pgr": pgr(rand, local_accuracy),
            "perfect_pgr": pgr(perfect, local_accuracy),
            "added_latency_ms": {
                "confident_median": 1000 * median(kept),
                "confident_p90": 1000 * percentile(kept, 0.9),
                "escalated_median": 1000 * median(escalated),
                "escalated_p90": 1000 * percentile(escalated, 0.9),
            },
        }
    both = cloud(cascade) + cloud(streamed)
    figures["share_realised"] = sum(both) / len(both)
    figures["agreement"] = sum(a == b for a, b in zip(cloud(cascade), cloud(streamed), strict=True)) / len(items)
    ratios = [r.first / base.first for r, base in zip(streamed, local, strict=True) if r.route != "cloud"]
    figures["ttfb_ratio_confident_median"] = median(ratios)
    figures["ttfb_ms_local_median"] = 1000 * median([r.first for r in local])
    figures["cost_usd"] = usd(run["billed"])
    figures["all_cloud_usd"] = usd(run["all_cloud"])
    figures["cost_fraction"] = figures["cost_usd"] / figures["all_cloud_usd"] if figures["all_cloud_usd"] else math.nan
    return figures


def warnings(figures: dict[str, Any]) -> list[str]:
    """What makes the figures unreliable: an older server, errors, prompts the oracle did not know."""
    notes = []
    if not figures["confidence_header"]:
        notes.append(
            "The server sent no x-pensieve-confidence header: it predates the target-share cascade "
            "(PENSIEVE_BURST_CONFIDENCE_TARGET_SHARE, PENSIEVE_BURST_STREAM_HOLD_TOKENS), which it ignored; "
            "the figures below are those of its older cascade (fixed threshold, whole answers only)."
        )
    if figures["cascade"]["share"] > 0 and figures["cascade_stream"]["share"] == 0:
        notes.append("No streamed request was escalated: this server does not cascade streams.")
    if figures["errors"]:
        notes.append(f"{figures['errors']} requests failed (not 200); they count as wrong.")
    if figures["oracle_misses"]:
        notes.append(f"The oracle did not recognise {figures['oracle_misses']} cloud prompts (answered wrongly).")
    return notes


def report(figures: dict[str, Any]) -> str:
    """The live figures of one share as markdown."""
    hold = figures["hold"] if figures["hold"] is not None else "server default"
    lines = [f"### Live cascade: target share {figures['share_target']:.0%}, hold {hold}, {figures['items']} items"]
    lines += [f"> {note}" for note in warnings(figures)]
    target = figures["share_target"]
    lines.append(
        f"\nRealised cloud share {figures['share_realised']:.3f} (target {target:.2f} +/- 0.05: "
        f"{'met' if abs(figures['share_realised'] - target) <= 0.05 else 'missed'}); local-only accuracy "
        f"{figures['local_accuracy']:.3f}; cost {figures['cost_usd'] * 100:.4f} US cents, "
        f"{fmt(figures['cost_fraction'] * 100, 1)}% of all-cloud ({figures['all_cloud_usd'] * 100:.4f} cents).\n"
    )
    rows = []
    for name in ("cascade", "cascade_stream"):
        f = figures[name]
        lat = f["added_latency_ms"]
        ok = f["pgr"] >= 0.85 * f["perfect_pgr"] and f["pgr"] >= f["random_pgr"] + 0.15
        rows.append(
            [
                "not streamed" if name == "cascade" else "streamed",
                fmt(f["share"], 3),
                fmt(f["accuracy"], 3),
                f"{fmt(f['pgr'], 2)} / {fmt(f['random_pgr'], 2)} / {fmt(f['perfect_pgr'], 2)}"
                + (" (met)" if ok else " (missed)"),
                f"{fmt(lat['confident_median'], 0)} / {fmt(lat['confident_p90'], 0)}",
                f"{fmt(lat['escalated_median'], 0)} / {fmt(lat['escalated_p90'], 0)}",
            ]
        )
    header = ["cascade", "cloud share", "accuracy", "PGR / random / perfect", "added ms kept (med/p90)"]
    lines.append(table([*header, "added ms escalated (med/p90)"], rows))
    lines.append(
        f"\nStreamed and non-streamed escalation decisions agree on {figures['agreement']:.1%} of items "
        f"(target >= 95%). Time to first byte of confident streamed answers / uncascaded stream: median ratio "
        f"{fmt(figures['ttfb_ratio_confident_median'], 2)}x (target <= 1.5x; uncascaded median "
        f"{fmt(figures['ttfb_ms_local_median'], 0)} ms)."
    )
    return "\n".join(lines)
