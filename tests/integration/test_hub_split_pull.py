"""`pensieve models pull` of a model split in parts (`-00001-of-00003.gguf`), against the local fake hub.

Each part is downloaded, resumed and sha256-checked like a single file; nothing is installed until every part
is verified and the first part's header (with `split.count`) is sound; then the registry lists ONE model (at
its first part, the path llama.cpp loads) and `models rm` removes every part. Loading a split through
llama.cpp is proven with the real model in test_live_split_model.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pensieve import model_pull
from pensieve.cli import main
from pensieve.engine.registry import ModelRegistry
from pensieve.errors import PensieveError
from pensieve.model_hub import parse_spec, resolve
from pensieve.model_pull import pull_file, remove_model
from pensieve.pull_jobs import PullJobs
from support.fake_hub import FakeHub, tiny_gguf, tiny_split

REPO = "org/split-GGUF"
PARTS = [f"split-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
PART_BYTES = 2 * 1024 * 1024


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake hub with a repository holding a split Q8_0 and a single-file F16, and a split that lies."""
    fake = FakeHub().start()
    for name, content in zip(PARTS, tiny_split(3, PART_BYTES), strict=True):
        fake.add(REPO, name, content)
    fake.add(REPO, "split-F16.gguf", tiny_gguf(1 << 20, "f16"))
    # Named as parts, but plain GGUFs without split.count: llama.cpp would not load them as one model.
    fake.add("org/fake-split-GGUF", "fake-00001-of-00002.gguf", tiny_gguf(1 << 20, "a"))
    fake.add("org/fake-split-GGUF", "fake-00002-of-00002.gguf", tiny_gguf(1 << 20, "b"))
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setattr(model_pull, "RETRY_DELAY_SECONDS", 0.05)
    yield fake
    fake.stop()


def _pull(spec: str, models: Path, **options: object) -> Path:
    return pull_file(resolve(parse_spec(spec)), models, **options)  # type: ignore[arg-type]


def _leftovers(models: Path) -> list[str]:
    return sorted(path.name for path in models.iterdir() if not path.name.startswith("."))


def test_every_part_is_pulled_verified_listed_as_one_model_and_removed(hub: FakeHub, tmp_path: Path) -> None:
    hub.drop_after[PARTS[1]] = PART_BYTES // 2  # the second part's connection drops halfway: resumed
    seen: list[tuple[str, int, int]] = []
    path = _pull(f"{REPO}:Q8_0", tmp_path, on_progress=lambda *event: seen.append(event))
    assert path == tmp_path / PARTS[0]
    assert _leftovers(tmp_path) == PARTS
    for name in PARTS:
        assert (tmp_path / name).read_bytes() == hub.read(REPO, name, 0)
        assert (tmp_path / f".{name}.verified.json").is_file()
    assert [r.range for r in hub.downloads(PARTS[1])] == [None, f"bytes={PART_BYTES // 2}-"]
    total = sum(hub.size(REPO, name) for name in PARTS)
    done = [event[1] for event in seen if event[0] == "downloading"]
    assert done == sorted(done) and seen[-1] == ("verifying", total, total)  # one progress over every part
    (model,) = ModelRegistry(tmp_path).scan()
    assert (model.id, model.path, model.size_bytes, model.usable) == ("split-Q8_0", path, total, True)
    gets = sum(len(hub.downloads(name)) for name in PARTS)
    assert _pull(f"{REPO}:{PARTS[2]}", tmp_path) == path  # any part names the model; verified: kept
    assert sum(len(hub.downloads(name)) for name in PARTS) == gets
    removed = [p.name for p in remove_model(tmp_path, "split-Q8_0")]
    assert removed == [name for part in PARTS for name in (part, f".{part}.verified.json")]
    assert _leftovers(tmp_path) == []


def test_a_bad_part_installs_nothing_and_the_next_pull_keeps_the_good_ones(hub: FakeHub, tmp_path: Path) -> None:
    hub.declared_sha256[PARTS[2]] = "ab" * 32
    with pytest.raises(PensieveError, match=f"{PARTS[2]} .*does not match the hub's sha256") as caught:
        _pull(f"{REPO}:Q8_0", tmp_path)
    assert caught.value.code == "checksum_mismatch"
    assert not list(tmp_path.glob("*.gguf")) and len(list(tmp_path.glob("*.part"))) == 2  # parts 1 and 2 kept
    del hub.declared_sha256[PARTS[2]]
    before = {name: len(hub.downloads(name)) for name in PARTS}
    _pull(f"{REPO}:Q8_0", tmp_path)
    assert {name: len(hub.downloads(name)) - before[name] for name in PARTS} == {PARTS[0]: 0, PARTS[1]: 0, PARTS[2]: 1}
    assert _leftovers(tmp_path) == PARTS


def test_parts_without_split_count_are_refused(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(PensieveError, match=r"split\.count is None, but the hub lists 2 parts") as caught:
        _pull("org/fake-split-GGUF", tmp_path)
    assert caught.value.code == "invalid_gguf"
    assert _leftovers(tmp_path) == []


def test_the_cli_and_a_server_job_pull_every_part(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "empty.env"
    env.write_text("", encoding="utf-8")
    models = tmp_path / "models"
    assert main(["--env-file", str(env), "models", "pull", f"{REPO}:Q8_0", "--models-dir", str(models)]) == 0
    out, err = capsys.readouterr()
    assert f"Model split-Q8_0 ready: {models / PARTS[0]}" in out and f"{PARTS[0]} and 2 more part(s)" in err
    assert main(["--env-file", str(env), "models", "rm", "split-Q8_0", "--models-dir", str(models)]) == 0
    assert not list(models.glob("*.gguf"))

    async def job() -> dict[str, object]:
        jobs = PullJobs()
        started = jobs.start(resolve(parse_spec(f"{REPO}:Q8_0")), models)
        await jobs.wait(started.id)
        return started.to_dict()

    finished = asyncio.run(job())
    total = sum(hub.size(REPO, name) for name in PARTS)
    assert (finished["status"], finished["total_bytes"], finished["done_bytes"]) == ("done", total, total)
    assert finished["parts"] == PARTS and finished["model_id"] == "split-Q8_0"
