"""Models in memory on a live server: LRU eviction, busy refusals, memory limit, keep-alive, /api/ps, server RSS.

There is one real model file, so the eviction tests serve it under two names (`alpha` and `beta`, two
links in a models folder of their own) from a server allowed one loaded model at a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.checks import ADMIN_HEADERS, END_TOKEN_BIAS, assert_openai_error
from support.models import ModelsFolder
from support.server import ServerFactory, ServerHandle, running_server

pytestmark = pytest.mark.integration

# Two sequences in a 2048-token window: small KV caches, quick loads.
SMALL = {"PENSIEVE_PARALLEL": "2"}


def pid_exists(pid: int) -> bool:
    """True while a process with this id exists (the server reaps its workers, so no zombies linger)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_ends(pid: int, timeout: float = 5.0) -> bool:
    """True once process `pid` has exited (a model leaves /api/ps as its worker starts shutting down)."""
    deadline = time.monotonic() + timeout
    while pid_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def ps(api: httpx.Client) -> dict[str, dict[str, Any]]:
    """GET /api/ps rows by model id."""
    response = api.get("/api/ps")
    assert response.status_code == 200, response.text
    return {row["id"]: row for row in response.json()["models"]}


def wait_until_unloaded(api: httpx.Client, model_id: str, timeout: float) -> float:
    """Seconds until `model_id` leaves /api/ps; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if model_id not in ps(api):
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{model_id} still loaded after {timeout} s: {ps(api)}")


def complete(api: httpx.Client, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0, **extra}
    return api.post("/v1/completions", json=body)


# --- two names for one model, one loaded at a time -------------------------------------------------------


@pytest.fixture(scope="module")
def lru_server(models_folder: ModelsFolder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A server with models `alpha` (preloaded) and `beta` and PENSIEVE_MAX_LOADED_MODELS=1."""
    folder = tmp_path_factory.mktemp("two-models")
    real = models_folder.model_file.resolve()
    for name in ("alpha", "beta"):
        (folder / f"{name}.gguf").symlink_to(real)
    models = ModelsFolder(path=folder, model_id="alpha", model_file=folder / "alpha.gguf")
    env = {**SMALL, "PENSIEVE_MAX_LOADED_MODELS": "1"}
    with running_server("lru", models, tmp_path_factory.mktemp("server-lru"), env) as handle:
        yield handle


@pytest.fixture
def lru(lru_server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lru_server.base_url, timeout=60, headers=ADMIN_HEADERS) as client:
        yield client


def test_loading_a_second_model_unloads_the_first_and_ps_describes_it(lru: httpx.Client) -> None:
    first = ps(lru)
    assert list(first) == ["alpha"]
    alpha_pid = first["alpha"]["pid"]
    assert pid_exists(alpha_pid)

    loaded = lru.post("/api/models/beta/load")
    assert loaded.status_code == 200, loaded.text
    rows = ps(lru)
    assert list(rows) == ["beta"]
    assert process_ends(alpha_pid), "the evicted model's worker process is still running"

    beta = rows["beta"]
    assert beta["pid"] != alpha_pid and pid_exists(beta["pid"])
    assert abs(beta["loaded_at"] - time.time()) < 60
    assert (beta["context_length"], beta["parallel"], beta["kv_cells"]) == (2048, 2, 4096)
    size = Path(lru.get("/api/models").json()["models_dir"], "beta.gguf").stat().st_size
    memory = beta["estimated_memory"]
    assert memory["weights_bytes"] == size
    assert memory["kv_cache_bytes"] == 4096 * 18 * 1 * (256 + 256) * 2  # Gemma 3 270M's attention shape
    assert beta["estimated_memory_bytes"] == sum(memory.values())
    assert beta["rss_bytes"] > 100_000_000  # the weights are mapped in and were touched by the warm-up
    assert (beta["busy"], beta["busy_sequences"], beta["queue_depth"]) == (False, 0, 0)
    assert beta["keep_alive_seconds"] == -1 and beta["expires_at"] is None  # the suite's servers keep models
    summary = lru.get("/api/ps").json()
    assert summary["max_loaded_models"] == 1 and summary["memory_limit_bytes"] == 0
    assert summary["estimated_memory_in_use_bytes"] == beta["estimated_memory_bytes"]


