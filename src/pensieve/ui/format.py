"""Formatting helpers: sizes, durations, money, speeds, and the words and colours of routes and reasons.

Pure functions with no Streamlit calls, so the pages stay short and the wording is the same everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

BadgeColor = Literal["red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"]

# x-pensieve-reason codes in plain words (docs/routing.md).
REASONS: dict[str, str] = {
    "default": "no criterion asked for the cloud",
    "explicit": "the model or header asked for this side",
    "privacy": "private data stays on this machine",
    "budget": "a cloud spend cap is reached",
    "circuit_open": "the cloud provider is failing (circuit open)",
    "no_cloud": "no cloud provider is configured",
    "context": "the prompt does not fit the local context",
    "local_failure": "the local model failed, the cloud answered",
    "cloud_failure": "the cloud failed, the local model answered",
    "load": "the local queue was too long",
    "complexity": "the prompt looked hard",
    "confidence": "the local answer was unsure",
}


@dataclass(frozen=True)
class Badge:
    """A label with its colour and Material icon, as `st.badge` takes them."""

    label: str
    color: BadgeColor
    icon: str


def route_badge(route: str | None, tier: str | None = None) -> Badge:
    """The badge of a route: local (green), the trusted tier (violet), cloud (blue), anything else (gray)."""
    if route == "local":
        return Badge("Local", "green", ":material/computer:")
    if route == "cloud" and tier == "trusted":
        return Badge("Trusted cloud", "violet", ":material/shield:")
    if route == "cloud":
        return Badge("Cloud", "blue", ":material/cloud:")
    if route == "error":
        return Badge("Error", "red", ":material/error:")
    return Badge(route or "Unknown route", "gray", ":material/help:")


def circuit_badge(state: str) -> Badge:
    """The badge of a circuit breaker state."""
    if state == "closed":
        return Badge("closed · healthy", "green", ":material/check_circle:")
    if state == "open":
        return Badge("open · requests stay local", "red", ":material/block:")
    return Badge(state.replace("_", " ") + " · probing", "orange", ":material/sync:")


def reason_text(reason: str | None) -> str:
    """A routing reason code in plain words (unknown codes are shown as they are)."""
    if not reason:
        return "no reason given"
    return REASONS.get(reason, reason.replace("_", " "))


def human_bytes(size: float | None) -> str:
    """`253113024` -> `253.1 MB` (decimal units, as disk sizes are sold)."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_count(value: float | None) -> str:
    """`268098176` -> `268M`; small numbers unchanged."""
    if value is None:
        return "—"
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    """`0.4` -> `400 ms`, `75` -> `1 min 15 s`, `7300` -> `2 h 1 min`."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def money(usd: float | None) -> str:
    """US dollars with enough digits to see small cloud costs: `$0.00042`, `$1.25`."""
    if usd is None:
        return "no cap"
    if usd == 0:
        return "$0.00"
    if abs(usd) < 0.01:
        return f"${usd:.5f}"
    return f"${usd:,.2f}"


def speed(tokens_per_second: float | None) -> str:
    """`41.23` -> `41.2 tok/s`."""
    return "—" if tokens_per_second is None else f"{tokens_per_second:.1f} tok/s"


def clock_time(unix_seconds: float) -> str:
    """Local wall-clock time `HH:MM:SS` of a Unix timestamp."""
    return time.strftime("%H:%M:%S", time.localtime(unix_seconds))


def failure_text(failure: dict[str, Any]) -> str:
    """A model's failure from GET /api/ps `failures`, for an error box: which model, when, the server's message
    (how its worker died and the likely cause) and what to do."""
    when = clock_time(failure["at"]) if failure.get("at") else "—"
    if failure.get("recovered"):
        since = clock_time(failure["recovered_at"]) if failure.get("recovered_at") else "—"
        head = f"**{failure['id']}** crashed at {when}; a new worker has run it since {since}."
    elif failure.get("stage") == "serving":
        head = f"**{failure['id']}** crashed at {when}; the next request for it starts a new worker."
    else:
        head = f"**{failure['id']}** cannot be loaded (since {when})."
    message = str(failure.get("message") or "")
    hint = "" if "pensieve doctor" in message else " Run `pensieve doctor` to check the model and the llama.cpp build."
    return f"{head} {message}{hint}"


def plural(count: int, noun: str) -> str:
    """`1 request`, `3 requests`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def percent(part: float, whole: float) -> float:
    """`part / whole` as a 0-100 percentage (0 when `whole` is 0)."""
    return 100.0 * part / whole if whole else 0.0


def cascade_text(cascade: dict[str, Any]) -> str:
    """One line on the confidence cascade from /api/burst/stats `confidence`: target, realised share, threshold."""
    target, realised = cascade.get("target_share"), cascade.get("realised_share")
    aim = f"target {target:.0%} to the cloud" if target is not None else "fixed threshold"
    judged = cascade.get("judged", 0)
    sent = f"sent {realised:.0%} of the last {judged}" if realised is not None else "nothing judged yet"
    sure = cascade.get("threshold_probability")
    below = f" · unsure below {sure:.0%}" if sure is not None else ""
    return f"Confidence cascade: {aim} · {sent}{below}"
