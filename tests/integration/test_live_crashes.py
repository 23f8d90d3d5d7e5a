"""A worker that dies by a signal says what it is: SIGILL (a llama.cpp build this CPU will not run) and the
like are named, with their cause, to the client, in /ready, in /api/ps and in the server log.

Crashes are real: a real SIGILL sent to a running worker during a streamed request, a real child process
that dies by SIGILL before its first message, and a real server whose workers die by SIGILL as they load
llama.cpp (a `sitecustomize` on the server's PYTHONPATH raises it in every worker process). A worker killed
by SIGKILL while loading (what the out-of-memory killer does) is transient, unlike SIGILL: the next request
after a short back-off loads the model again; a worker that hangs while loading is killed and is transient too.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from pensieve.engine.worker_client import WorkerCrashError, WorkerLoadTimeoutError, _first_message
from support.checks import END_TOKEN_BIAS, assert_openai_error, make_client
from support.models import ModelsFolder
from support.server import ServerFactory, ServerHandle, running_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(signal, "SIGILL") or os.name != "posix", reason="POSIX signals"),
]

SIGILL_WORDS = "killed by SIGILL (illegal instruction: this llama.cpp build uses CPU instructions"
STORY = [{"role": "user", "content": "Tell me a story."}]
# A text completion that cannot end before 300 tokens (its end tokens are banned): seconds of generation.
LONG_RUN: dict[str, Any] = {"prompt": "Once", "max_tokens": 300, "temperature": 0, "logit_bias": END_TOKEN_BIAS}

# Raises SIGILL in a worker process (a multiprocessing spawn child) when it loads llama.cpp's library,
# the moment a llama.cpp built for the wrong CPU would die; the server process itself is left alone.
SIGILL_AT_LLAMA_LOAD = """
import os, signal, sys

def _die_loading_llama(event, args):
    if event == "ctypes.dlopen" and args and "llama" in str(args[0]):
        os.kill(os.getpid(), signal.SIGILL)

if "--multiprocessing-fork" in sys.argv:
    sys.addaudithook(_die_loading_llama)
"""


# SIGKILLs the first worker process (only) as it loads llama.cpp's library, as the out-of-memory killer would;
# PENSIEVE_TEST_KILLED_ONCE names the file that records that it happened.
SIGKILL_ONCE_AT_LLAMA_LOAD = """
import os, signal, sys

def _killed_once_loading_llama(event, args):
    if event == "ctypes.dlopen" and args and "llama" in str(args[0]):
        try:
            fd = os.open(os.environ["PENSIEVE_TEST_KILLED_ONCE"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

if "--multiprocessing-fork" in sys.argv:
    sys.addaudithook(_killed_once_loading_llama)
"""


def _with_hook(tmp_path: Path, hook_source: str) -> dict[str, str]:
    """Server environment whose worker processes run `hook_source` as their sitecustomize."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(hook_source, encoding="utf-8")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}


def _ps(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/api/ps")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _failure_of(http: httpx.Client, model_id: str) -> dict[str, Any]:
    failures = [entry for entry in _ps(http)["failures"] if entry["id"] == model_id]
    assert len(failures) == 1, _ps(http)
    return failures[0]


def _log_lines(server: ServerHandle, *needles: str) -> list[str]:
    text = server.log_path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if all(needle in line for needle in needles)]


def test_a_child_that_dies_by_sigill_before_its_first_message_is_a_load_error_naming_it() -> None:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=signal.raise_signal, args=(signal.SIGILL,), daemon=True)
    process.start()
    child.close()
    try:
        with pytest.raises(WorkerCrashError) as caught:
            _first_message(parent, process)
    finally:
        parent.close()
        process.join(5)
    assert caught.value.exit_code == -signal.SIGILL
    message = str(caught.value)
    assert message.startswith(f"the worker process crashed while loading: {SIGILL_WORDS}"), message
    assert "run `pensieve doctor`" in message


def test_sigill_during_a_stream_reaches_the_client_ps_ready_and_log_and_the_next_request_restarts_it(
    server_factory: ServerFactory,
) -> None:
    with server_factory("sigill", {}) as server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        model_id = server.model_id
        sdk = make_client(server.base_url)
        [running] = _ps(http)["models"]
        pid = running["pid"]
        chunks = 0
        with pytest.raises(openai.APIError) as caught:
            for _ in sdk.completions.create(model=model_id, stream=True, **LONG_RUN):
                chunks += 1
                if chunks == 3:
                    os.kill(pid, signal.SIGILL)
        assert SIGILL_WORDS in caught.value.message and "pensieve doctor" in caught.value.message
        assert caught.value.code == "worker_crashed"

        ps = _ps(http)
        assert all(model["pid"] != pid for model in ps["models"]), "a dead worker is not listed as in memory"
        crash = _failure_of(http, model_id)
        assert (crash["stage"], crash["signal"], crash["exit_code"], crash["recovered"]) == (
            "serving",
            "SIGILL",
            -signal.SIGILL,
            False,
        )
        assert SIGILL_WORDS in crash["message"] and crash["at"] <= time.time()
        ready = http.get("/ready").json()
        assert SIGILL_WORDS in ready["local_error"] and ready["last_crash"]["signal"] == "SIGILL"
        assert _log_lines(server, "ERROR", f"'{model_id}'", "killed by SIGILL (illegal instruction"), server.log_tail()

        # The next request starts a new worker; the crash stays on record, marked recovered.
        answer = sdk.chat.completions.create(model=model_id, messages=STORY, max_tokens=4)
        assert answer.choices[0].message.content
        [restarted] = _ps(http)["models"]
        assert restarted["pid"] != pid
        crash = _failure_of(http, model_id)
        assert crash["recovered"] and crash["recovered_at"] >= crash["at"] and crash["signal"] == "SIGILL"
        ready = http.get("/ready").json()
        assert ready["local_error"] is None and ready["last_crash"] is None
        sdk.close()


def test_sigill_during_a_non_streamed_request_is_a_500_naming_the_signal(server_factory: ServerFactory) -> None:
    with server_factory("sigill-plain", {}) as server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        sdk = make_client(server.base_url)
        pid = _ps(http)["models"][0]["pid"]
        # 300 tokens take several seconds even on a fast machine: the worker dies in the middle of them.
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGILL))
        killer.start()
        try:
            with pytest.raises(openai.InternalServerError) as caught:
                sdk.completions.create(model=server.model_id, **LONG_RUN)
        finally:
            killer.join()
        assert caught.value.status_code == 500 and caught.value.code == "worker_crashed"
        assert SIGILL_WORDS in caught.value.message
        assert sdk.chat.completions.create(model=server.model_id, messages=STORY, max_tokens=4).choices
        sdk.close()


