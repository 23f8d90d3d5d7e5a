"""SIGTERM drains: /ready and new requests get 503 at once, running streams finish (or, past
PENSIEVE_SHUTDOWN_TIMEOUT, end with an error event and [DONE]), then the process exits 0 and its model
workers are gone. Real processes, real streams."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from support.checks import END_TOKEN_BIAS, assert_openai_error
from support.models import ModelsFolder
from support.server import ServerHandle, launch_server

pytestmark = pytest.mark.integration


class StreamReader(threading.Thread):
    """Reads one streamed completion to its end in the background; `first` is set at its first chunk."""

    def __init__(self, server: ServerHandle, body: dict[str, object]) -> None:
        super().__init__(daemon=True)
        self.server, self.body = server, body
        self.first = threading.Event()
        self.events: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.server.base_url, timeout=120) as http,
                http.stream("POST", "/v1/completions", json=self.body) as reply,
            ):
                for line in reply.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(line[len("data: ") :])
                        self.first.set()
        except BaseException as exc:  # reported by the test
            self.failure = exc
            self.first.set()


def _worker_pids(server: ServerHandle) -> list[int]:
    models = httpx.get(f"{server.base_url}/api/ps", timeout=30).json()["models"]
    return [int(model["pid"]) for model in models]


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return True
    return "State:\tZ" in status.read_text()  # a zombie has exited; only its exit status is left


def _terminate_and_wait(server: ServerHandle, timeout: float = 60) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=timeout)


def _stream_body(model_id: str, max_tokens: int, seed: int) -> dict[str, object]:
    return {
        "model": model_id,
        "prompt": "Once upon a time,",
        "max_tokens": max_tokens,
        "logit_bias": END_TOKEN_BIAS,
        "temperature": 0.8,
        "seed": seed,
        "stream": True,
    }


def test_sigterm_lets_running_streams_finish_and_refuses_new_work(models_folder: ModelsFolder, tmp_path: Path) -> None:
    server = launch_server("drain", models_folder, tmp_path, {"PENSIEVE_SHUTDOWN_TIMEOUT": "60"})
    try:
        workers = _worker_pids(server)
        readers = [StreamReader(server, _stream_body(server.model_id, 60, seed)) for seed in (1, 2)]
        for reader in readers:
            reader.start()
        for reader in readers:
            assert reader.first.wait(60) and reader.failure is None, reader.failure
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the signal is handled on the server's event loop
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            ready = http.get("/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "shutting_down"
            late = http.post("/v1/completions", json={"model": server.model_id, "prompt": "Hi", "max_tokens": 2})
            assert_openai_error(late, 503, code="shutting_down")
            assert "retry-after" in late.headers
        for reader in readers:
            reader.join(120)
            assert reader.failure is None, reader.failure
            assert reader.events[-1] == "[DONE]"
            finish = json.loads(reader.events[-2])["choices"][0]["finish_reason"]
            assert finish == "length", f"the stream was cut instead of finishing: {reader.events[-3:]}"
        assert server.process.wait(timeout=60) == 0, server.log_tail()
        assert all(_gone(pid) for pid in workers), f"model workers left behind: {workers}"
    finally:
        server.stop()


def test_past_the_shutdown_timeout_a_stream_ends_with_an_error_event_and_done(
    models_folder: ModelsFolder, tmp_path: Path
) -> None:
    server = launch_server("drain-cut", models_folder, tmp_path, {"PENSIEVE_SHUTDOWN_TIMEOUT": "2"})
    try:
        workers = _worker_pids(server)
        reader = StreamReader(server, _stream_body(server.model_id, 1500, 3))
        reader.start()
        assert reader.first.wait(60) and reader.failure is None, reader.failure
        started = time.monotonic()
        assert _terminate_and_wait(server) == 0, server.log_tail()
        stopped_after = time.monotonic() - started
        reader.join(30)
        assert reader.failure is None, reader.failure
        assert reader.events[-1] == "[DONE]"
        assert json.loads(reader.events[-2])["error"]["code"] == "shutting_down"
        assert stopped_after < 30, f"the server took {stopped_after:.0f} s to stop with a 2 s shutdown timeout"
        assert all(_gone(pid) for pid in workers), f"model workers left behind: {workers}"
        assert "shutdown timeout: stopping 1 request(s)" in server.log_tail(400)
    finally:
        server.stop()
