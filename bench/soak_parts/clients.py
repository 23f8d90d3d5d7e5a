"""The soak's clients: a weighted mix of request kinds, sent in a closed loop, some abandoned on purpose.

Each client loops until the deadline: pick a kind, send it with httpx (raw, so every byte the server sends
can be judged), classify how it ended (`outcome.py`). A client picked as "flaky" abandons some requests: a
stream after a few chunks (it closes the response), or any request after a random wait (the task is
cancelled, so httpx drops the connection). A request still unanswered after `hang_after_s` is LOST ("hang").
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from soak_parts.outcome import (
    ANSWER,
    DISCONNECT,
    ERROR,
    LOST,
    Outcome,
    StreamReader,
    json_or_none,
    openai_error,
    valid_answer,
)


@dataclass(frozen=True)
class Kind:
    """One kind of request: its endpoint, whether it streams, how it is routed, how often it is sent."""

    name: str
    endpoint: str  # "chat", "completions" or "embeddings"
    stream: bool
    route: str  # "local" (the local model id), "cloud" (X-Pensieve-Route: cloud) or "auto" (model "auto")
    weight: int


KINDS = (
    Kind("chat_local", "chat", False, "local", 14),
    Kind("chat_local_stream", "chat", True, "local", 16),
    Kind("completion_local", "completions", False, "local", 8),
    Kind("completion_local_stream", "completions", True, "local", 6),
    Kind("embeddings", "embeddings", False, "local", 8),
    Kind("chat_cloud", "chat", False, "cloud", 12),
    Kind("chat_cloud_stream", "chat", True, "cloud", 16),
    Kind("completion_cloud_stream", "completions", True, "cloud", 6),
    Kind("chat_auto", "chat", False, "auto", 6),
    Kind("chat_auto_stream", "chat", True, "auto", 8),
)
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "embeddings": "/v1/embeddings"}

# Prompts of a few to ~25 words: the fake cloud echoes them, so a cloud stream has pieces enough to be cut.
PROMPTS = (
    "Name three primary colors.",
    "Write one sentence about the sea and the wind over the harbour at night.",
    "What is the capital of France? Answer in a few words.",
    "List four animals that live in cold places, with one short fact about each of them please.",
    "Explain in simple words why the sky looks blue on a clear summer day, in two or three short lines.",
    "Count from one to twelve in words, separated by commas, and then say which numbers were even.",
)


@dataclass(frozen=True)
class ClientPlan:
    """What the clients share: where to send, which model, when to stop, how flaky they are."""

    base_url: str
    model_id: str
    deadline: float  # time.monotonic() at which no client starts a new request
    flaky_fraction: float = 0.25  # share of clients that abandon requests
    abandon_probability: float = 0.3  # a flaky client's chance to abandon any one request
    hang_after_s: float = 180.0  # a request unanswered this long is LOST ("hang")


def request_body(kind: Kind, model_id: str, rng: random.Random) -> dict[str, Any]:
    """The JSON body of one request of `kind` (max_tokens 8-64 so two cores keep up)."""
    prompt = rng.choice(PROMPTS)
    model = model_id if kind.route == "local" else "auto"
    if kind.endpoint == "embeddings":
        return {"model": model, "input": [prompt, rng.choice(PROMPTS)]}
    body: dict[str, Any] = {"model": model, "max_tokens": rng.randint(8, 64), "stream": kind.stream}
    if rng.random() < 0.5:
        body["temperature"] = 0
    if kind.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if kind.stream and rng.random() < 0.5:
        body["stream_options"] = {"include_usage": True}
    return body


def headers_for(kind: Kind) -> dict[str, str]:
    """The routing header of `kind` (none for local and auto: the model id decides)."""
    return {"X-Pensieve-Route": "cloud"} if kind.route == "cloud" else {}


async def _whole(http: httpx.AsyncClient, kind: Kind, body: dict[str, Any], started: float) -> Outcome:
    """Send a non-streamed request and judge its body."""
    response = await http.post(PATHS[kind.endpoint], json=body, headers=headers_for(kind))
    latency = time.monotonic() - started
    route = response.headers.get("x-pensieve-route", "-")
    payload = json_or_none(response.text)
    if response.status_code == 200:
        if valid_answer(kind.endpoint, payload):
            return Outcome(kind.name, ANSWER, latency, route, 200)
        return Outcome(kind.name, LOST, latency, route, 200, "malformed_answer", response.text[:200])
    error = openai_error(payload)
    if error is None:
        return Outcome(kind.name, LOST, latency, route, response.status_code, "error_without_json", response.text[:200])
    return Outcome(kind.name, ERROR, latency, route, response.status_code, str(error.get("code") or error["type"]))


async def _streamed(
    http: httpx.AsyncClient, kind: Kind, body: dict[str, Any], started: float, leave_after: int | None
) -> Outcome:
    """Send a streamed request, read its events (leaving after `leave_after` chunks, if set) and judge them."""
    reader, ttft = StreamReader(), None
    async with http.stream("POST", PATHS[kind.endpoint], json=body, headers=headers_for(kind)) as response:
        route = response.headers.get("x-pensieve-route", "-")
        if response.status_code != 200:
            text = (await response.aread()).decode("utf-8", "replace")
            latency = time.monotonic() - started
            error = openai_error(json_or_none(text))
            if error is None:
                return Outcome(kind.name, LOST, latency, route, response.status_code, "error_without_json", text[:200])
            code = str(error.get("code") or error["type"])
            return Outcome(kind.name, ERROR, latency, route, response.status_code, code)
        try:
            async for line in response.aiter_lines():
                if reader.feed(line):
                    ttft = ttft if ttft is not None else time.monotonic() - started
                    if leave_after is not None and reader.chunks >= leave_after:
                        # Leaving the `async with` closes the response: the server sees the client go.
                        return Outcome(kind.name, DISCONNECT, time.monotonic() - started, route, 200, "mid_stream")
        except httpx.TransportError as exc:
            latency = time.monotonic() - started
            detail = f"{type(exc).__name__}: {exc} after {reader.chunks} chunks"
            return Outcome(kind.name, LOST, latency, route, 200, "stream_broken", detail[:200], ttft)
    result, code, detail = reader.verdict()
    return Outcome(kind.name, result, time.monotonic() - started, route, 200, code, detail, ttft)


async def one_request(
    http: httpx.AsyncClient, kind: Kind, body: dict[str, Any], plan: ClientPlan, rng: random.Random, flaky: bool
) -> Outcome:
    """Send one request of `kind` and say how it ended, abandoning it on purpose when `flaky` decides so."""
    started = time.monotonic()
    abandon = flaky and rng.random() < plan.abandon_probability
    # A flaky stream leaves mid-stream or mid-wait; a flaky whole request leaves mid-wait.
    leave_after = rng.randint(1, 4) if abandon and kind.stream and rng.random() < 0.6 else None
    wait_limit = rng.uniform(0.05, 3.0) if abandon and leave_after is None else plan.hang_after_s
    work = _streamed(http, kind, body, started, leave_after) if kind.stream else _whole(http, kind, body, started)
    try:
        return await asyncio.wait_for(work, timeout=wait_limit)
    except asyncio.TimeoutError:
        latency = time.monotonic() - started
        if abandon:
            return Outcome(kind.name, DISCONNECT, latency, code="mid_wait")
        return Outcome(kind.name, LOST, latency, code="hang", detail=f"no end after {plan.hang_after_s:.0f} s")
    except httpx.TimeoutException as exc:
        return Outcome(kind.name, LOST, time.monotonic() - started, code="hang", detail=repr(exc)[:200])
    except httpx.TransportError as exc:
        # A connection the server reset or closed without an answer: no clear error reached the client.
        return Outcome(kind.name, LOST, time.monotonic() - started, code="connection_error", detail=repr(exc)[:200])


async def run_client(index: int, plan: ClientPlan, seed: int, record: Callable[[Outcome], None]) -> None:
    """One client's closed loop until the deadline; each request's outcome goes to `record`.

    Flaky clients are spread evenly over the indexes: with 16
    clients and 0.25, clients 0, 4, 8 and 12.
    """
    rng = random.Random(seed * 1000 + index)
    flaky = (index * plan.flaky_fraction) % 1.0 < plan.flaky_fraction - 1e-9
    weights = [kind.weight for kind in KINDS]
    timeout = httpx.Timeout(plan.hang_after_s + 30.0)  # the asyncio limit above decides; this one is a backstop
    async with httpx.AsyncClient(base_url=plan.base_url, timeout=timeout) as http:
        while time.monotonic() < plan.deadline:
            kind = rng.choices(KINDS, weights)[0]
            record(await one_request(http, kind, request_body(kind, plan.model_id, rng), plan, rng, flaky))


def outcome_counts(outcomes: list[Outcome]) -> dict[str, int]:
    """How many requests ended each way."""
    counts = {ANSWER: 0, ERROR: 0, DISCONNECT: 0, LOST: 0}
    for outcome in outcomes:
        counts[outcome.result] += 1
    return counts
