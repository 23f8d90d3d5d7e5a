"""Request ids: the sanitiser, the logging filter, the JSON formatter and the middleware on a small real app.

The app is a real FastAPI app with the real guard (`RequestOriginGuard`) and the real `Metrics`, driven by
Starlette's TestClient; the whole server with the model is in tests/integration/test_live_observability.py.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from pensieve.api.security import RequestOriginGuard
from pensieve.app import create_app
from pensieve.burst.stats import DecisionLogEntry
from pensieve.config import load_settings
from pensieve.observability.logging import LOG_FORMAT, JsonFormatter, RequestIdFilter, make_formatter
from pensieve.observability.metrics import Metrics
from pensieve.observability.request_id import (
    UNMATCHED_ROUTE,
    RequestContextMiddleware,
    current_request_id,
    loggable,
    request_id_from,
    route_label,
    route_templates,
    sane_request_id,
)

GENERATED = re.compile(r"req_[0-9a-f]{32}")


@pytest.mark.parametrize("value", ["abc", "A-b_c.d:e", "0" * 128, "  padded  ", "4bf92f3577b34da6a3ce929d0e0e4736"])
def test_sane_ids_are_kept(value: str) -> None:
    assert sane_request_id(value) == value.strip()


@pytest.mark.parametrize("value", [None, "", "   ", "0" * 129, "a b", "a\nb", "x\r\ny", "é", "a/b", "a;b"])
def test_other_ids_are_refused(value: str | None) -> None:
    assert sane_request_id(value) is None


def test_the_clients_id_is_taken_and_a_bad_or_missing_one_replaced() -> None:
    assert request_id_from([(b"X-Request-ID", b"client-1")]) == "client-1"
    assert request_id_from([(b"x-request-id", b"first"), (b"x-request-id", b"second")]) == "first"
    assert GENERATED.fullmatch(request_id_from([(b"x-request-id", b"evil\nline")]))
    assert GENERATED.fullmatch(request_id_from([]))
    assert request_id_from([]) != request_id_from([])


def test_loggable_escapes_control_characters_and_cuts_long_text() -> None:
    assert loggable("/v1/models") == "/v1/models"
    assert "\n" not in loggable("/a\nFAKE LINE") and "\\n" in loggable("/a\nFAKE LINE")
    assert len(loggable("/" + "x" * 1000)) == 200


def _record(message: str = "hello %s", args: tuple[object, ...] = ("world",)) -> logging.LogRecord:
    return logging.LogRecord("pensieve.test", logging.WARNING, __file__, 1, message, args, None)


def test_the_filter_stamps_a_dash_outside_requests() -> None:
    record = _record()
    assert RequestIdFilter().filter(record) is True
    assert record.request_id == "-"  # type: ignore[attr-defined]
    line = make_formatter("text").format(record)
    assert "[-]: hello world" in line and "WARNING" in line and "pensieve.test" in line
    assert "%(request_id)s" in LOG_FORMAT


def test_the_json_formatter_writes_one_object_per_line_with_the_fields() -> None:
    record = _record("two\nlines %s", ("here",))
    RequestIdFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"ts", "level", "logger", "message", "request_id"}
    assert (entry["level"], entry["logger"], entry["message"], entry["request_id"]) == (
        "WARNING",
        "pensieve.test",
        "two\nlines here",
        "-",
    )
    assert entry["ts"].endswith("Z")
    stamp = datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs(stamp.timestamp() - record.created) < 0.001


def test_the_json_formatter_adds_the_traceback_and_extra_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    record.fields = {"status": 500, "message": "not overriding"}
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exc"] and "Traceback" in entry["exc"]
    assert entry["status"] == 500 and entry["message"] == "failed"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _app(metrics: Metrics) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str | None]:
        logging.getLogger("pensieve.test").info("serving %s", item_id)
        return {"seen": current_request_id()}

    @app.post("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestOriginGuard, allowed_hosts=[], cors_origins=[])
    app.add_middleware(RequestContextMiddleware, metrics=lambda: metrics)
    return app


def _count(metrics: Metrics, route: str, code: int) -> float | None:
    labels = {"route": route, "status_class": f"{code // 100}xx", "code": str(code)}
    return metrics.registry.get_sample_value("pensieve_http_responses_total", labels)


def test_the_middleware_tags_logs_and_responses_and_counts_by_route_template(records: _Records) -> None:
    metrics = Metrics()
    with TestClient(_app(metrics), base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        sent = client.get("/items/7", headers={"x-request-id": "from-client"})
        made = client.get("/items/8")
        forged = client.get("/items/9", headers={"x-request-id": "bad id\n"})
        missing = client.get("/nowhere/123")
        refused = client.get("/items/1", headers={"host": "evil.example", "x-request-id": "guarded"})
        failed = client.post("/broken", headers={"x-request-id": "boom-1"})

    assert sent.headers["x-request-id"] == "from-client" and sent.json() == {"seen": "from-client"}
    assert GENERATED.fullmatch(made.headers["x-request-id"]) and made.json()["seen"] == made.headers["x-request-id"]
    assert GENERATED.fullmatch(forged.headers["x-request-id"])
    assert missing.status_code == 404 and GENERATED.fullmatch(missing.headers["x-request-id"])
    assert refused.status_code == 403 and refused.headers["x-request-id"] == "guarded"
    assert failed.status_code == 500 and failed.headers["x-request-id"] == "boom-1"
    assert failed.json()["error"]["type"] == "server_error"

    serving = [r for r in records.records if r.getMessage() == "serving 7"]
    assert [r.request_id for r in serving] == ["from-client"]  # type: ignore[attr-defined]
    access = {r.request_id: r.getMessage() for r in records.records if r.name == "pensieve.access"}  # type: ignore[attr-defined]
    assert access["from-client"].startswith("GET /items/7 200 ") and access["from-client"].endswith(" ms")
    assert access["guarded"].startswith("GET /items/1 403 ")
    assert access["boom-1"].startswith("POST /broken 500 ")
    assert current_request_id() is None

    assert _count(metrics, "/items/{item_id}", 200) == 3
    assert _count(metrics, "/items/{item_id}", 403) == 1
    assert _count(metrics, "/broken", 500) == 1
    assert _count(metrics, UNMATCHED_ROUTE, 404) == 1
    assert _count(metrics, "/nowhere/123", 404) is None


def test_the_first_token_histogram_and_worker_counters() -> None:
    metrics = Metrics()
    metrics.worker_event("crash", "m")
    metrics.worker_event("restart", "m")
    metrics.worker_event("crash", "m")
    assert metrics.registry.get_sample_value("pensieve_worker_crashes_total", {"model": "m"}) == 2
    assert metrics.registry.get_sample_value("pensieve_worker_restarts_total", {"model": "m"}) == 1
    for route, first_token_ms in (("local", 30.0), ("local", 4000.0), ("cloud", None), ("error", None)):
        metrics.observe(_entry(route, first_token_ms))
    ttft = "pensieve_time_to_first_token_seconds"
    local = {"route": "local", "model": "m"}
    assert metrics.registry.get_sample_value(f"{ttft}_count", local) == 2
    assert metrics.registry.get_sample_value(f"{ttft}_bucket", {**local, "le": "0.05"}) == 1
    assert metrics.registry.get_sample_value(f"{ttft}_bucket", {**local, "le": "5.0"}) == 2
    assert metrics.registry.get_sample_value(f"{ttft}_count", {"route": "cloud", "model": "m"}) is None


def _entry(route: str, first_token_ms: float | None) -> DecisionLogEntry:
    return DecisionLogEntry(
        at=0.0,
        route=route,
        reason="default",
        model="m",
        latency_ms=5000.0,
        first_token_ms=first_token_ms,
        prompt_tokens=3,
        completion_tokens=4,
        cost_usd=0.0,
        fallback=False,
        stream=False,
        error=None,
    )


def test_the_real_apps_routes_are_found_by_template_before_routing(tmp_path: Path) -> None:
    templates = route_templates(create_app(load_settings(env_file=tmp_path / ".env")))
    found = {template for _, template in templates}
    assert {"/v1/chat/completions", "/v1/models/{model_id}", "/api/models/{model_id}/load", "/metrics"} <= found
    assert route_label({"path": "/api/models/gemma/load"}, templates) == "/api/models/{model_id}/load"
    assert route_label({"path": "/v1/chat/completions"}, templates) == "/v1/chat/completions"
    assert route_label({"path": "/v1/chat/completions/../../etc"}, templates) == UNMATCHED_ROUTE
