"""Pulls through a live server's API, and per-model TOML settings, against the fake hub and the real model.

One `pensieve serve` (HF_ENDPOINT = the fake hub) pulls the real default model from the fake hub as a new
file (`POST /api/models/pull`, progress polled on `/api/models/pulls/{id}`), serves it under an alias its
`<id>.toml` gives (with its own context length), deletes it (`DELETE /api/models/{id}`), refuses bad pulls with
OpenAI-style errors, and lists a model whose TOML is invalid as unusable with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.fake_hub import FakeHub, tiny_gguf
from support.models import make_models_folder
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration

REPO = "google/gemma-3-270m-it-GGUF"
PULLED = "gemma-3-270m-it-Q4_K_M"
ADMIN = {"x-requested-with": "pensieve-test"}


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    fake = FakeHub().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def hub_server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    models = make_models_folder(tmp_path_factory.mktemp("hub-models"), bad=())
    hub.add(REPO, f"{PULLED}.gguf", models.model_file.resolve())
    hub.add("org/liar-GGUF", "liar.gguf", tiny_gguf(1 << 20))
    hub.declared_sha256["liar.gguf"] = "cd" * 32
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "PENSIEVE_MAX_LOADED_MODELS": "2"}
    with running_server("hub", models, tmp_path_factory.mktemp("server-hub"), env) as handle:
        yield handle


def _wait(http: httpx.Client, job_id: str, timeout: float = 120) -> tuple[dict[str, Any], list[int]]:
    """Poll a pull job until it ends; the job and the byte counts seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/api/models/pulls/{job_id}").json()
        seen.append(job["done_bytes"])
        if job["status"] not in ("downloading", "verifying"):
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"pull {job_id} still running after {timeout} s")


def test_pull_serve_under_an_alias_and_delete(hub_server: ServerHandle, hub: FakeHub) -> None:
    with httpx.Client(base_url=hub_server.base_url, timeout=60, headers=ADMIN) as http:
        started = time.perf_counter()
        answer = http.post("/api/models/pull", json={"repo": REPO, "quant": "q4_k_m"})
        assert answer.status_code == 202, answer.text
        job, seen = _wait(http, answer.json()["id"])
        elapsed = time.perf_counter() - started
        assert job["status"] == "done", job
        assert job["done_bytes"] == job["total_bytes"] == hub.size(REPO, f"{PULLED}.gguf")
        assert seen == sorted(seen) and len(set(seen)) > 2  # progress moved while polled
        speed = job["bytes_per_second"] / 1e6
        print(f"pulled {job['total_bytes'] / 1e6:.0f} MB via the API in {elapsed:.2f} s ({speed:.0f} MB/s download)")
        assert http.get("/api/models/pulls").json()["data"][-1]["id"] == job["id"]
        models = {m["id"]: m for m in http.get("/api/models").json()["data"]}
        assert models[PULLED]["usable"], models[PULLED]
        models_dir = Path(job["path"]).parent

        (models_dir / f"{PULLED}.toml").write_text('n_ctx = 1024\naliases = ["gemma-chat"]\n', encoding="utf-8")
        cards = {card["id"]: card for card in http.get("/v1/models").json()["data"]}
        assert cards["gemma-chat"]["details"]["alias_of"] == PULLED
        assert http.get("/v1/models/gemma-chat").json()["details"]["alias_of"] == PULLED
        reply = http.post(
            "/v1/chat/completions",
            json={"model": "gemma-chat", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"]
        pulled = {m["id"]: m for m in http.get("/api/models").json()["data"]}[PULLED]
        assert pulled["loaded"] and pulled["loaded_context_length"] == 1024, pulled
        assert pulled["settings"] == {"n_ctx": 1024} and pulled["aliases"] == ["gemma-chat"]

        deleted = http.delete(f"/api/models/{PULLED}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["unloaded"] is True
        assert not (models_dir / f"{PULLED}.gguf").exists() and (models_dir / f"{PULLED}.toml").exists()
        gone = http.post(
            "/v1/chat/completions", json={"model": "gemma-chat", "messages": [{"role": "user", "content": "x"}]}
        )
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"


def test_bad_pulls_and_deletes_are_openai_errors(hub_server: ServerHandle) -> None:
    with httpx.Client(base_url=hub_server.base_url, timeout=60, headers=ADMIN) as http:
        missing = http.post("/api/models/pull", json={"repo": REPO, "quant": "Q5_K_M"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "file_not_found"
        assert f"{PULLED}.gguf" in missing.json()["error"]["message"]
        malformed = http.post("/api/models/pull", json={"repo": "just-a-name"})
        assert malformed.status_code == 400 and malformed.json()["error"]["param"] == "repo"
        job, _ = _wait(http, http.post("/api/models/pull", json={"repo": "org/liar-GGUF"}).json()["id"])
        assert job["status"] == "failed" and job["error"]["code"] == "checksum_mismatch"
        unknown = http.delete("/api/models/nope")
        assert unknown.status_code == 404 and hub_server.model_id in unknown.json()["error"]["message"]
        assert http.get("/api/models/pulls/pull-nope").json()["error"]["code"] == "pull_not_found"
    # Admin routes: a cross-site browser request (no JSON, no custom header) does not get through.
    bare = httpx.delete(f"{hub_server.base_url}/api/models/nope")
    assert bare.status_code == 400 and "x-requested-with" in bare.json()["error"]["message"]


def test_a_bad_settings_file_lists_its_model_unusable(hub_server: ServerHandle) -> None:
    with httpx.Client(base_url=hub_server.base_url, timeout=60) as http:
        models_dir = Path(http.get("/api/models").json()["models_dir"])
        if not models_dir.is_absolute():
            models_dir = hub_server.log_path.parent / models_dir
        (models_dir / "odd.gguf").write_bytes(tiny_gguf(4096, "odd"))
        (models_dir / "odd.toml").write_text("n_ctx = 'big'\n", encoding="utf-8")
        odd = {m["id"]: m for m in http.get("/api/models").json()["data"]}["odd"]
        assert not odd["usable"] and "odd.toml: n_ctx:" in odd["error"]
        assert http.get("/v1/models").json()["data"][-1]["id"] == "odd"  # unusable files are listed last
        refused = http.post(
            "/v1/chat/completions", json={"model": "odd", "messages": [{"role": "user", "content": "x"}]}
        )
        assert refused.status_code >= 400 and "odd.toml" in refused.json()["error"]["message"]
