"""Request ids, the access log, JSON logs and /metrics on the real server with the real model.

Every response carries `x-request-id` (the client's when sane, else a new one), the guards' refusals and
404s included; the id is on the server's log lines for that request; with PENSIEVE_LOG_FORMAT=json every
line of the log file is a JSON object; /metrics counts responses by status, times the first token of
streamed and whole answers, and counts a worker killed under the server and the worker started after it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.checks import make_client
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

GENERATED = re.compile(r"req_[0-9a-f]{32}")
HELLO = [{"role": "user", "content": "Say hello."}]
WAIT_SECONDS = 30.0  # how long a log line or counter may take to appear (a bound, not a measured time)


def _log_file(server: ServerHandle) -> Path:
    return Path(server.env["PENSIEVE_LOG_DIR"]) / "pensieve.log"


def _eventually(find: Callable[[], object], what: str) -> object:
    """The first truthy result of `find`: the access line is written just after the response is sent."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = find()
        if found or time.monotonic() > deadline:
            assert found, what
            return found
        time.sleep(0.1)


def _log_lines(server: ServerHandle, *needles: str) -> list[str]:
    text = _log_file(server).read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if all(needle in line for needle in needles)]


def _samples(http: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _http_count(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], route: str, code: int) -> float:
    labels = {"route": route, "status_class": f"{code // 100}xx", "code": str(code)}
    return _value(samples, "pensieve_http_responses_total", **labels)


def test_every_response_carries_a_request_id_and_the_log_names_it(server: ServerHandle, http: httpx.Client) -> None:
    before = _samples(http)
    echoed = http.get("/v1/models", headers={"x-request-id": "obs-echo-1"})
    assert echoed.status_code == 200 and echoed.headers["x-request-id"] == "obs-echo-1"
    made = http.get("/v1/models")
    assert GENERATED.fullmatch(made.headers["x-request-id"])
    replaced = http.get("/v1/models", headers={"x-request-id": "x" * 129})
    assert GENERATED.fullmatch(replaced.headers["x-request-id"])

    forged_host = http.get("/v1/models", headers={"host": "evil.example", "x-request-id": "obs-403"})
    assert forged_host.status_code == 403 and forged_host.headers["x-request-id"] == "obs-403"
    too_large = http.post(
        "/v1/chat/completions",
        content=b"{" + b" " * (8 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json", "x-request-id": "obs-413"},
    )
    assert too_large.status_code == 413 and too_large.headers["x-request-id"] == "obs-413"
    unknown = http.get("/no/such/path/4711")
    assert unknown.status_code == 404 and GENERATED.fullmatch(unknown.headers["x-request-id"])
    broken_model = http.post(
        "/v1/chat/completions", json={"model": "not-gguf", "messages": HELLO}, headers={"x-request-id": "obs-500"}
    )
    assert broken_model.status_code == 500 and broken_model.headers["x-request-id"] == "obs-500"

    _eventually(lambda: _log_lines(server, "[obs-echo-1]", "pensieve.access", "GET /v1/models 200 "), "access line")
    for request_id, line in (
        ("obs-403", "GET /v1/models 403 "),
        ("obs-413", "POST /v1/chat/completions 413 "),
        ("obs-500", "POST /v1/chat/completions 500 "),
        (unknown.headers["x-request-id"], "GET /no/such/path/4711 404 "),
    ):
        _eventually(lambda r=request_id, s=line: _log_lines(server, f"[{r}]", s), f"access line {line}")  # type: ignore[misc]
    assert not _log_lines(server, "uvicorn.access"), "uvicorn's access log (without ids) is off"

    after = _samples(http)
    for route, code in (("/v1/models", 403), ("/v1/chat/completions", 413), ("unmatched", 404)):
        assert _http_count(after, route, code) == _http_count(before, route, code) + 1, (route, code)
    assert _http_count(after, "/v1/chat/completions", 500) >= _http_count(before, "/v1/chat/completions", 500) + 1
    assert _http_count(after, "/v1/models", 200) >= _http_count(before, "/v1/models", 200) + 3
    assert not [key for key in after if ("route", "/no/such/path/4711") in key[1]], "no raw path as a label"


def test_time_to_first_token_is_measured_for_streamed_and_whole_answers(
    server: ServerHandle, http: httpx.Client, client: openai.OpenAI, model_id: str
) -> None:
    def first_tokens() -> float:
        return _value(_samples(http), "pensieve_time_to_first_token_seconds_count", route="local", model=model_id)

    before = first_tokens()
    whole = client.chat.completions.with_raw_response.create(
        model=model_id, messages=HELLO, max_tokens=4, extra_headers={"x-request-id": "obs-chat-whole"}
    )
    assert whole.headers["x-request-id"] == "obs-chat-whole" and whole.parse().choices
    streamed = client.chat.completions.with_raw_response.create(
        model=model_id, messages=HELLO, max_tokens=4, stream=True, extra_headers={"x-request-id": "obs-chat-stream"}
    )
    assert streamed.headers["x-request-id"] == "obs-chat-stream"
    assert [chunk for chunk in streamed.parse()]
    assert first_tokens() == before + 2
    samples = _samples(http)
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "pensieve_time_to_first_token_seconds_bucket" and ("model", model_id) in labels
    }
    assert {"0.01", "60.0", "+Inf"} <= set(buckets) and buckets["+Inf"] == before + 2
    _eventually(lambda: _log_lines(server, "[obs-chat-stream]", "POST /v1/chat/completions 200 "), "stream line")