def test_busy_models_are_not_evicted_and_memory_limits_are_explained(lru: httpx.Client) -> None:
    if "beta" not in ps(lru):
        assert lru.post("/api/models/beta/load").status_code == 200
    beta_bytes = ps(lru)["beta"]["estimated_memory_bytes"]
    long_run = {
        "model": "beta",
        "prompt": "Once upon a time",
        "max_tokens": 400,
        "logit_bias": END_TOKEN_BIAS,
        "stream": True,
    }
    with lru.stream("POST", "/v1/completions", json=long_run) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()  # kept: a discarded iterator closes the response, which cancels the run
        next(lines)  # generating now
        assert ps(lru)["beta"]["busy"] is True and ps(lru)["beta"]["busy_sequences"] == 1

        refused = lru.post("/api/models/alpha/load")
        error = assert_openai_error(refused, 503, code="models_busy")
        assert error["message"].startswith("1 model is loaded and busy")
        assert "raise PENSIEVE_MAX_LOADED_MODELS or retry" in error["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # A request for the other model gets the same answer (there is no cloud to burst to).
        assert_openai_error(complete(lru, "alpha"), 503, code="models_busy")

        # Room for one model and a half: the busy one's memory is in the way now.
        limits = {"PENSIEVE_MAX_LOADED_MODELS": 0, "PENSIEVE_MEMORY_LIMIT": int(beta_bytes * 1.5)}
        assert lru.patch("/api/admin/settings", json=limits).status_code == 200
        error = assert_openai_error(lru.post("/api/models/alpha/load"), 503, code="insufficient_memory")
        assert "needs about" in error["message"] and "in use by busy models (beta)" in error["message"]

    # Idle again: the memory limit alone makes room by unloading beta.
    assert lru.post("/api/models/alpha/load").status_code == 200
    assert list(ps(lru)) == ["alpha"]

    assert lru.patch("/api/admin/settings", json={"PENSIEVE_MEMORY_LIMIT": "100MB"}).status_code == 200
    error = assert_openai_error(lru.post("/api/models/beta/load"), 400, code="model_too_large", param="model")
    assert "PENSIEVE_MEMORY_LIMIT (100 MB)" in error["message"] and "KV cache (4096 cells)" in error["message"]
    restore = {"PENSIEVE_MAX_LOADED_MODELS": 1, "PENSIEVE_MEMORY_LIMIT": 0}
    assert lru.patch("/api/admin/settings", json=restore).status_code == 200


def server_memory(pid: int) -> str:
    """The server's resident memory split into anonymous (heap: a leak) and file-backed pages (mapped code
    and files, which also depend on what else the machine has in its page cache), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = f"{int(value.split()[0]) / 1024:.1f}"
    return " ".join(f"{key} {value}" for key, value in fields.items())


def test_load_unload_cycles_do_not_grow_the_server_process(lru: httpx.Client, lru_server: ServerHandle) -> None:
    def rss() -> int:
        return int(lru.get("/api/system").json()["rss_bytes"])

    trace: list[str] = []

    def cycle() -> None:
        for model in ("alpha", "beta"):
            assert lru.post(f"/api/models/{model}/load").status_code == 200
            trace.append(f"{model}: RSS {rss() / 1e6:.1f} MB ({server_memory(lru_server.process.pid)})")

    cycle()  # first allocations of each code path
    before = rss()
    cycle()
    cycle()
    growth = rss() - before
    print("\n".join(trace))  # shown with pytest -rP
    # The server holds only each model's vocabulary (~50 MB for Gemma 3's 262k tokens, all returned to the
    # OS on unload); the weights live and die with the worker process. A leaked vocabulary would show as
    # ~50 MB, a leaked reference per load as steady anonymous growth in the trace.
    trace_text = "\n".join(trace)
    assert growth < 4_000_000, f"server RSS grew by {growth / 1e6:.1f} MB over 4 loads; after each load:\n{trace_text}"


def test_unloading_a_model_that_is_not_loaded_says_so_and_an_unknown_one_is_404(lru: httpx.Client) -> None:
    assert lru.post("/api/models/alpha/load").status_code == 200
    assert lru.post("/api/models/alpha/unload").json() == {"id": "alpha", "unloaded": True}
    assert lru.post("/api/models/alpha/unload").json() == {"id": "alpha", "unloaded": False}
    unknown = lru.post("/api/models/no-such-model/unload")
    error = assert_openai_error(unknown, 404, code="model_not_found", param="model")
    assert "alpha" in error["message"]  # names the installed models


# --- keep-alive ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keep_alive_server(server_factory: ServerFactory) -> Iterator[ServerHandle]:
    """A server whose models stay loaded two seconds after their last request."""
    with server_factory("keep-alive", {**SMALL, "PENSIEVE_KEEP_ALIVE": "2"}) as handle:
        yield handle


@pytest.fixture
def short(keep_alive_server: ServerHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keep_alive_server.base_url, timeout=60) as client:
        yield client


def test_an_idle_model_is_unloaded_when_its_keep_alive_runs_out(
    short: httpx.Client, keep_alive_server: ServerHandle
) -> None:
    model_id = keep_alive_server.model_id
    assert complete(short, model_id).status_code == 200
    row = ps(short)[model_id]
    assert row["keep_alive_seconds"] == 2
    assert 0 < row["expires_in_seconds"] <= 2 and row["expires_at"] > time.time()
    waited = wait_until_unloaded(short, model_id, timeout=8)
    assert waited > 1.0
    assert process_ends(row["pid"])
    assert short.get("/ready").status_code == 200  # it reloads on the next request


def test_a_request_sets_the_models_keep_alive(short: httpx.Client, keep_alive_server: ServerHandle) -> None:
    model_id = keep_alive_server.model_id
    assert complete(short, model_id, keep_alive="1h").status_code == 200
    row = ps(short)[model_id]
    assert row["keep_alive_seconds"] == 3600 and row["expires_in_seconds"] > 3500

    assert complete(short, model_id, keep_alive=0).status_code == 200
    assert wait_until_unloaded(short, model_id, timeout=3) < 2
    assert process_ends(row["pid"]), "the worker of a keep_alive=0 model is still running"

    loaded = short.post(f"/api/models/{model_id}/load", json={"keep_alive": "10m"})
    assert loaded.status_code == 200 and loaded.json()["keep_alive_seconds"] == 600
    assert ps(short)[model_id]["keep_alive_seconds"] == 600
    assert_openai_error(complete(short, model_id, keep_alive="soon"), 400, param="keep_alive")
