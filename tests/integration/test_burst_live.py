"""The burst controller end to end: a real Pensieve server, the real local model, a fake cloud on loopback.

The fake cloud is a real OpenAI-compatible HTTP server that records every request it receives, so
privacy is checked where it matters: in what actually reached the cloud.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from support.checks import ADMIN_HEADERS, END_TOKEN_BIAS, engine_stats, make_client
from support.fake_cloud import FakeCloud
from support.server import ServerFactory, ServerHandle

pytestmark = pytest.mark.integration

CLOUD_KEY = "sk-fake-cloud-secret-4242"
CLOUD_MODEL = "fake/big-model"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
TRIVIAL = "Say hello."
COMPLEX = (
    "Step by step, prove that the sum of the first n odd numbers is n^2, then write a Python function "
    "`def check(n: int) -> bool:` that verifies it for n up to 1000, compare its complexity with a closed "
    "form, explain why the induction works, and analyse the trade-offs of both approaches. "
    "Solve for x: 3x^2 + 2x - 5 = 0 and derive the integral of x^2 from 0 to 1."
)


def cloud_env(cloud: FakeCloud, **extra: str) -> dict[str, str]:
    """Settings of a server whose cloud is the fake one."""
    env = cloud.provider_env(
        PENSIEVE_CLOUD_PRICE_INPUT="1000",  # USD per million: 1 token costs 0.001 USD
        PENSIEVE_CLOUD_PRICE_OUTPUT="2000",
        PENSIEVE_CLOUD_TIMEOUT_SECONDS="5",
        PENSIEVE_CLOUD_FIRST_TOKEN_TIMEOUT_SECONDS="2",
        PENSIEVE_CLOUD_CIRCUIT_FAILURES="2",
        PENSIEVE_CLOUD_CIRCUIT_COOLDOWN_SECONDS="2",
        PENSIEVE_BUDGET_DAILY_USD="1000",
        PENSIEVE_BUDGET_MONTHLY_USD="1000",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    """The fake cloud shared by the module (reset before each test)."""
    # No pause between chunks: the context test echoes a ~4,000-token prompt word by word.
    with FakeCloud(api_key=CLOUD_KEY, chunk_delay=0.0) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_cloud(cloud: FakeCloud, burst_server: ServerHandle) -> None:
    """Every test starts with a healthy fake cloud and closed circuits (failures must not add up across tests)."""
    cloud.reset()
    response = httpx.post(f"{burst_server.base_url}/api/burst/circuits/reset", timeout=10, headers=ADMIN_HEADERS)
    assert response.status_code == 200 and response.json()["reset"] == ["fake"]


@pytest.fixture(scope="module")
def burst_server(server_factory: ServerFactory, cloud: FakeCloud) -> Iterator[ServerHandle]:
    """Privacy mode block (the default), every criterion on."""
    with server_factory("burst", cloud_env(cloud)) as handle:
        yield handle


@pytest.fixture(scope="module")
def sdk(burst_server: ServerHandle) -> Iterator[openai.OpenAI]:
    """The official SDK on the burst server."""
    client = make_client(burst_server.base_url)
    yield client
    client.close()


def chat(
    client: openai.OpenAI, content: str, *, model: str = "auto", route: str | None = None, max_tokens: int = 8
) -> tuple[str, dict[str, str]]:
    """(answer text, response headers) of a non-streamed chat completion."""
    headers = {"x-pensieve-route": route} if route else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        max_tokens=max_tokens,
        temperature=0,
        extra_headers=headers,
    )
    completion = raw.parse()
    return completion.choices[0].message.content or "", dict(raw.headers)


def streamed_chat(
    server: ServerHandle, content: str, model: str, *, route: str | None = None
) -> tuple[str, dict[str, str]]:
    """(answer text, response headers) of a streamed chat completion, read as raw SSE."""
    body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": True, "max_tokens": 8}
    headers = {"x-pensieve-route": route} if route else {}
    url = f"{server.base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("error" not in chunk for chunk in chunks), chunks[-1]
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    return text, dict(response.headers)


def route_of(headers: dict[str, str]) -> tuple[str, str]:
    """(x-pensieve-route, x-pensieve-reason)."""
    return headers["x-pensieve-route"], headers["x-pensieve-reason"]


def cloud_bodies(cloud: FakeCloud) -> list[str]:
    """Every request body that reached the fake cloud, as JSON text."""
    return [json.dumps(entry["body"]) for entry in cloud.requests]


def stats(server: ServerHandle) -> dict[str, Any]:
    """GET /api/burst/stats."""
    response = httpx.get(f"{server.base_url}/api/burst/stats", timeout=10)
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


# --- routing ---------------------------------------------------------------------------------------


def test_trivial_auto_request_stays_local(sdk: openai.OpenAI, cloud: FakeCloud, burst_server: ServerHandle) -> None:
    text, headers = chat(sdk, TRIVIAL)
    assert route_of(headers) == ("local", "default")
    assert headers["x-pensieve-model"] == burst_server.model_id
    assert text.strip()
    assert cloud.requests == []


def test_models_list_shows_auto_and_cloud_models(sdk: openai.OpenAI) -> None:
    ids = [model.id for model in sdk.models.list()]
    assert "auto" in ids and CLOUD_MODEL in ids
    assert sdk.models.retrieve(CLOUD_MODEL).owned_by == "fake"


@pytest.mark.parametrize(("model", "route"), [(CLOUD_MODEL, None), ("big-model", None), ("auto", "cloud")])
def test_explicit_cloud_by_model_or_header(sdk: openai.OpenAI, cloud: FakeCloud, model: str, route: str | None) -> None:
    text, headers = chat(sdk, TRIVIAL, model=model, route=route)
    assert route_of(headers) == ("cloud", "explicit")
    assert headers["x-pensieve-model"] == CLOUD_MODEL
    assert TRIVIAL in text  # the fake cloud echoes the last user message
    assert len(cloud.requests) == 1
    sent = cloud.requests[0]
    assert sent["body"]["model"] == "big-model"
    assert sent["headers"]["authorization"] == f"Bearer {CLOUD_KEY}"


def test_cloud_answers_carry_the_providers_logprobs(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    completion = sdk.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": TRIVIAL}],
        max_tokens=8,
        logprobs=True,
        top_logprobs=2,
        extra_headers={"x-pensieve-route": "cloud"},
    )
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert "".join(item.token for item in choice.logprobs.content) == choice.message.content
    assert all(len(item.top_logprobs) == 2 for item in choice.logprobs.content)
    assert cloud.requests[0]["body"]["top_logprobs"] == 2


def test_header_local_wins_over_cloud_model(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    _, headers = chat(sdk, TRIVIAL, model=CLOUD_MODEL, route="local")
    assert route_of(headers) == ("local", "explicit")
    assert cloud.requests == []


def test_streamed_cloud_response_carries_headers_and_text(burst_server: ServerHandle, cloud: FakeCloud) -> None:
    text, headers = streamed_chat(burst_server, TRIVIAL, "auto", route="cloud")
    assert route_of(headers) == ("cloud", "explicit")
    assert TRIVIAL in text


def test_prompt_over_local_context_bursts_instead_of_400(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    long_text = "The committee met again to review the budget. " * 400  # ~4,000 tokens > 2,048
    _, headers = chat(sdk, long_text)
    assert route_of(headers) == ("cloud", "context")
    assert len(cloud.requests) == 1


def test_complex_prompt_bursts_and_explains_its_score(sdk: openai.OpenAI, burst_server: ServerHandle) -> None:
    _, headers = chat(sdk, COMPLEX)
    assert route_of(headers) == ("cloud", "complexity")
    explained = httpx.post(
        f"{burst_server.base_url}/api/route/explain",
        json={"messages": [{"role": "user", "content": COMPLEX}]},
        timeout=30,
    ).json()
    complexity = next(c for c in explained["criteria"] if c["criterion"] == "complexity")
    assert complexity["vote"] == "cloud" and complexity["value"] >= 0.6


def test_pinned_broken_local_model_falls_over_to_cloud(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    text, headers = chat(sdk, TRIVIAL, model="truncated")
    assert route_of(headers) == ("cloud", "local_failure")
    assert TRIVIAL in text


@pytest.mark.parametrize("stream", [False, True])
def test_worker_killed_before_the_first_token_falls_over_to_cloud(
    sdk: openai.OpenAI, cloud: FakeCloud, burst_server: ServerHandle, stream: bool
) -> None:
    model_id = burst_server.model_id
    chat(sdk, TRIVIAL, model=model_id)  # the model is loaded and its worker running
    with httpx.Client(base_url=burst_server.base_url, timeout=30) as http:
        pid = int(engine_stats(http, model_id)["extra"]["worker_pid"])
        # ~1,500 prompt tokens: their prefill takes seconds, so the worker dies before any token exists.
        long_prompt = "The committee reviewed the annual report and agreed on a schedule. " * 110
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            if stream:
                text, headers = streamed_chat(burst_server, long_prompt, model_id)
            else:
                text, headers = chat(sdk, long_prompt, model=model_id)
        finally:
            killer.join()
        assert route_of(headers) == ("cloud", "local_failure")
        assert "annual report" in text  # the fake cloud echoes the prompt
        assert len(cloud.requests) == 1
        # The next local request restarts the worker.
        text, headers = chat(sdk, TRIVIAL, model=model_id)
        assert route_of(headers)[0] == "local" and text.strip()
        assert int(engine_stats(http, model_id)["extra"]["worker_pid"]) != pid


def test_load_criterion_bursts_while_the_local_model_is_busy(server_factory: ServerFactory, cloud: FakeCloud) -> None:
    # One sequence: the busy request occupies the model, so a second one would have to wait.
    env = cloud_env(cloud, PENSIEVE_BURST_MAX_LOCAL_WAIT_MS="1", PENSIEVE_PARALLEL="1")
    with server_factory("burst-load", env) as server:
        client = make_client(server.base_url)
        # End-of-turn tokens banned: the busy request surely runs for its 200 tokens (a few seconds).
        busy = threading.Thread(
            target=client.chat.completions.create,
            kwargs={
                "model": server.model_id,
                "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": 200,
                "logit_bias": END_TOKEN_BIAS,
            },
        )
        busy.start()
        try:
            deadline = time.monotonic() + 20
            while not any(load["busy"] for load in stats(server)["local"]) and time.monotonic() < deadline:
                time.sleep(0.05)  # wait until the engine has really started on the busy request
            _, headers = chat(client, TRIVIAL)
        finally:
            busy.join()
        assert route_of(headers) == ("cloud", "load")
        explained = httpx.post(f"{server.base_url}/api/route/explain", json={"prompt": TRIVIAL}, timeout=30).json()
        load = next(c for c in explained["criteria"] if c["criterion"] == "load")
        assert "estimated local wait" in load["detail"]
        client.close()


# --- fallback and the circuit breaker -------------------------------------------------------------------


def test_cloud_failure_falls_back_to_local(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    cloud.set_fault(status=500, times=1)
    text, headers = chat(sdk, TRIVIAL, route="cloud")
    assert route_of(headers) == ("local", "cloud_failure")
    assert text.strip() and TRIVIAL not in text
    assert len(cloud.requests) == 1


def test_cloud_hang_times_out_and_falls_back(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    cloud.set_fault(hang=True, times=1)
    started = time.monotonic()
    _, headers = chat(sdk, TRIVIAL, route="cloud")
    assert route_of(headers) == ("local", "cloud_failure")
    assert time.monotonic() - started < 8


def test_circuit_opens_then_probes_and_closes(sdk: openai.OpenAI, cloud: FakeCloud, burst_server: ServerHandle) -> None:
    cloud.set_fault(status=503, times=2)
    for _ in range(2):
        assert route_of(chat(sdk, TRIVIAL, route="cloud", max_tokens=1)[1]) == ("local", "cloud_failure")
    # Open: no request reaches the cloud, no retry storm. (One-token answers: the three must fit in the
    # 2 s cool-down even on a loaded machine.)
    for _ in range(3):
        assert route_of(chat(sdk, TRIVIAL, route="cloud", max_tokens=1)[1]) == ("local", "circuit_open")
    assert len(cloud.requests) == 2
    circuits = [p["circuit"]["state"] for p in stats(burst_server)["providers"]]
    assert circuits == ["open"]
    time.sleep(2.2)  # the cool-down: one probe goes through and closes the circuit
    assert route_of(chat(sdk, TRIVIAL, route="cloud")[1]) == ("cloud", "explicit")
    assert [p["circuit"]["state"] for p in stats(burst_server)["providers"]] == ["closed"]


def test_rate_limit_honours_retry_after(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    cloud.set_fault(rate_limit_retry_after=5, times=1)
    opened = time.monotonic()  # the 429 opens the circuit for its Retry-After, whatever the 2 s cool-down
    assert route_of(chat(sdk, TRIVIAL, route="cloud", max_tokens=1)[1]) == ("local", "cloud_failure")
    time.sleep(max(0.0, opened + 2.2 - time.monotonic()))  # past the cool-down, still inside Retry-After
    assert route_of(chat(sdk, TRIVIAL, route="cloud", max_tokens=1)[1]) == ("local", "circuit_open")
    assert len(cloud.requests) == 1
    time.sleep(max(0.0, opened + 5.6 - time.monotonic()))
    assert route_of(chat(sdk, TRIVIAL, route="cloud")[1]) == ("cloud", "explicit")


def test_stream_dropped_mid_way_ends_with_an_error_event(burst_server: ServerHandle, cloud: FakeCloud) -> None:
    cloud.set_fault(drop_after_chunks=2, times=1)
    body = {"model": CLOUD_MODEL, "messages": [{"role": "user", "content": "one two three four five six"}]}
    with httpx.stream(
        "POST", f"{burst_server.base_url}/v1/chat/completions", json={**body, "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    error = json.loads(lines[-2].removeprefix("data: "))
    assert error["error"]["code"] == "cloud_unavailable" and "mid-stream" in error["error"]["message"]
    assert len(lines) > 3  # text had been streamed before the drop


# --- privacy -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [f"Write to {EMAIL} about it.", f"My card is {CARD}, is it valid?"])
def test_private_data_in_block_mode_never_reaches_the_cloud(sdk: openai.OpenAI, cloud: FakeCloud, content: str) -> None:
    for model, route, reason in (
        (CLOUD_MODEL, None, "privacy"),
        ("auto", "cloud", "privacy"),
        ("auto", None, "default"),
    ):
        _, headers = chat(sdk, content, model=model, route=route)
        assert route_of(headers) == ("local", reason)
    complex_private = COMPLEX + f" Send the result to {EMAIL}."
    assert route_of(chat(sdk, complex_private)[1]) == ("local", "privacy")
    assert cloud.requests == []


def test_private_prompt_only_the_cloud_could_serve_is_refused(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    # Over 50,000 characters: scanned in a thread rather than on the event loop, with the same verdict.
    long_private = f"Contact {EMAIL}. " + "The committee met again to review the budget. " * 1200
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(sdk, long_private)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "private_data_blocked"
    assert EMAIL not in str(error)  # the refusal names the kind of data, never the data
    assert cloud.requests == []


def test_private_data_is_not_sent_by_a_local_failure_fallback(sdk: openai.OpenAI, cloud: FakeCloud) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(sdk, f"Mail {EMAIL}", model="truncated")
    message = str(caught.value)
    assert "cannot be loaded" in message and "email" in message and EMAIL not in message
    assert cloud.requests == []


def test_redact_mode_masks_every_detected_item(server_factory: ServerFactory, cloud: FakeCloud) -> None:
    env = cloud_env(cloud, PENSIEVE_PRIVACY_MODE="redact", PENSIEVE_PRIVACY_KEYWORDS="bluebird")
    with server_factory("burst-redact", env) as server:
        client = make_client(server.base_url)
        content = f"Project Bluebird: email {EMAIL}, card {CARD}, key sk-proj-abcdefghijklmnopqrstuvwxyz123456."
        text, headers = chat(client, content, route="cloud", max_tokens=64)
        client.close()
    assert route_of(headers) == ("cloud", "explicit")
    sent = " ".join(cloud_bodies(cloud))
    for secret in (EMAIL, CARD, "sk-proj-abcdefghijklmnopqrstuvwxyz123456", "Bluebird"):
        assert secret not in sent
    assert "[REDACTED:EMAIL]" in sent and "[REDACTED:EMAIL]" in text


# --- budget, ledger, stats, cascade ------------------------------------------------------------------------


def test_budget_cap_keeps_everything_local_and_survives_restart(
    server_factory: ServerFactory, cloud: FakeCloud, tmp_path: Path
) -> None:
    env = cloud_env(cloud, PENSIEVE_BUDGET_DAILY_USD="0.01", PENSIEVE_DATA_DIR=str(tmp_path / "data"))
    with server_factory("burst-budget", env) as server:
        client = make_client(server.base_url)
        assert route_of(chat(client, TRIVIAL, route="cloud")[1]) == ("cloud", "explicit")  # > 0.01 USD
        assert route_of(chat(client, TRIVIAL, route="cloud")[1]) == ("local", "budget")
        assert route_of(chat(client, COMPLEX)[1]) == ("local", "budget")
        spend = stats(server)["spend"]
        client.close()
    assert spend["today_usd"] >= 0.01 and spend["daily_cap_usd"] == 0.01
    assert len(cloud.requests) == 1
    with server_factory("burst-budget-again", env) as server:
        assert stats(server)["spend"]["today_usd"] == pytest.approx(spend["today_usd"])
        client = make_client(server.base_url)
        assert route_of(chat(client, TRIVIAL, route="cloud")[1]) == ("local", "budget")
        client.close()
    ledger = (tmp_path / "data" / "spend.sqlite3").read_bytes()
    assert TRIVIAL.encode() not in ledger


def test_stats_count_routes_price_savings_and_hide_the_key(sdk: openai.OpenAI, burst_server: ServerHandle) -> None:
    chat(sdk, TRIVIAL)
    chat(sdk, TRIVIAL, route="cloud")
    data = stats(burst_server)
    assert data["requests"]["by_route"]["local"] >= 1 and data["requests"]["by_route"]["cloud"] >= 1
    assert data["saved"]["all_time_usd"] > 0
    assert data["spend"]["all_time_usd"] > 0
    newest = data["recent"][0]
    assert newest["route"] == "cloud" and newest["cost_usd"] > 0 and newest["prompt_tokens"] > 0
    raw = httpx.get(f"{burst_server.base_url}/api/burst/stats").text
    assert CLOUD_KEY not in raw and TRIVIAL not in raw
    metrics = httpx.get(f"{burst_server.base_url}/metrics").text
    assert 'pensieve_requests_total{reason="explicit",route="cloud"}' in metrics


def test_stats_and_circuit_reset_refuse_bad_input(burst_server: ServerHandle) -> None:
    base = burst_server.base_url
    assert len(httpx.get(f"{base}/api/burst/stats?recent=1", timeout=10).json()["recent"]) <= 1
    assert httpx.get(f"{base}/api/burst/stats?recent=0", timeout=10).json()["recent"] == []
    bad = httpx.get(f"{base}/api/burst/stats?recent=lots", timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"].endswith("recent")
    unknown = httpx.post(f"{base}/api/burst/circuits/reset?provider=nope", timeout=10, headers=ADMIN_HEADERS)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]


def test_confidence_cascade_asks_the_cloud_when_unsure(server_factory: ServerFactory, cloud: FakeCloud) -> None:
    # A threshold of 0 makes every local answer "unsure"; -100 makes every one "sure".
    env = cloud_env(cloud, PENSIEVE_BURST_CONFIDENCE="true", PENSIEVE_BURST_CONFIDENCE_THRESHOLD="0")
    with server_factory("burst-cascade", env) as server:
        client = make_client(server.base_url)
        text, headers = chat(client, TRIVIAL)
        assert route_of(headers) == ("cloud", "confidence") and TRIVIAL in text
        newest = stats(server)["recent"][0]  # the dropped local start is not an answer: one record
        assert (newest["route"], newest["reason"]) == ("cloud", "confidence") and newest["confidence"] is not None
        client.close()
    env["PENSIEVE_BURST_CONFIDENCE_THRESHOLD"] = "-100"
    with server_factory("burst-cascade-sure", env) as server:
        client = make_client(server.base_url)
        assert route_of(chat(client, TRIVIAL)[1]) == ("local", "default")
        client.close()


def test_route_explain_cli_prints_the_decision(burst_server: ServerHandle) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pensieve", "route", "explain", f"Write to {EMAIL}", "--url", burst_server.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "route: local" in result.stdout and "privacy" in result.stdout
    assert EMAIL not in result.stdout
