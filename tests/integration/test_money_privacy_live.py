"""Honest money and privacy, end to end: a real server and model, a fake cloud on loopback that bills.

- Budget: 20 concurrent cloud-routed requests against a small daily cap overshoot it by at most one
  request's estimated cost; the others are kept local with reason `budget`; what the ledger recorded
  equals, to the token, what the fake cloud billed.
- Spend on cut streams: a client that leaves mid-stream still leaves the billed tokens in the ledger.
- Privacy: a private marker in any forwarded field (names, stop, response_format, every message role,
  content parts, the second prompt of a batch) keeps the request off the cloud: the fake's request log
  stays empty.
- A data folder that cannot hold the ledger never costs an answer: /ready reports it, chat works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.fake_cloud import FakeCloud
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

CLOUD_KEY = "sk-fake-cloud-money-77"
CLOUD_MODEL = "fake/big-model"
PRICE_INPUT, PRICE_OUTPUT = 1000.0, 2000.0  # USD per million tokens: 0.001 and 0.002 USD per token
DAILY_CAP = 0.2
EMAIL = "jane.doe@example.com"
KEYWORD = "bluebird"


def _cost(prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * PRICE_INPUT + completion_tokens * PRICE_OUTPUT) / 1_000_000


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud: a short pause between streamed events, so concurrent calls really overlap."""
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.02, hang_seconds=20) as fake:
        yield fake


@pytest.fixture(scope="module")
def money_server(server_factory: ServerFactory, cloud: FakeCloud) -> Iterator[ServerHandle]:
    """A server bursting to the fake cloud, with a small daily cap and a private keyword."""
    env = cloud.provider_env(
        PENSIEVE_CLOUD_PRICE_INPUT=str(PRICE_INPUT),
        PENSIEVE_CLOUD_PRICE_OUTPUT=str(PRICE_OUTPUT),
        PENSIEVE_CLOUD_TIMEOUT_SECONDS="30",
        PENSIEVE_CLOUD_FIRST_TOKEN_TIMEOUT_SECONDS="15",
        PENSIEVE_BUDGET_DAILY_USD=str(DAILY_CAP),
        PENSIEVE_BUDGET_MONTHLY_USD="1000",
        PENSIEVE_PRIVACY_KEYWORDS=KEYWORD,
    )
    with server_factory("money", env) as handle:
        yield handle


@pytest.fixture
def http(money_server: ServerHandle, cloud: FakeCloud) -> Iterator[httpx.Client]:
    """A raw client on the money server; the fake cloud starts each test with an empty log and no bills."""
    cloud.reset()
    with httpx.Client(base_url=money_server.base_url, timeout=120.0) as client:
        yield client


def stats(http: httpx.Client) -> dict[str, Any]:
    """GET /api/burst/stats."""
    response = http.get("/api/burst/stats", params={"recent": 200})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def recorded_cloud_tokens(http: httpx.Client) -> tuple[int, int]:
    """(prompt, completion) cloud tokens the ledger holds, all time."""
    tokens = stats(http)["tokens"]
    return tokens["cloud_prompt_tokens"], tokens["cloud_completion_tokens"]


