"""A split GGUF end to end: the real model (Gemma 3 270M) split in 3 parts with the `gguf` package (the writer
llama.cpp's converters use; no `llama-gguf-split` binary ships here), served by the fake hub, pulled through
`POST /api/models/pull`, listed once, answering exactly as the single file does, and deleted part by part.

llama.cpp loads a split when given its first part, finding the others by name beside it: this is what the
registry relies on, and what the identical greedy answers show.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.fake_hub import FakeHub
from support.models import make_models_folder
from support.server import ServerHandle, running_server

pytestmark = pytest.mark.integration

REPO = "org/gemma-split-GGUF"
MODEL_ID = "gemma-split-Q4_K_M"
PARTS = [f"{MODEL_ID}-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
ADMIN = {"x-requested-with": "pensieve-test"}
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 16, "cache_prompt": False}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def split_model(source: Path, folder: Path, parts: int) -> list[Path]:
    """`source` rewritten as `parts` split files in `folder` (tensors shared out evenly), as gguf-split would."""
    gguf = pytest.importorskip("gguf")
    from gguf.scripts.gguf_new_metadata import copy_with_new_metadata

    reader = gguf.GGUFReader(source)
    architecture = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    per_part = -(-len(reader.tensors) // parts)
    writer = gguf.GGUFWriter(folder / f"{MODEL_ID}.gguf", arch=architecture, split_max_tensors=per_part)
    copy_with_new_metadata(reader, writer, {}, [])
    return sorted(folder.glob(f"{MODEL_ID}-*-of-*.gguf"))


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    fake = FakeHub().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def server(hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    models = make_models_folder(tmp_path_factory.mktemp("split-models"), bad=())
    made = split_model(models.model_file.resolve(), tmp_path_factory.mktemp("split-source"), 3)
    assert [path.name for path in made] == PARTS
    for path in made:
        hub.add(REPO, path.name, path)
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1", "PENSIEVE_MAX_LOADED_MODELS": "2"}
    with running_server("split", models, tmp_path_factory.mktemp("server-split"), env) as handle:
        yield handle


def _wait(http: httpx.Client, job_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/api/models/pulls/{job_id}").json()
        if job["status"] not in ("downloading", "verifying"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"pull {job_id} still running after {timeout} s")


def test_a_split_model_is_pulled_served_like_the_single_file_and_deleted(server: ServerHandle, hub: FakeHub) -> None:
    with httpx.Client(base_url=server.base_url, timeout=120, headers=ADMIN) as http:
        answer = http.post("/api/models/pull", json={"repo": REPO})
        assert answer.status_code == 202, answer.text
        job = _wait(http, answer.json()["id"])
        assert job["status"] == "done", job
        assert job["parts"] == PARTS and job["total_bytes"] == sum(hub.size(REPO, name) for name in PARTS)
        models_dir = Path(job["path"]).parent
        assert Path(job["path"]).name == PARTS[0] and all((models_dir / name).is_file() for name in PARTS)

        listed = {m["id"]: m for m in http.get("/api/models").json()["data"]}
        assert listed[MODEL_ID]["usable"], listed[MODEL_ID]
        assert not any(model_id.startswith(f"{MODEL_ID}-0000") for model_id in listed)  # the parts are one model
        cards = [card["id"] for card in http.get("/v1/models").json()["data"]]
        assert MODEL_ID in cards and server.model_id in cards

        replies = {}
        for model in (MODEL_ID, server.model_id):
            reply = http.post("/v1/chat/completions", json={"model": model, "messages": QUESTION, **GREEDY})
            assert reply.status_code == 200, reply.text
            replies[model] = reply.json()
        split, single = replies[MODEL_ID], replies[server.model_id]
        assert split["choices"][0]["message"]["content"] == single["choices"][0]["message"]["content"]
        assert split["usage"] == single["usage"]
        print(f"split and single file both answer {split['choices'][0]['message']['content']!r}")

        deleted = http.delete(f"/api/models/{MODEL_ID}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["unloaded"] is True and deleted.json()["files"][::2] == PARTS
        assert not any((models_dir / name).exists() for name in PARTS)
        assert MODEL_ID not in {m["id"] for m in http.get("/api/models").json()["data"]}
