"""The chat page's data: model choices, the messages sent to the server, and each answer's route record.

Kept apart from the page so the page module is only drawing, and so these parts are plain Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pensieve.ui.client import ChatOutcome
from pensieve.ui.format import Badge, money, reason_text, route_badge, speed


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the chat's model menu."""

    id: str
    kind: str  # local | auto | cloud
    price_input: float = 0.0  # USD per million tokens (cloud)
    price_output: float = 0.0

    @property
    def label(self) -> str:
        """What the menu shows."""
        if self.kind == "auto":
            return "auto · local first, cloud when it should"
        return f"{self.id} · {self.kind}"


def model_choices(cards: list[dict[str, Any]]) -> list[ModelChoice]:
    """The menu from GET /v1/models: `auto` first, then local models, then cloud models."""
    choices = []
    for card in cards:
        details = card.get("details") or {}
        route = details.get("route")
        if card["id"] == "auto" or route == "auto":
            choices.append(ModelChoice(card["id"], "auto"))
        elif route == "cloud":
            price_in = float(details.get("price_input_per_million") or 0.0)
            price_out = float(details.get("price_output_per_million") or 0.0)
            choices.append(ModelChoice(card["id"], "cloud", price_in, price_out))
        else:
            choices.append(ModelChoice(card["id"], "local"))
    order = {"auto": 0, "local": 1, "cloud": 2}
    return sorted(choices, key=lambda choice: order[choice.kind])


def api_messages(system_prompt: str, history: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The conversation as the server wants it: the system prompt, then every turn that has text."""
    messages = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
    for entry in history:
        if entry["content"].strip():
            messages.append({"role": entry["role"], "content": entry["content"]})
    return messages


def answer_record(outcome: ChatOutcome, choices: list[ModelChoice]) -> dict[str, Any]:
    """What an answer's badges show: route, reason, model, latency, speed, tokens, cost."""
    price = next((choice for choice in choices if choice.id == outcome.model), None)
    cost: float | None = 0.0
    if outcome.route == "cloud":
        # Unknown without the model's prices, or without usage (an answer stopped before its end).
        cost = None
        if price is not None and outcome.completion_tokens is not None:
            prompt, completion = outcome.prompt_tokens or 0, outcome.completion_tokens
            cost = (prompt * price.price_input + completion * price.price_output) / 1_000_000
    return {
        "route": outcome.route,
        "reason": outcome.reason,
        "model": outcome.model,
        "latency_s": outcome.elapsed_seconds,
        "first_token_s": outcome.first_token_seconds,
        "tokens_per_second": outcome.tokens_per_second,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cost_usd": cost,
        "finish_reason": outcome.finish_reason,
        "confidence": outcome.confidence,
        "tier": outcome.tier,
    }


def answer_badges(record: dict[str, Any]) -> list[Badge]:
    """The badge row under an answer."""
    badges = [route_badge(record.get("route"), record.get("tier"))]
    if record.get("reason"):
        badges.append(Badge(f"why: {reason_text(record['reason'])}", "gray", ":material/alt_route:"))
    if record.get("confidence") is not None:
        badges.append(Badge(f"local model {record['confidence']:.0%} sure", "blue", ":material/psychology:"))
    if record.get("latency_s") is not None:
        badges.append(Badge(f"{record['latency_s']:.2f} s", "violet", ":material/timer:"))
    if record.get("tokens_per_second") is not None:
        badges.append(Badge(speed(record["tokens_per_second"]), "violet", ":material/speed:"))
    cost = record.get("cost_usd")
    badges.append(Badge(money(cost) if cost is not None else "cost unknown", "yellow", ":material/payments:"))
    if record.get("stopped"):
        badges.append(Badge("stopped", "orange", ":material/stop_circle:"))
    elif record.get("finish_reason") == "length":
        badges.append(Badge("cut at max tokens", "orange", ":material/content_cut:"))
    return badges


def stopped_record(outcome: ChatOutcome) -> dict[str, Any]:
    """The badge record of an answer stopped while it streamed: where it ran and why, marked "stopped".

    No usage arrived (it comes with the last chunk), so tokens and a cloud answer's cost are unknown;
    the server's stored record, shown from the next run on, has them.
    """
    record = answer_record(outcome, [])
    return record | {"stopped": True, "latency_s": outcome.elapsed_seconds or None, "tokens_per_second": None}


def stored_record(message: dict[str, Any]) -> dict[str, Any]:
    """The badge record of an answer as the server stored it (GET /api/sessions/{id} `messages`)."""
    latency_ms = message.get("latency_ms")
    latency_s = latency_ms / 1000 if latency_ms is not None else None
    tokens = message.get("completion_tokens")
    # The stored latency runs from the request to the last token, so this speed includes reading the prompt.
    speed_now = tokens / latency_s if tokens and latency_s else None
    return {
        "route": message.get("route"),
        "reason": message.get("reason"),
        "model": message.get("model"),
        "tier": message.get("tier"),
        "latency_s": latency_s,
        "tokens_per_second": speed_now,
        "prompt_tokens": message.get("prompt_tokens"),
        "completion_tokens": tokens,
        "cost_usd": message.get("cost_usd"),
        "finish_reason": message.get("finish_reason"),
        "stopped": bool(message.get("partial")),
    }


def trimmed_note(count: int | None) -> str | None:
    """The note under an answer whose prompt left stored messages out, or None."""
    if not count:
        return None
    noun = "earlier message was" if count == 1 else "earlier messages were"
    return f"{count} {noun} left out of the prompt (the model's context is full)."


def citation_text(citation: dict[str, Any]) -> str:
    """One cited passage: `harbour.pdf · page 7 · score 3.21`."""
    where = citation.get("location")
    if not where and citation.get("page"):
        where = f"page {citation['page']}"
    score = citation.get("score")
    parts = [str(citation.get("filename") or citation.get("file_id") or "a file"), where]
    parts.append(f"score {score:.2f}" if isinstance(score, int | float) else None)
    return " · ".join(part for part in parts if part)


def tool_call_parts(call: dict[str, Any]) -> tuple[str, str, str]:
    """(function name, arguments, their code language) of a stored tool call, in OpenAI's shape: JSON
    arguments indented, anything else as it came (a model may write arguments that do not parse)."""
    function = call.get("function") or {}
    name = str(function.get("name") or "?")
    arguments = function.get("arguments")
    text, language = pretty_json(arguments if isinstance(arguments, str) else json.dumps(arguments))
    return name, text, language


def pretty_json(text: str | None) -> tuple[str, str]:
    """`text` indented with its language "json" when it parses as JSON; otherwise as it is, "text"."""
    if not text:
        return "", "text"
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), "json"
    except ValueError:
        return text, "text"