def test_json_logs_and_worker_crash_and_restart_counters(server_factory: ServerFactory) -> None:
    with (
        server_factory("json-logs", {"PENSIEVE_LOG_FORMAT": "json"}) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        sdk = make_client(server.base_url)
        model_id = server.model_id
        answer = sdk.chat.completions.create(
            model=model_id, messages=HELLO, max_tokens=4, extra_headers={"x-request-id": "obs-json-1"}
        )
        assert answer.choices

        [running] = http.get("/api/ps").json()["models"]
        os.kill(running["pid"], signal.SIGKILL)
        crashes = "pensieve_worker_crashes_total"
        _eventually(lambda: _value(_samples(http), crashes, model=model_id) == 1, "one crash counted")
        assert _value(_samples(http), "pensieve_worker_restarts_total", model=model_id) == 0
        again = sdk.chat.completions.create(
            model=model_id, messages=HELLO, max_tokens=4, extra_headers={"x-request-id": "obs-json-2"}
        )
        assert again.choices
        samples = _samples(http)
        assert _value(samples, "pensieve_worker_restarts_total", model=model_id) == 1
        assert _value(samples, crashes, model=model_id) == 1, "a crash is counted once, however often it is seen"
        sdk.close()

        def access_entry() -> list[dict[str, object]]:
            lines = _log_file(server).read_text(encoding="utf-8").splitlines()
            entries = [json.loads(line) for line in lines]
            return [e for e in entries if e["request_id"] == "obs-json-1" and e["logger"] == "pensieve.access"]

        [entry] = _eventually(access_entry, "the JSON access line")  # type: ignore[misc]
        assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/v1/chat/completions", 200)
    lines = _log_file(server).read_text(encoding="utf-8").splitlines()
    assert len(lines) > 10
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message", "request_id"} <= set(entry) for entry in entries)
    assert all(entry["ts"].endswith("Z") for entry in entries)
    assert [e for e in entries if e["level"] == "ERROR" and "SIGKILL" in e["message"]], lines[-20:]
    # Logged while serving the request that restarted the worker: a line of the request, not of the access log.
    [restart] = [e for e in entries if "restarting the worker" in e["message"]]
    assert (restart["level"], restart["request_id"]) == ("WARNING", "obs-json-2")
