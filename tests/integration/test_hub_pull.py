"""`pensieve models pull` and `models rm` against a local fake Hugging Face Hub (tests/support/fake_hub.py).

The real huggingface_hub client talks to the fake hub over loopback (HF_ENDPOINT, set after import: the
endpoint is read per call). Covered: a pull by repository, by quantization and by file name; a connection
dropped mid-file resumed with a Range request in the same pull; a pull that failed resumed by the next one
from its part file; a wrong sha256 and a corrupt GGUF refused with nothing installed; a private repository
with HF_TOKEN (the token never reaches the CDN host); rm; the CLI's progress line; a cancelled server job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pensieve import model_pull
from pensieve.cli import main
from pensieve.errors import PensieveError
from pensieve.model_hub import HubNotFoundError, parse_spec, resolve
from pensieve.model_pull import ModelExistsError, pull_file, remove_model
from pensieve.pull_jobs import PullJobs
from support.fake_hub import FakeHub, tiny_gguf

REPO = "org/tiny-GGUF"
Q4 = "tiny-Q4_K_M.gguf"
Q8 = "tiny-Q8_0.gguf"
SIZE = 8 * 1024 * 1024


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake hub with a two-quant repository, a corrupt GGUF, a wrong hash and a private repository."""
    fake = FakeHub().start()
    fake.add(REPO, "README.md", b"# tiny\n")
    fake.add(REPO, Q4, tiny_gguf(SIZE, "tiny q4"))
    fake.add(REPO, Q8, tiny_gguf(SIZE // 2, "tiny q8"))
    fake.add("org/broken-GGUF", "broken-Q4_K_M.gguf", tiny_gguf(SIZE)[: SIZE // 2])  # tensor data cut off
    fake.add("org/liar-GGUF", "liar-Q4_K_M.gguf", tiny_gguf(1 << 20))
    fake.declared_sha256["liar-Q4_K_M.gguf"] = "ab" * 32
    fake.add("me/private-GGUF", "private.gguf", tiny_gguf(1 << 20))
    fake.private["me/private-GGUF"] = "hf_secret"
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


def test_pull_by_repo_quant_and_file(hub: FakeHub, tmp_path: Path) -> None:
    assert _pull(REPO, tmp_path).name == Q4  # two GGUFs: Q4_K_M is the default
    assert _pull(f"{REPO}:q8_0", tmp_path).name == Q8
    assert (tmp_path / Q8).read_bytes() == hub.read(REPO, Q8, 0)
    gets = len(hub.downloads(Q8))
    assert _pull(f"{REPO}:{Q8}", tmp_path) == tmp_path / Q8  # verified before: kept, not downloaded again
    assert len(hub.downloads(Q8)) == gets
    assert _leftovers(tmp_path) == [Q4, Q8]
    (tmp_path / Q8).write_bytes(b"GGUF something else")
    with pytest.raises(ModelExistsError, match="already in the models folder"):
        _pull(f"{REPO}:{Q8}", tmp_path)
    assert _pull(f"{REPO}:{Q8}", tmp_path, force=True).read_bytes() == hub.read(REPO, Q8, 0)


def test_a_dropped_connection_is_resumed_with_a_range_request(hub: FakeHub, tmp_path: Path) -> None:
    hub.drop_after[Q4] = 3 * 1024 * 1024
    seen: list[tuple[str, int, int]] = []
    started = time.perf_counter()
    path = _pull(REPO, tmp_path, on_progress=lambda *event: seen.append(event))
    elapsed = time.perf_counter() - started
    assert path.read_bytes() == hub.read(REPO, Q4, 0)
    assert [r.range for r in hub.downloads(Q4)] == [None, f"bytes={3 * 1024 * 1024}-"]
    assert seen[0] == ("downloading", 0, hub.size(REPO, Q4)) and seen[-1][0] == "verifying"
    done = [event[1] for event in seen if event[0] == "downloading"]
    assert done == sorted(done)  # never goes back: the resumed part is continued, not restarted
    print(f"8 MB pulled with one resume in {elapsed:.2f} s")


def test_a_failed_pull_leaves_its_part_and_the_next_pull_resumes_it(hub: FakeHub, tmp_path: Path) -> None:
    hub.drop_after[Q4] = 5 * 1024 * 1024
    hub.fail_downloads = 100  # after the drop, the CDN answers 503 to every resume
    with pytest.raises(PensieveError, match=r"kept in .*pull again to resume") as caught:
        _pull(REPO, tmp_path)
    assert caught.value.status_code == 502
    parts = list(tmp_path.glob("*.part"))
    assert [p.stat().st_size for p in parts] == [5 * 1024 * 1024] and not list(tmp_path.glob("*.gguf"))
    hub.fail_downloads = 0
    assert _pull(REPO, tmp_path).read_bytes() == hub.read(REPO, Q4, 0)
    assert hub.downloads(Q4)[-1].range == f"bytes={5 * 1024 * 1024}-"
    assert _leftovers(tmp_path) == [Q4]


def test_a_wrong_sha256_or_a_corrupt_gguf_installs_nothing(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(PensieveError, match="does not match the hub's sha256 abab") as caught:
        _pull("org/liar-GGUF", tmp_path)
    assert caught.value.code == "checksum_mismatch"
    with pytest.raises(PensieveError, match=r"not a usable GGUF file: .*Nothing was installed") as caught:
        _pull("org/broken-GGUF", tmp_path)
    assert caught.value.code == "invalid_gguf"
    assert _leftovers(tmp_path) == []


def test_missing_repos_files_and_private_repos(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HubNotFoundError, match="No repository org/nothing") as caught:
        _pull("org/nothing", tmp_path)
    assert caught.value.code == "repo_not_found"
    with pytest.raises(HubNotFoundError, match=r"no GGUF file for quantization Q5_K_M.*tiny-Q4_K_M\.gguf"):
        _pull(f"{REPO}:Q5_K_M", tmp_path)
    with pytest.raises(HubNotFoundError, match="set HF_TOKEN"):
        _pull("me/private-GGUF", tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    before = len(hub.requests)
    assert _pull("me/private-GGUF", tmp_path).name == "private.gguf"
    assert [r.authorized for r in hub.downloads("private.gguf")] == [False]  # the CDN never sees the token
    assert all(r.authorized for r in hub.requests[before:] if r.path.startswith(("/api/models/me", "/me/")))


def test_rm_removes_a_model_and_names_the_known_ones(hub: FakeHub, tmp_path: Path) -> None:
    _pull(REPO, tmp_path)
    (tmp_path / "tiny-Q4_K_M.toml").write_text('aliases = ["tiny"]\n', encoding="utf-8")
    with pytest.raises(PensieveError, match=r"No model 'tiny'.*Installed models: tiny-Q4_K_M"):
        remove_model(tmp_path, "tiny")  # an alias is not a file
    assert [p.name for p in remove_model(tmp_path, "tiny-Q4_K_M.gguf")] == [Q4, f".{Q4}.verified.json"]
    assert _leftovers(tmp_path) == ["tiny-Q4_K_M.toml"]


def test_the_cli_pulls_with_a_progress_line_and_removes(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = tmp_path / "empty.env"
    env.write_text("", encoding="utf-8")
    models = tmp_path / "models"
    assert main(["--env-file", str(env), "models", "pull", f"{REPO}:Q8_0", "--models-dir", str(models)]) == 0
    out, err = capsys.readouterr()
    assert f"Model tiny-Q8_0 ready: {models / Q8}" in out
    assert f"{REPO}: {Q8} (4.2 MB)" in err and "\r" in err and "downloading 100% 4.2 MB of 4.2 MB" in err
    assert main(["--env-file", str(env), "models", "pull", "org/liar-GGUF", "--models-dir", str(models)]) == 1
    assert "does not match the hub's sha256" in capsys.readouterr().err
    assert main(["--env-file", str(env), "models", "rm", "nope", "--models-dir", str(models)]) == 1
    assert "Installed models: tiny-Q8_0" in capsys.readouterr().err
    assert main(["--env-file", str(env), "models", "rm", "tiny-Q8_0", "--models-dir", str(models)]) == 0
    assert not list(models.glob("*.gguf"))


def test_a_cancelled_job_keeps_its_part_for_the_next_pull(hub: FakeHub, tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        jobs = PullJobs()
        file = resolve(parse_spec(REPO))
        first = jobs.start(file, tmp_path)
        with pytest.raises(ModelExistsError, match="already being pulled"):
            jobs.start(file, tmp_path)
        jobs.cancel(first.id)
        await jobs.wait(first.id)
        second = jobs.start(file, tmp_path)
        await jobs.wait(second.id)
        return first.to_dict(), second.to_dict()

    first, second = asyncio.run(scenario())
    assert first["status"] == "cancelled", first
    assert second["status"] == "done" and second["total_bytes"] == hub.size(REPO, Q4), second
    assert _leftovers(tmp_path) == [Q4]
