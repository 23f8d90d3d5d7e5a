"""How one soak request ended: an answer, a clear OpenAI error, a client disconnect, or LOST (and why).

"Lose nothing" means every request the client did not abandon ends in a valid answer (a stream: chunks then
`[DONE]`) or an OpenAI-shaped error (`{"error": {message, type, param, code}}`, or in a stream an error event
followed by `[DONE]`). Anything else is LOST, with a reason that names what was seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ANSWER = "answer"
ERROR = "error"
DISCONNECT = "disconnect"
LOST = "lost"

ERROR_KEYS = frozenset({"message", "type", "param", "code"})


@dataclass
class Outcome:
    """One request's end, as the soak counts it."""

    kind: str  # the request kind (see clients.KINDS)
    result: str  # ANSWER, ERROR, DISCONNECT or LOST
    latency_s: float
    route: str = "-"  # x-pensieve-route, or '-' when no response came
    status: int = 0
    code: str = ""  # the error code (ERROR), or what was seen (LOST), or where the client left (DISCONNECT)
    detail: str = ""  # LOST: the evidence (a body or exception excerpt)
    ttft_s: float | None = None  # streams: time to the first content


def openai_error(payload: Any) -> dict[str, Any] | None:
    """The error object of an OpenAI-shaped error payload; None when the payload is anything else."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return None
    error: dict[str, Any] = payload["error"]
    if not error.keys() >= ERROR_KEYS or not isinstance(error.get("message"), str) or not error["message"]:
        return None
    return error


def json_or_none(text: str) -> Any:
    """The parsed JSON of `text`, or None when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def valid_answer(kind_endpoint: str, payload: Any) -> bool:
    """Whether a whole (non-streamed) 200 body is a well-formed answer of its endpoint."""
    if not isinstance(payload, dict):
        return False
    if kind_endpoint == "embeddings":
        data = payload.get("data")
        return isinstance(data, list) and bool(data) and all(isinstance(d.get("embedding"), list) for d in data)
    choices = payload.get("choices")
    return isinstance(choices, list) and bool(choices) and isinstance(payload.get("usage"), dict)


def chunk_content(event: dict[str, Any]) -> str:
    """The generated text a streamed chunk carries (chat delta content or completion text)."""
    text = ""
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text += str((delta.get("content") if isinstance(delta, dict) else choice.get("text")) or "")
    return text


class StreamReader:
    """Follows one SSE stream's `data:` lines and says how it ended."""

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.chunks = 0  # events carrying generated text
        self.events = 0
        self.error: dict[str, Any] | None = None
        self.bad_event = ""  # the first event that is neither a chunk nor an OpenAI error
        self.done = False
        self.after_done = False  # anything after [DONE] is a protocol error

    def feed(self, line: str) -> bool:
        """Take one line; True when it carried generated text (the caller counts chunks and TTFT)."""
        if not line.startswith("data:"):
            return False
        data = line[5:].strip()
        if self.done:
            self.after_done = True
            return False
        if data == "[DONE]":
            self.done = True
            return False
        self.events += 1
        event = json_or_none(data)
        if isinstance(event, dict) and "error" in event:
            error = openai_error(event)
            if error is None and not self.bad_event:
                self.bad_event = data[:200]
            self.error = error or self.error
            return False
        if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
            if not self.bad_event:
                self.bad_event = data[:200]
            return False
        if chunk_content(event):
            self.chunks += 1
            return True
        return False

    def verdict(self) -> tuple[str, str, str]:
        """(result, code, detail) of a stream that ended by itself (the client did not leave)."""
        if self.bad_event:
            return LOST, "malformed_event", self.bad_event
        if self.after_done:
            return LOST, "data_after_done", ""
        if not self.done:
            return LOST, "stream_cut_without_done", f"{self.events} events, error={self.error}"
        if self.error is not None:
            return ERROR, str(self.error.get("code") or self.error.get("type")), ""
        return ANSWER, "", ""