def test_a_worker_that_dies_by_sigill_while_loading_makes_ready_503_and_requests_fail_naming_it(
    models_folder: ModelsFolder, tmp_path: Path
) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGILL_AT_LLAMA_LOAD, encoding="utf-8")
    python_path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path}
    with (
        running_server("sigill-load", models_folder, tmp_path / "server", env, ready_status=503) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        model_id = server.model_id
        ready = http.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not_ready" and body["error"]["code"] == "model_not_ready"
        message = body["error"]["message"]
        assert f"Model '{model_id}' cannot be loaded: the worker process crashed while loading: {SIGILL_WORDS}" in (
            message
        )
        assert "run `pensieve doctor`" in message and body["local_error"] == message
        assert (body["last_crash"]["stage"], body["last_crash"]["signal"]) == ("loading", "SIGILL")

        sdk = make_client(server.base_url, max_retries=2)
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as caught:
            sdk.chat.completions.create(model=model_id, messages=STORY, max_tokens=4)
        assert time.monotonic() - started < 2.0, "the failure is remembered: no reload, and no SDK retries"
        assert caught.value.code == "model_load_failed" and SIGILL_WORDS in caught.value.message
        sdk.close()

        crash = _failure_of(http, model_id)
        assert (crash["stage"], crash["signal"], crash["exit_code"]) == ("loading", "SIGILL", -signal.SIGILL)
        assert _ps(http)["models"] == []
        assert _log_lines(server, "ERROR", f"'{model_id}' cannot be loaded", "killed by SIGILL"), server.log_tail()


def test_a_child_that_never_answers_is_killed_and_its_load_is_a_transient_timeout() -> None:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    # It holds its end of the pipe open and says nothing, as a worker stuck loading a model would.
    process = context.Process(target=multiprocessing.connection.wait, args=([child], 600), daemon=True)
    process.start()
    child.close()
    try:
        with pytest.raises(WorkerLoadTimeoutError, match="did not load within 1 s"):
            _first_message(parent, process, timeout=1.0)
        process.join(10)
        assert process.exitcode == -signal.SIGKILL
    finally:
        parent.close()
        if process.is_alive():
            process.kill()


def test_a_worker_killed_by_sigkill_while_loading_is_loaded_again_by_a_later_request(
    models_folder: ModelsFolder, tmp_path: Path
) -> None:
    env = {**_with_hook(tmp_path, SIGKILL_ONCE_AT_LLAMA_LOAD), "PENSIEVE_TEST_KILLED_ONCE": str(tmp_path / "killed")}
    with (
        running_server("sigkill-load", models_folder, tmp_path / "server", env, ready_status=503) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as http,
    ):
        model_id = server.model_id
        assert (tmp_path / "killed").exists(), "the preload's worker was killed"
        ready = http.get("/ready").json()
        assert "killed by SIGKILL" in ready["local_error"] and ready["last_crash"]["signal"] == "SIGKILL"

        body = {"model": model_id, "messages": STORY, "max_tokens": 4}
        response = http.post("/v1/chat/completions", json=body)
        if response.status_code == 503:  # within the short back-off: told when to come back, not refused for good
            error = assert_openai_error(response, 503, code="model_load_interrupted", param="model")
            assert "killed by SIGKILL" in error["message"] and "transient" in error["message"]
            assert 1 <= int(response.headers["retry-after"]) <= 3
        else:
            assert response.status_code == 200, response.text

        # The SDK honours Retry-After: after the back-off the model loads in a new worker and answers.
        sdk = make_client(server.base_url, max_retries=3)
        answer = sdk.chat.completions.create(model=model_id, messages=STORY, max_tokens=4)
        assert answer.choices[0].message.content
        sdk.close()
        [loaded] = _ps(http)["models"]
        assert loaded["id"] == model_id
        crash = _failure_of(http, model_id)
        assert (crash["stage"], crash["signal"], crash["exit_code"]) == ("loading", "SIGKILL", -signal.SIGKILL)
        assert crash["recovered"] is True
        ready_again = http.get("/ready")
        assert ready_again.status_code == 200 and ready_again.json()["local_error"] is None
        assert server.process.poll() is None
