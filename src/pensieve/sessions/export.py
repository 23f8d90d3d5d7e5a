"""A session as a Markdown document or a JSON file, for download (GET /api/sessions/{id}/export)."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any, Literal

from pensieve.sessions.records import Session, StoredMessage

ExportFormat = Literal["md", "json"]
UNTITLED = "Untitled session"
EXPORT_FORMATS: dict[str, ExportFormat] = {"md": "md", "markdown": "md", "json": "json"}
MEDIA_TYPES: dict[ExportFormat, str] = {"md": "text/markdown; charset=utf-8", "json": "application/json"}


def _when(epoch: float) -> str:
    """`2025-01-31 14:05 UTC`: the server's clock may sit in another zone than the reader."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _turn_facts(message: StoredMessage) -> str:
    """The small line under an assistant turn: route, model, tokens, cost, time, why it ran there."""
    parts = [part for part in (message.route, message.model) if part]
    if message.prompt_tokens is not None or message.completion_tokens is not None:
        parts.append(f"{message.prompt_tokens or 0} prompt + {message.completion_tokens or 0} completion tokens")
    if message.cost_usd is not None:
        parts.append(f"${message.cost_usd:.4f}")
    if message.latency_ms is not None:
        parts.append(f"{message.latency_ms / 1000:.1f} s")
    if message.reason:
        parts.append(f"reason: {message.reason}")
    if message.trimmed:
        parts.append(f"{message.trimmed} earlier messages left out of the prompt")
    return " · ".join(parts)


def to_markdown(session: Session, messages: list[StoredMessage]) -> str:
    """Title, date, model, then every turn; assistant turns get a line of facts, stopped answers a mark."""
    title = " ".join((session.title or "").split()) or UNTITLED  # a line break would end the heading
    lines = [f"# {title}", ""]
    lines.append(f"- Date: {_when(session.created_at)} (last activity {_when(session.updated_at)})")
    lines.append(f"- Model: {session.model or 'server default'}")
    if session.private:
        lines.append(f"- Private: yes ({', '.join(session.private_kinds) or 'marked'}); never sent to the cloud")
    if session.system_prompt:
        lines += ["", "**System prompt**", "", session.system_prompt]
    for message in messages:
        heading = message.role.capitalize()
        if message.tool_call_id:
            heading += f" (result of `{message.tool_call_id}`)"
        lines += ["", "---", "", f"### {heading}", "", message.content]
        for call in message.tool_calls or ():
            function = call.get("function") or {}
            lines += ["", f"Calls `{function.get('name')}` (`{call.get('id')}`):", "", "```json"]
            lines += [str(function.get("arguments") or ""), "```"]
        if message.role == "assistant":
            if message.partial:
                lines += ["", "*(partial answer: stopped before it was complete)*"]
            facts = _turn_facts(message)
            if facts:
                lines += ["", f"<sub>{facts}</sub>"]
    return "\n".join(lines) + "\n"


def to_json(session: Session, messages: list[StoredMessage]) -> str:
    """The session record and its messages, as the API returns them, plus when it was exported."""
    body: dict[str, Any] = {
        **session.to_json(),
        "messages": [message.to_json() for message in messages],
        "exported_at": time.time(),
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def render(session: Session, messages: list[StoredMessage], export_format: ExportFormat) -> str:
    """The export in `export_format`."""
    return to_markdown(session, messages) if export_format == "md" else to_json(session, messages)


def filename(session: Session, export_format: ExportFormat) -> str:
    """A file name safe in a Content-Disposition header and on every file system: `pensieve-<title>-<date>.md`."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", session.title or "session").strip("-").lower()[:50].strip("-")
    date = datetime.fromtimestamp(session.created_at, tz=timezone.utc).strftime("%Y%m%d")
    return f"pensieve-{slug or 'session'}-{date}.{export_format}"
