"""Monitoring page: server and model status, load, throughput, local vs cloud, spend vs caps, circuits, decisions.

The page refreshes itself (a Streamlit fragment re-run every few seconds). The server keeps totals
only, so the throughput chart is drawn from samples this browser session takes on each refresh.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from pensieve.ui.charts import add_sample, latency_chart, reasons_chart, split_chart, throughput_chart
from pensieve.ui.client import PensieveClient, ServerError
from pensieve.ui.format import (
    cascade_text,
    circuit_badge,
    clock_time,
    duration,
    human_bytes,
    money,
    percent,
    plural,
    reason_text,
    speed,
)
from pensieve.ui.state import get_client, keep, remember, ui_settings
from pensieve.ui.widgets import page_header, show_error

SAMPLES = "monitor_samples"
INTERVALS = (2, 5, 10, 30, 60)


def _fetch(client: PensieveClient) -> dict[str, Any]:
    return {"ready": client.ready(), "system": client.system(), "stats": client.burst_stats(recent=100)}


def _status_row(ready: dict[str, Any], system: dict[str, Any], stats: dict[str, Any]) -> None:
    loads = stats["local"]
    with st.container(horizontal=True):
        is_ready = ready.get("status") == "ready"
        st.metric(f"Server v{system['version']}", "Ready" if is_ready else "Not ready", border=True)
        st.metric("Uptime", duration(system["uptime_seconds"]), border=True)
        memory = system["rss_bytes"] + system.get("workers_rss_bytes", 0)
        st.metric("Memory (RSS)", human_bytes(memory), border=True, help="The server plus its model workers.")
        st.metric(f"CPU ({system.get('cpu_cores') or '?'} cores)", f"{system['cpu_percent']:.0f} %", border=True)
        st.metric("Queue depth", sum(load["queue_depth"] for load in loads), border=True)
        busy = sum(load.get("busy_sequences", 0) for load in loads)
        st.metric("Busy sequences", f"{busy} / {sum(load.get('parallel', 1) for load in loads)}", border=True)
    if not is_ready:
        message = (ready.get("error") or {}).get("message", "no model can serve yet")
        st.warning(f"The server cannot answer yet: {message}", icon=":material/hourglass_top:")
    # Degraded parts (the spend ledger in memory after a full disk): the server answers, but should be looked at.
    for warning in ready.get("warnings") or ():
        st.warning(warning.get("message", ""), icon=":material/warning:")


def _traffic(stats: dict[str, Any], samples: list[dict[str, float]]) -> None:
    requests = stats["requests"]
    by_route = requests.get("by_route", {})
    total = sum(by_route.values())
    left, right = st.columns([2, 1], gap="medium")
    with left, st.container(border=True, height="stretch"):
        st.markdown("##### Tokens per second")
        if len(samples) < 2:
            st.info("Collecting samples: the chart fills in as the page refreshes.", icon=":material/timeline:")
        else:
            st.altair_chart(throughput_chart(samples), width="stretch")
        st.caption(f"Sampled by this page on each refresh ({len(samples)} so far); the server keeps no history.")
    with right, st.container(border=True, height="stretch"):
        st.markdown("##### Local vs cloud")
        if total:
            st.altair_chart(split_chart(by_route), width="stretch")
            local_share = percent(by_route.get("local", 0), total)
            st.caption(f"{plural(total, 'request')} · {local_share:.0f} % answered locally")
        else:
            st.caption("No requests yet: send one from the Chat page.")
    left, right = st.columns(2, gap="medium")
    with left, st.container(border=True, height="stretch"):
        st.markdown("##### Why requests went where they did")
        if total:
            st.altair_chart(reasons_chart(requests.get("by_route_and_reason", {})), width="stretch")
        else:
            st.caption("No requests yet.")
    with right, st.container(border=True, height="stretch"):
        st.markdown("##### Latency of recent requests")
        if stats["recent"]:
            st.altair_chart(latency_chart(stats["recent"]), width="stretch")
        else:
            st.caption("No requests yet.")


def _cap_bar(label: str, spent: float, cap: float | None) -> None:
    if cap:
        fraction = min(spent / cap, 1.0)
        st.progress(fraction, text=f"{label}: {money(spent)} of {money(cap)} ({percent(spent, cap):.0f} %)")
    else:
        st.progress(0.0, text=f"{label}: {money(spent)} (no cap)")


def _money(stats: dict[str, Any]) -> None:
    spend, saved, tokens = stats["spend"], stats["saved"], stats["tokens"]
    left, right = st.columns(2, gap="medium")
    with left, st.container(border=True, height="stretch"):
        st.markdown("##### Cloud spend against the caps")
        _cap_bar("Today", spend["today_usd"], spend["daily_cap_usd"])
        _cap_bar("This month", spend["month_usd"], spend["monthly_cap_usd"])
        enforced = "enforced" if spend["caps_enforced"] else "not enforced (budget criterion off)"
        st.caption(f"All time {money(spend['all_time_usd'])} · caps {enforced}")
        cascade = stats.get("confidence") or {}
        if cascade.get("enabled"):
            st.caption(cascade_text(cascade))
    with right, st.container(border=True, height="stretch"):
        st.markdown("##### Money saved by running locally")
        for column, (name, key) in zip(
            st.columns(3),
            (("Today", "today_usd"), ("This month", "month_usd"), ("All time", "all_time_usd")),
            strict=True,
        ):
            column.metric(name, money(saved[key]))
        priced = saved.get("priced_at")
        local_tokens = tokens["local_prompt_tokens"] + tokens["local_completion_tokens"]
        st.caption(
            f"{local_tokens} local tokens priced at {priced}'s rates" if priced else "No cloud model to price against."
        )


def _local_models(loads: list[dict[str, Any]]) -> None:
    with st.container(border=True, height="stretch"):
        st.markdown("##### Local models")
        if not loads:
            st.caption("No model is loaded: the default model loads on the first request.")
        for load in loads:
            state = "busy" if load["busy"] else "idle"
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(f"**{load['model']}**")
                st.badge(state, color="orange" if load["busy"] else "green", icon=":material/memory:")
                st.caption(
                    f"{load.get('busy_sequences', 0)} of {load.get('parallel', 1)} sequences busy · "
                    f"queue {load['queue_depth']} · estimated wait {duration(load['estimated_wait_ms'] / 1000)} · "
                    f"recent speed {speed(load['recent_tokens_per_second'])}"
                )


def _circuits(client: PensieveClient, providers: list[dict[str, Any]]) -> None:
    with st.container(border=True, height="stretch"):
        st.markdown("##### Cloud providers")
        if not providers:
            st.caption("No cloud provider configured: everything runs locally.")
            return
        for provider in providers:
            circuit = provider["circuit"]
            badge = circuit_badge(circuit["state"])
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(f"**{provider['name']}** · key `{provider.get('api_key') or 'none'}`")
                st.badge(badge.label, color=badge.color, icon=badge.icon)
                st.caption(
                    f"{circuit['consecutive_failures']}/{circuit['failure_threshold']} failures · "
                    f"opened {circuit['times_opened']}×"
                    + (f" · last error: {circuit['last_error']}" if circuit["last_error"] else "")
                )
                if circuit["state"] != "closed" and st.button("Reset", key=f"reset_{provider['name']}"):
                    try:
                        client.reset_circuits(provider["name"])
                    except ServerError as error:
                        show_error(error, "Resetting the circuit")


def _decisions(recent: list[dict[str, Any]]) -> None:
    with st.container(border=True):
        st.markdown("##### Recent decisions")
        if not recent:
            st.caption("No requests yet: send one from the Chat page.")
            return
        rows = [
            {
                "time": clock_time(entry["at"]),
                "route": entry["route"],
                "why": reason_text(entry["reason"]),
                "model": entry["model"],
                "latency (s)": entry["latency_ms"] / 1000,
                "first token (s)": (entry["first_token_ms"] or 0) / 1000 if entry["first_token_ms"] else None,
                "tokens in/out": f"{entry['prompt_tokens']} / {entry['completion_tokens']}",
                "cost": money(entry["cost_usd"]),
                "sure": entry.get("confidence"),
                "fallback": entry["fallback"],
                "error": entry.get("error") or "",
            }
            for entry in recent
        ]
        config = {
            "latency (s)": st.column_config.NumberColumn(format="%.2f"),
            "first token (s)": st.column_config.NumberColumn(format="%.2f"),
            "fallback": st.column_config.CheckboxColumn(),
            "sure": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent"),
        }
        st.dataframe(rows, hide_index=True, width="stretch", column_config=config, height=300)


def _live(client: PensieveClient) -> None:
    try:
        data = _fetch(client)
    except ServerError as error:
        show_error(error, "Reading the server's figures")
        return
    samples: list[dict[str, float]] = st.session_state.setdefault(SAMPLES, [])
    add_sample(samples, data["stats"])
    _status_row(data["ready"], data["system"], data["stats"])
    _traffic(data["stats"], samples)
    _money(data["stats"])
    left, right = st.columns(2, gap="medium")
    with left:
        _local_models(data["stats"]["local"])
    with right:
        _circuits(client, data["stats"]["providers"])
    _decisions(data["stats"]["recent"])


def render() -> None:
    """Draw the monitoring page; its figures refresh on their own."""
    page_header("Monitoring", "What the server is doing, where requests ran, and what the cloud cost.")
    client = get_client()
    default_interval = int(ui_settings().ui_refresh_seconds)
    with st.container(horizontal=True, vertical_alignment="center"):
        remember("monitor_auto", True)
        st.toggle("Refresh automatically", key="monitor_auto")
        remember("monitor_interval", default_interval if default_interval in INTERVALS else 5)
        st.segmented_control("Every", INTERVALS, key="monitor_interval", format_func=lambda s: f"{s} s")
    interval = keep("monitor_interval") or 5
    every = interval if keep("monitor_auto") else None

    @st.fragment(run_every=every)
    def live() -> None:
        _live(client)

    live()


if __name__ == "__main__":
    render()