def wait_for(condition: Any, what: str, deadline_seconds: float = 30.0) -> None:
    """Poll `condition()` until true (the record is written when the server notices the client left)."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


# --- spend recorded for a stream the client abandoned ------------------------------------------------------


def test_a_client_leaving_mid_stream_leaves_the_billed_tokens_in_the_ledger(
    http: httpx.Client, cloud: FakeCloud
) -> None:
    before = recorded_cloud_tokens(http)
    # The fake sends one piece, then nothing until its caller hangs up, so the client has received all that
    # was billed when it leaves (with more in flight, what the provider sent after the server stopped reading
    # would be billed but never seen: only a provider's usage report could count it).
    cloud.set_fault(stall_after_chunks=1)
    body = {
        "model": CLOUD_MODEL,
        "stream": True,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}],
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200 and response.headers["x-pensieve-route"] == "cloud"
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                break  # got text: hang up mid-stream
    wait_for(lambda: cloud.bills and recorded_cloud_tokens(http) != before, "the abandoned stream's bill and record")
    (bill,) = cloud.bills
    after = recorded_cloud_tokens(http)
    assert bill["completion_tokens"] > 0
    assert (after[0] - before[0], after[1] - before[1]) == (bill["prompt_tokens"], bill["completion_tokens"])
    entry = stats(http)["recent"][0]
    assert (entry["route"], entry["error"], entry["usage_source"]) == ("cloud", "client_disconnected", "estimated")
    assert entry["cost_usd"] == pytest.approx(_cost(bill["prompt_tokens"], bill["completion_tokens"]))


# --- privacy: every forwarded field is scanned --------------------------------------------------------------

SCHEMA_WITH = {
    "name": "answer",
    "schema": {"type": "object", "properties": {"a": {"type": "string", "description": f"write to {EMAIL}"}}},
}
CHAT_CASES: dict[str, dict[str, Any]] = {
    "content": {"messages": [{"role": "user", "content": f"Say hi to {EMAIL}"}]},
    "content_parts": {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi."}, {"type": "text", "text": EMAIL}]}]
    },
    "system": {"messages": [{"role": "system", "content": f"Owner: {EMAIL}"}, {"role": "user", "content": "Hi."}]},
    "assistant": {
        "messages": [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": f"Project {KEYWORD} is on."},
            {"role": "user", "content": "Go on."},
        ]
    },
    "tool": {
        "messages": [{"role": "user", "content": "Hi."}, {"role": "tool", "content": f"lookup: {EMAIL}"}],
    },
    "name": {"messages": [{"role": "user", "content": "Hi.", "name": KEYWORD}]},
    "stop": {"messages": [{"role": "user", "content": "Hi."}], "stop": [EMAIL]},
    "response_format": {
        "messages": [{"role": "user", "content": "Hi."}],
        "response_format": {"type": "json_schema", "json_schema": SCHEMA_WITH},
    },
    "schema_enum": {
        "messages": [{"role": "user", "content": "Hi."}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "string", "enum": [f"{KEYWORD} plan"]}},
        },
    },
}


@pytest.mark.parametrize("case", list(CHAT_CASES))
def test_a_private_marker_in_any_forwarded_chat_field_stays_local(
    http: httpx.Client, cloud: FakeCloud, case: str
) -> None:
    body = {"model": "auto", "max_tokens": 4, "temperature": 0, **CHAT_CASES[case]}
    response = http.post("/v1/chat/completions", json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 200, response.text
    assert (response.headers["x-pensieve-route"], response.headers["x-pensieve-reason"]) == ("local", "privacy")
    assert cloud.requests == []


def test_a_private_second_prompt_of_a_batch_keeps_the_batch_local(http: httpx.Client, cloud: FakeCloud) -> None:
    body = {"model": "auto", "prompt": ["Hello", f"Mail {EMAIL}"], "max_tokens": 2, "temperature": 0}
    response = http.post("/v1/completions", json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 200, response.text
    assert response.headers["x-pensieve-reason"] == "privacy"
    assert cloud.requests == []


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/completions", {"suffix": f"signed {EMAIL}"}),
    ],
)
def test_fields_never_forwarded_are_refused_before_routing(
    http: httpx.Client, cloud: FakeCloud, path: str, extra: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"model": "auto", "max_tokens": 2, **extra}
    body.update({"messages": [{"role": "user", "content": "Hi."}]} if "chat" in path else {"prompt": "Hi."})
    response = http.post(path, json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_parameter"
    assert cloud.requests == []


def test_the_same_request_without_the_marker_does_go_to_the_cloud(http: httpx.Client, cloud: FakeCloud) -> None:
    body = {"model": "auto", "max_tokens": 16, **CHAT_CASES["stop"], "stop": ["END"]}
    response = http.post("/v1/chat/completions", json=body, headers={"x-pensieve-route": "cloud"})
    assert response.status_code == 200 and response.headers["x-pensieve-route"] == "cloud"
    assert cloud.requests[0]["body"]["stop"] == ["END"]


# --- budget: reservations keep 20 concurrent requests under the cap ----------------------------------------


def test_twenty_concurrent_cloud_requests_overshoot_the_cap_by_at_most_one_request(
    http: httpx.Client, cloud: FakeCloud
) -> None:
    message = {"role": "user", "content": "Please echo this sentence back to me."}
    body = {"model": "auto", "max_tokens": 24, "temperature": 0, "messages": [message]}
    explained = http.post("/api/route/explain", json=body, headers={"x-pensieve-route": "cloud"}).json()
    one_request = explained["signals"]["estimated_cost_usd"]  # prompt + max_tokens at the cloud's prices
    before = stats(http)
    assert before["spend"]["today_usd"] < DAILY_CAP, "earlier tests must leave room under the cap"

    def send(_: int) -> httpx.Response:
        return http.post("/v1/chat/completions", json=body, headers={"x-pensieve-route": "cloud"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, range(20)))
    assert all(response.status_code == 200 for response in responses), [r.text for r in responses]
    routes = [(r.headers["x-pensieve-route"], r.headers["x-pensieve-reason"]) for r in responses]
    to_cloud = routes.count(("cloud", "explicit"))
    assert to_cloud >= 1 and routes.count(("local", "budget")) == 20 - to_cloud, routes
    after = stats(http)
    spent = after["spend"]["today_usd"]
    assert spent <= DAILY_CAP + one_request, (spent, one_request, routes)
    # What was recorded is exactly what the fake cloud billed.
    billed_prompt, billed_completion = cloud.billed_tokens()
    assert len(cloud.bills) == to_cloud
    tokens_before, tokens_after = before["tokens"], after["tokens"]
    recorded = (
        tokens_after["cloud_prompt_tokens"] - tokens_before["cloud_prompt_tokens"],
        tokens_after["cloud_completion_tokens"] - tokens_before["cloud_completion_tokens"],
    )
    assert recorded == (billed_prompt, billed_completion)
    recorded_usd = after["spend"]["all_time_usd"] - before["spend"]["all_time_usd"]
    assert recorded_usd == pytest.approx(_cost(billed_prompt, billed_completion), abs=1e-9)


# --- a data folder that cannot hold the ledger --------------------------------------------------------------


def test_an_unusable_data_folder_degrades_the_ledger_but_chat_answers(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where a folder is needed: every path under it fails with ENOTDIR")
    with server_factory("ledger-degraded", {"PENSIEVE_DATA_DIR": str(blocker / "data")}) as server:
        with httpx.Client(base_url=server.base_url, timeout=120.0) as client:
            ready = client.get("/ready")
            body = {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi."}]}
            answer = client.post("/v1/chat/completions", json=body)
            spend = client.get("/api/burst/stats")
        log = server.log_tail(400)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    (warning,) = ready.json()["warnings"]
    assert warning["component"] == "spend_ledger" and "in memory" in warning["message"]
    assert str(blocker) in warning["message"]
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] is not None
    assert spend.status_code == 200 and spend.json()["tokens"]["local_requests"] == 1
    assert log.count("spend ledger is kept in memory") == 1
