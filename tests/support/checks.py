"""Clients and checks the suites share: the SDK client, OpenAI's error shape, a loaded model's stats."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai

ERROR_KEYS = {"message", "type", "param", "code"}
# What an admin client sends on bodiless POSTs (as the UI does): no browser can send it in a simple request.
ADMIN_HEADERS = {"x-requested-with": "pensieve-tests"}
# Marks an argument of assert_openai_error as "not checked" (None is a value to check).
UNSET: Any = object()
# Gemma's end-of-generation token ids (<eos>, <end_of_turn> and the other EOG token); biasing them
# to -100 keeps a run going until max_tokens.
END_TOKEN_BIAS = {"1": -100, "106": -100, "212": -100}


def make_client(base_url: str, api_key: str = "test", **options: Any) -> openai.OpenAI:
    """The official SDK pointed at a Pensieve server, without retries unless `options` says otherwise."""
    settings: dict[str, Any] = {"max_retries": 0, "timeout": 60.0}
    settings.update(options)
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, **settings)


def assert_openai_error(
    response: httpx.Response, status: int, *, code: object = UNSET, param: object = UNSET
) -> dict[str, Any]:
    """Check that `response` is OpenAI's error JSON with `status` (and `code`/`param` when given).

    Returns the inner `error` object.
    """
    assert response.status_code == status, f"expected HTTP {status}, got {response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert "detail" not in body, f"FastAPI's error shape leaked: {body}"
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert set(error) == ERROR_KEYS, body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    assert isinstance(error["type"], str) and error["type"], body
    if code is not UNSET:
        assert error["code"] == code, body
    if param is not UNSET:
        assert error["param"] == param, body
    return error


def model_entry(http: httpx.Client, model_id: str) -> dict[str, Any]:
    """The GET /api/models entry of `model_id`."""
    response = http.get("/api/models")
    assert response.status_code == 200, response.text
    for entry in response.json()["data"]:
        if entry["id"] == model_id:
            return dict(entry)
    raise AssertionError(f"{model_id} is not listed by /api/models: {response.text}")


def engine_stats(http: httpx.Client, model_id: str) -> dict[str, Any]:
    """The `stats` of a loaded model, from GET /api/models."""
    stats = model_entry(http, model_id)["stats"]
    assert isinstance(stats, dict), f"{model_id} has no stats (not loaded?)"
    return stats


def wait_for_idle(
    http: httpx.Client, model_id: str, served_at_least: int, timeout: float = 10.0
) -> tuple[dict[str, Any], float]:
    """Poll the stats until the engine has finished `served_at_least` runs and is idle.

    Returns the stats and the seconds waited; fails when the engine is still busy after `timeout`.
    """
    started = time.monotonic()
    stats = engine_stats(http, model_id)
    while time.monotonic() - started < timeout:
        stats = engine_stats(http, model_id)
        if stats["requests_served"] >= served_at_least and not stats["busy"] and stats["queue_depth"] == 0:
            return stats, time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"engine still busy {timeout:.0f} s after the client left: {stats}")
