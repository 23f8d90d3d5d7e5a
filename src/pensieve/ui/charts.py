"""Charts of the monitoring page (Altair, bundled with Streamlit), and the UI-side throughput samples.

The server keeps totals, not history: the page samples `/api/burst/stats` on every refresh and keeps
the samples in the browser session, so the throughput chart starts when the page is opened.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import altair as alt

ROUTE_COLORS = alt.Scale(domain=["local", "cloud", "error"], range=["#22A06B", "#3B82F6", "#E5484D"])
MAX_SAMPLES = 720


def _data(rows: list[dict[str, Any]]) -> alt.Data:
    """Rows as inline chart data (no rows draws an empty chart)."""
    return alt.Data(values=rows)  # type: ignore[no-untyped-call]


def add_sample(samples: list[dict[str, float]], stats: dict[str, Any], now: float | None = None) -> None:
    """Append the token totals and local decode speed of `stats` (GET /api/burst/stats) to `samples`."""
    tokens = stats.get("tokens", {})
    speeds = [load.get("recent_tokens_per_second") or 0.0 for load in stats.get("local", [])]
    samples.append(
        {
            "at": time.time() if now is None else now,
            "local_tokens": float(tokens.get("local_completion_tokens", 0)),
            "cloud_tokens": float(tokens.get("cloud_completion_tokens", 0)),
            "decode_speed": max(speeds, default=0.0),
        }
    )
    del samples[:-MAX_SAMPLES]


def throughput_rows(samples: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Long-form rows (time, series, tokens/s) between consecutive samples."""
    rows: list[dict[str, Any]] = []
    for before, after in itertools.pairwise(samples):
        elapsed = after["at"] - before["at"]
        if elapsed <= 0:
            continue
        at = after["at"] * 1000  # Vega-Lite reads epoch milliseconds as time
        local = max(after["local_tokens"] - before["local_tokens"], 0.0) / elapsed
        cloud = max(after["cloud_tokens"] - before["cloud_tokens"], 0.0) / elapsed
        rows.append({"time": at, "series": "local answers", "tokens_per_second": local})
        rows.append({"time": at, "series": "cloud answers", "tokens_per_second": cloud})
        rows.append({"time": at, "series": "local decode speed", "tokens_per_second": after["decode_speed"]})
    return rows


def throughput_chart(samples: list[dict[str, float]]) -> alt.Chart:
    """Tokens per second over time: local and cloud answer throughput, and the local model's decode speed."""
    scale = alt.Scale(
        domain=["local answers", "cloud answers", "local decode speed"], range=["#22A06B", "#3B82F6", "#A78BFA"]
    )
    chart: alt.Chart = (
        alt.Chart(_data(throughput_rows(samples)))
        .mark_line(interpolate="monotone", point=False, strokeWidth=2)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S")),
            y=alt.Y("tokens_per_second:Q", title="tokens / s"),
            color=alt.Color("series:N", scale=scale, legend=alt.Legend(orient="bottom", title=None)),
            strokeDash=alt.condition(alt.datum.series == "local decode speed", alt.value([4, 3]), alt.value([1, 0])),
            tooltip=[alt.Tooltip("series:N"), alt.Tooltip("tokens_per_second:Q", format=".1f")],
        )
        .properties(height=260)
    )
    return chart


def split_chart(by_route: dict[str, int]) -> alt.Chart:
    """A donut of requests by route."""
    rows = [{"route": route, "requests": count} for route, count in sorted(by_route.items())]
    base = alt.Chart(_data(rows)).encode(
        theta=alt.Theta("requests:Q", stack=True),
        color=alt.Color("route:N", scale=ROUTE_COLORS, legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip("route:N"), alt.Tooltip("requests:Q")],
    )
    chart: alt.Chart = base.mark_arc(innerRadius=55, stroke="#fff").properties(height=260)
    return chart


def reasons_chart(by_route_and_reason: dict[str, dict[str, int]]) -> alt.Chart:
    """Requests by reason, one bar per reason, coloured by the route taken."""
    rows = [
        {"reason": reason.replace("_", " "), "route": route, "requests": count}
        for route, reasons in by_route_and_reason.items()
        for reason, count in reasons.items()
    ]
    chart: alt.Chart = (
        alt.Chart(_data(rows))
        .mark_bar(cornerRadiusEnd=3, height=18)
        .encode(
            y=alt.Y("reason:N", title=None, sort="-x"),
            x=alt.X("sum(requests):Q", title="requests"),
            color=alt.Color("route:N", scale=ROUTE_COLORS, legend=alt.Legend(orient="bottom", title=None)),
            tooltip=[alt.Tooltip("reason:N"), alt.Tooltip("route:N"), alt.Tooltip("requests:Q")],
        )
        .properties(height=260)
    )
    return chart


def latency_chart(recent: list[dict[str, Any]]) -> alt.Chart:
    """Latency of the recent requests over time, by route."""
    rows = [
        {"time": entry["at"] * 1000, "route": entry["route"], "latency_s": entry["latency_ms"] / 1000}
        for entry in recent
    ]
    chart: alt.Chart = (
        alt.Chart(_data(rows))
        .mark_circle(size=70, opacity=0.8)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format="%H:%M:%S")),
            y=alt.Y("latency_s:Q", title="latency (s)"),
            color=alt.Color("route:N", scale=ROUTE_COLORS, legend=alt.Legend(orient="bottom", title=None)),
            tooltip=[alt.Tooltip("route:N"), alt.Tooltip("latency_s:Q", format=".2f")],
        )
        .properties(height=260)
    )
    return chart
