"""The soak's printed report (markdown tables, like the other benches), its verdict and its JSON form."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from common import fmt, percentile, table
from soak_parts.clients import KINDS
from soak_parts.outcome import ANSWER, DISCONNECT, ERROR, LOST, Outcome
from soak_parts.run import SoakResult

RSS_GROWTH_LIMIT_PCT = 5.0
MIB = 1024 * 1024


def _ms(values: Sequence[float], fraction: float) -> str:
    """A percentile of seconds, in milliseconds, for the table."""
    return fmt(percentile(values, fraction) * 1000.0, 0) if values else "-"


def kinds_table(outcomes: Sequence[Outcome]) -> str:
    """Per request kind: how each ended, and the latency of its answers (TTFT for streams)."""
    rows = []
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind.name]
        counts = Counter(o.result for o in mine)
        answered = [o for o in mine if o.result == ANSWER]
        ttfts = [o.ttft_s for o in answered if o.ttft_s is not None]
        rows.append(
            [
                kind.name,
                str(len(mine)),
                *(str(counts[r]) for r in (ANSWER, ERROR, DISCONNECT, LOST)),
                _ms([o.latency_s for o in answered], 0.5),
                _ms([o.latency_s for o in answered], 0.99),
                _ms(ttfts, 0.5) if kind.stream else "",
                _ms(ttfts, 0.99) if kind.stream else "",
            ]
        )
    total = Counter(o.result for o in outcomes)
    rows.append(["**all**", str(len(outcomes)), *(str(total[r]) for r in (ANSWER, ERROR, DISCONNECT, LOST))])
    rows[-1] += ["", "", "", ""]
    header = ["kind", "sent", "answers", "errors", "client left", "LOST", "p50 ms", "p99 ms", "TTFT p50", "TTFT p99"]
    return table(header, rows)


def routes_table(outcomes: Sequence[Outcome]) -> str:
    """Answers by the endpoint asked and the route that served them (x-pensieve-route)."""
    endpoint = {kind.name: kind.endpoint + (" stream" if kind.stream else "") for kind in KINDS}
    asked = {kind.name: kind.route for kind in KINDS}
    counts = Counter((endpoint[o.kind], asked[o.kind], o.route) for o in outcomes if o.result == ANSWER)
    rows = [[e, a, r, str(n)] for (e, a, r), n in sorted(counts.items())]
    return table(["endpoint", "asked", "served by", "answers"], rows or [["-", "-", "-", "0"]])


def errors_table(outcomes: Sequence[Outcome]) -> str:
    """Clear errors by status and code (status 200: an error event inside a stream), with the kinds they hit."""
    grouped: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        if o.result == ERROR:
            grouped[(o.status, o.code)][o.kind] += 1
    rows = [
        [str(s) + (" (SSE event)" if s == 200 else ""), c, str(sum(k.values())), ", ".join(sorted(k))]
        for (s, c), k in sorted(grouped.items())
    ]
    return table(["status", "code", "count", "kinds"], rows or [["-", "-", "0", ""]])


def left_table(outcomes: Sequence[Outcome]) -> str:
    """Requests the clients abandoned on purpose, by where they left."""
    counts = Counter((o.code, o.kind) for o in outcomes if o.result == DISCONNECT)
    rows = [[where, kind, str(n)] for (where, kind), n in sorted(counts.items())]
    return table(["client left", "kind", "count"], rows or [["-", "-", "0"]])


def lost_table(outcomes: Sequence[Outcome]) -> str:
    """Every kind of LOST request, with one example of what was seen."""
    grouped: dict[tuple[str, str, int], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.result == LOST:
            grouped[(o.kind, o.code, o.status)].append(o)
    rows = [[k, c, str(s), str(len(v)), v[0].detail.replace("|", "/")[:120]] for (k, c, s), v in grouped.items()]
    return table(["kind", "what was seen", "status", "count", "example"], rows or [["-", "none", "-", "0", ""]])


def memory_lines(result: SoakResult) -> list[str]:
    """RSS at the start, after the warm-up and at the end, and the growth."""
    samples, growth = result.samples, result.growth
    first, last = samples[0], samples[-1]
    rows = [
        ["first sample", fmt(first.server / MIB), fmt(first.workers / MIB), fmt(first.total / MIB)],
        ["last sample", fmt(last.server / MIB), fmt(last.workers / MIB), fmt(last.total / MIB)],
    ]
    return [
        table(["RSS (MiB)", "server", "workers", "total"], rows),
        "",
        f"- Growth after the warm-up ({growth.warm_up_s:.0f} s): median of the first 5 samples after it "
        f"{growth.start_bytes / MIB:.1f} MiB -> median of the last 5 {growth.end_bytes / MIB:.1f} MiB = "
        f"**{growth.growth_pct:+.2f}%** (target < {RSS_GROWTH_LIMIT_PCT:.0f}%; {len(samples)} samples, "
        f"every {result.config.rss_every_s:.0f} s)",
    ]


def spend_lines(result: SoakResult) -> list[str]:
    """Recorded spend (the ledger) against the fake's bills."""
    s = result.spend
    rows = [
        ["server ledger", str(s.recorded_prompt), str(s.recorded_completion), f"{s.recorded_usd:.6f}"],
        ["fake cloud bills", str(s.billed_prompt), str(s.billed_completion), f"{s.billed_usd:.6f}"],
        [
            "difference",
            str(s.recorded_prompt - s.billed_prompt),
            str(s.recorded_completion - s.billed_completion),
            f"{s.usd_difference:+.6f}",
        ],
    ]
    r = result.reconciliation
    lines = [
        table(["spend", "prompt tokens", "completion tokens", "USD"], rows),
        "",
        f"- {s.bills} bills, {s.cloud_requests} cloud runs in the ledger; read {s.settled_after_s:.1f} s after "
        f"the clients stopped",
        f"- Run by run ({r.collected} of the {s.cloud_requests} recorded cloud runs read from the decisions log): "
        f"{len(r.unmatched_records)} records and {len(r.unmatched_bills)} bills without an equal",
    ]
    for record in r.unmatched_records:
        lines.append(
            f"  - recorded {record['prompt_tokens']}+{record['completion_tokens']} tokens, "
            f"stream={record['stream']}, error={record['error']}, usage_source={record['usage_source']}, "
            f"latency {record['latency_ms']:.0f} ms"
        )
    lines += [f"  - billed {p}+{c} tokens, no equal record" for p, c in r.unmatched_bills]
    if not s.matches and r.only_abandoned_streams:
        lines.append(
            "- Every difference is a cloud stream the client left: the ledger holds the text the server had "
            "received (docs/routing.md), the fake billed what it had sent, more of which was still in flight"
        )
    return lines


