"""`pensieve doctor` run as a user runs it: a real child process, the real model, real sockets, a real fake cloud.

Each test gives the doctor its own working directory (its `.env`, `models/`, `data/`, `logs/`) and reads
the `--json` report; the hostile cases are what users really do: a typo in `.env`, a port another
program holds, a model file cut short, a cloud URL nobody answers on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.fake_cloud import FakeCloud
from support.models import DEFAULT_MODEL_FILE, find_real_model, link_or_copy

pytestmark = pytest.mark.integration


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A working directory with the real default model and a `.env` choosing a free port."""
    models = tmp_path / "models"
    models.mkdir()
    link_or_copy(find_real_model(models), models / DEFAULT_MODEL_FILE)
    (tmp_path / ".env").write_text(f"PENSIEVE_PORT={free_port()}\n", encoding="utf-8")
    return tmp_path


def doctor(cwd: Path, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run `pensieve doctor --json` in `cwd` (no PENSIEVE_* from our environment); exit status and checks by name."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PENSIEVE_")}
    result = subprocess.run(
        [sys.executable, "-m", "pensieve", "doctor", "--json", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    return result.returncode, {check["name"]: check for check in json.loads(result.stdout)}


def test_a_sound_install_reports_ok_and_exits_zero(home: Path) -> None:
    status, checks = doctor(home)
    failed = {name: c for name, c in checks.items() if c["status"] == "fail"}
    assert status == 0 and not failed
    for name in ("python", "settings", "models", "self-test", "port", "folders", "memory"):
        assert checks[name]["status"] in ("ok", "warn"), checks[name]
    assert checks["models"]["status"] == "ok" and "verified" in checks["models"]["detail"]
    assert checks["self-test"]["status"] == "ok" and "generated" in checks["self-test"]["detail"]
    build = checks["llama.cpp build"]
    assert build["status"] in ("ok", "warn") and "uses" in build["detail"], build
    assert "cloud" not in checks  # only with --cloud


def test_a_typo_in_env_fails_naming_the_key(home: Path) -> None:
    (home / ".env").write_text("PENSIEVE_PORT=eighty\n", encoding="utf-8")
    status, checks = doctor(home)
    assert status == 1
    assert checks["settings"]["status"] == "fail" and "PENSIEVE_PORT" in checks["settings"]["detail"]
    assert checks["settings"]["fix"]
    assert checks["self-test"]["status"] == "ok"  # the other checks still ran (with the defaults)


def test_a_port_held_by_another_program_fails_with_the_fix(home: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        (home / ".env").write_text(f"PENSIEVE_PORT={port}\n", encoding="utf-8")
        status, checks = doctor(home)
    assert status == 1
    assert checks["port"]["status"] == "fail" and str(port) in checks["port"]["detail"]
    assert "PENSIEVE_PORT" in checks["port"]["fix"]


def test_a_truncated_model_fails_its_hash_and_its_self_test_without_crashing_the_doctor(home: Path) -> None:
    real = find_real_model(home / "models")
    target = home / "models" / DEFAULT_MODEL_FILE
    target.unlink()
    with real.open("rb") as source:
        target.write_bytes(source.read(4 * 1024 * 1024))
    status, checks = doctor(home)
    assert status == 1
    assert checks["models"]["status"] == "fail" and "sha256" in checks["models"]["detail"]
    assert "install-default --force" in checks["models"]["fix"]
    assert checks["self-test"]["status"] == "fail" and checks["self-test"]["detail"]


def test_a_missing_model_says_how_to_install_it(home: Path) -> None:
    (home / "models" / DEFAULT_MODEL_FILE).unlink()
    status, checks = doctor(home)
    assert status == 1
    assert checks["models"]["status"] == "fail" and checks["models"]["fix"] == "pensieve models install-default"


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    """A real OpenAI-compatible server on loopback that wants a key."""
    with FakeCloud(api_key="sk-doctor") as fake:
        yield fake


def test_cloud_is_checked_only_when_asked_and_a_wrong_key_is_named(home: Path, cloud: FakeCloud) -> None:
    port = free_port()
    base = f"PENSIEVE_PORT={port}\nPENSIEVE_CLOUD_BASE_URL={cloud.base_url}\nPENSIEVE_CLOUD_MODEL=echo-1\n"
    (home / ".env").write_text(base + "PENSIEVE_CLOUD_API_KEY=sk-doctor\n", encoding="utf-8")
    status, checks = doctor(home, "--cloud")
    assert status == 0 and checks["cloud cloud"]["status"] == "ok", checks.get("cloud cloud")

    (home / ".env").write_text(base + "PENSIEVE_CLOUD_API_KEY=sk-wrong\n", encoding="utf-8")
    status, checks = doctor(home, "--cloud")
    assert status == 1 and checks["cloud cloud"]["status"] == "fail"
    assert "401" in checks["cloud cloud"]["detail"] and "key" in checks["cloud cloud"]["fix"]
    assert "sk-wrong" not in json.dumps(checks)  # the key is never printed


def test_an_unreachable_cloud_fails(home: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    env = f"PENSIEVE_PORT={free_port()}\nPENSIEVE_CLOUD_BASE_URL={dead}\nPENSIEVE_CLOUD_MODEL=m\n"
    (home / ".env").write_text(env + "PENSIEVE_CLOUD_API_KEY=sk-x\n", encoding="utf-8")
    status, checks = doctor(home, "--cloud")
    assert (
        status == 1 and checks["cloud cloud"]["status"] == "fail" and "ConnectError" in checks["cloud cloud"]["detail"]
    )


def test_the_text_report_has_one_line_per_check_and_a_summary(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pensieve", "doctor"], cwd=home, capture_output=True, text=True, timeout=300, check=False
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("ok    self-test") for line in lines), result.stdout
    assert lines[-1] == "All ok." or "checks:" in lines[-1]
