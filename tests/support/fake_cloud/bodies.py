"""What the fake cloud answers: OpenAI error objects, deterministic token counts, echoed logprobs."""

from __future__ import annotations

import math
import re
from typing import Any

_WORD_PIECES = re.compile(r"\S+\s*|\s+")


def error_body(status: int, message: str) -> dict[str, Any]:
    """The OpenAI error object for an HTTP status."""
    kinds: dict[int, tuple[str, str | None]] = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("permission_error", None),
        404: ("invalid_request_error", "unknown_url"),
        429: ("requests", "rate_limit_exceeded"),
    }
    error_type, code = kinds.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def text_of(content: Any) -> str:
    """The text of an OpenAI message content: a string, a list of content parts, or nothing."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return str(content)


def prompt_of(prompt: Any) -> str:
    """The text of a legacy completions prompt: a string, or the first item of a list."""
    if isinstance(prompt, list):
        return str(prompt[0]) if prompt else ""
    return "" if prompt is None else str(prompt)


def token_count(text: str) -> int:
    """Deterministic completion token count: one token per four characters, at least one."""
    return max(1, math.ceil(len(text) / 4))


def chat_prompt_tokens(messages: list[Any]) -> int:
    """Deterministic prompt token count of chat messages: 3 + sum(4 + ceil(len(content) / 4))."""
    total = 3
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += 4 + math.ceil(len(text_of(content)) / 4)
    return total


# The log-probability the fake cloud reports for every token it echoes, and for its one alternative.
ECHO_LOGPROB = -0.25
ALTERNATIVE = (" maybe", -2.5)


def chat_logprobs(piece: str, top: int) -> dict[str, Any]:
    """A chat chunk's `logprobs` for one echoed piece (one token), with `top` alternatives at most."""
    tops = [(piece, ECHO_LOGPROB), ALTERNATIVE][:top]
    entry = {"token": piece, "logprob": ECHO_LOGPROB, "bytes": list(piece.encode())}
    entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in tops]
    return {"content": [entry]}


def completion_logprobs(piece: str, offset: int, top: int) -> dict[str, Any]:
    """A text completion chunk's legacy `logprobs` for one echoed piece."""
    return {
        "tokens": [piece],
        "token_logprobs": [ECHO_LOGPROB],
        "top_logprobs": [dict([(piece, ECHO_LOGPROB), ALTERNATIVE][:top])],
        "text_offset": [offset],
    }


def word_pieces(text: str) -> list[str]:
    """`text` split into word pieces that keep their spaces: joining them gives `text` back exactly."""
    return _WORD_PIECES.findall(text)