def verdict(result: SoakResult) -> tuple[bool, str]:
    """(passed, one line): nothing lost, RSS growth under the limit, spend equal to the token."""
    lost = sum(1 for o in result.outcomes if o.result == LOST)
    growth = result.growth.growth_pct
    misses = []
    if lost:
        misses.append(f"{lost} LOST")
    if math.isnan(growth) or growth >= RSS_GROWTH_LIMIT_PCT:
        misses.append(f"RSS growth {growth:+.2f}%")
    if not result.spend.matches:
        why = " (streams the client left)" if result.reconciliation.only_abandoned_streams else ""
        misses.append(f"spend off by {result.spend.token_difference:+d} tokens{why}")
    served = len(result.outcomes)
    summary = f"{served} requests, 0 lost, RSS {growth:+.2f}%, spend equal to the token"
    return not misses, ("PASS: " + summary) if not misses else ("FAIL: " + "; ".join(misses))


def render(result: SoakResult) -> str:
    """The whole printed report."""
    config, facts = result.config, result.facts
    fault_list = ", ".join(f"{name} ×{n}" for name, n in sorted(result.faults.items())) or "none"
    lines = [
        f"## Pensieve soak: {config.clients} clients for {config.minutes:g} minutes (seed {config.seed})",
        "",
        f"- Machine: {facts.get('cores')} usable cores, load average {facts.get('load_average_start')} at start, "
        f"{facts.get('load_average_end')} at end; Python {facts.get('python')}",
        f"- Model {facts.get('model')}, server ready in {facts.get('server_ready_s')} s; ran {result.duration_s:.0f} s",
        f"- Faults queued on the fake cloud (requests affected): {fault_list}; "
        f"{facts.get('cloud_calls')} cloud calls in all",
        f"- Server log: {result.server_log} ({len(result.log_problems)} error lines)",
        "",
        "### Outcomes by kind (latency of answers)",
        "",
        kinds_table(result.outcomes),
        "",
        "### Answers by route",
        "",
        routes_table(result.outcomes),
        "",
        "### Clear errors",
        "",
        errors_table(result.outcomes),
        "",
        "### Client disconnects (on purpose, not lost)",
        "",
        left_table(result.outcomes),
        "",
        "### LOST",
        "",
        lost_table(result.outcomes),
        "",
        "### Memory",
        "",
        *memory_lines(result),
        "",
        "### Spend",
        "",
        *spend_lines(result),
    ]
    if result.log_problems:
        lines += ["", "### Server log error lines (first 10)", "", "```", *result.log_problems[:10], "```"]
    return "\n".join(lines)


def as_json(result: SoakResult) -> dict[str, Any]:
    """The result as plain JSON: configuration, facts, every outcome, the samples, growth, spend, verdict."""
    passed, line = verdict(result)
    # Paths become strings; numbers and None stay as they are.
    config = {k: v if v is None or isinstance(v, int | float) else str(v) for k, v in asdict(result.config).items()}
    return {
        "config": config,
        "facts": result.facts,
        "duration_s": result.duration_s,
        "faults": dict(result.faults),
        "outcomes": [asdict(o) for o in result.outcomes],
        "rss_samples": [asdict(s) for s in result.samples],
        "rss_growth": {**asdict(result.growth), "growth_pct": result.growth.growth_pct},
        "spend": {**asdict(result.spend), "token_difference": result.spend.token_difference},
        "reconciliation": {
            **asdict(result.reconciliation),
            "only_abandoned_streams": result.reconciliation.only_abandoned_streams,
        },
        "log_problems": result.log_problems,
        "passed": passed,
        "verdict": line,
    }
