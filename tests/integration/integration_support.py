"""Helpers of the integration suite: the server launcher, SDK clients, error-shape checks, engine stats.

A server runs as `python -m pensieve serve` on a free loopback port, from its own temporary working
directory (so the repository's `.env` is not read), with its output captured to a file. Every server
started here is listed in `LIVE_SERVERS`, so that a failing test can show the tail of each log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
# The hostile files of the models folder, by model id.
BAD_MODELS = ("empty", "not-gguf", "truncated")
N_CTX = 2048
READY_TIMEOUT = 120.0
LOG_TAIL_LINES = 60
ERROR_KEYS = {"message", "type", "param", "code"}
# Marks an argument of assert_openai_error as "not checked" (None is a value to check).
UNSET: Any = object()
# Gemma's end-of-generation token ids (<eos>, <end_of_turn> and the other EOG token); biasing them
# to -100 keeps a run going until max_tokens.
END_TOKEN_BIAS = {"1": -100, "106": -100, "212": -100}


# --- The real model ----------------------------------------------------------------------------


def find_real_model(models_dir: Path) -> Path:
    """PENSIEVE_TEST_MODEL, else the repository's models folder, else install the default model into `models_dir`."""
    from_env = os.environ.get("PENSIEVE_TEST_MODEL", "").strip()
    if from_env:
        path = Path(from_env).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"PENSIEVE_TEST_MODEL={from_env} is not a file")
        return path
    in_repo = REPO_ROOT / "models" / DEFAULT_MODEL_FILE
    if in_repo.is_file():
        return in_repo.resolve()
    from pensieve.model_install import install_default_model

    return Path(install_default_model(models_dir, show_progress=False))


def link_or_copy(source: Path, target: Path) -> None:
    """A symlink to `source` at `target`, or a copy where links are not allowed."""
    try:
        target.symlink_to(source)
    except OSError:
        shutil.copyfile(source, target)


def place_real_model(models_dir: Path) -> Path:
    """The real model (see `find_real_model`) linked or copied into `models_dir`; its path there."""
    real = find_real_model(models_dir)
    target = models_dir / real.name
    if not target.exists():
        link_or_copy(real, target)
    return target


# --- Servers -----------------------------------------------------------------------------------


@dataclass
class ModelsFolder:
    """The temporary models folder: the real model (id `model_id`) and the hostile files."""

    path: Path
    model_id: str
    model_file: Path
    bad_ids: tuple[str, ...] = BAD_MODELS


@dataclass
class ServerHandle:
    """A running `pensieve serve` subprocess."""

    name: str
    base_url: str
    model_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines the server printed."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the server has not exited 15 s later."""
        if self in LIVE_SERVERS:
            LIVE_SERVERS.remove(self)
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


LIVE_SERVERS: list[ServerHandle] = []
ServerFactory = Callable[[str, Mapping[str, str]], contextlib.AbstractContextManager[ServerHandle]]


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(work_dir: Path, extra_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a test server: ours, minus the developer's PENSIEVE_* settings, plus the suite's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PENSIEVE_")}
    env.update(
        {
            "PENSIEVE_LOG_DIR": str(work_dir / "logs"),
            "PENSIEVE_DATA_DIR": str(work_dir / "data"),
            "PENSIEVE_N_CTX": str(N_CTX),
            # Models stay loaded however long the suite runs between two uses (keep-alive tests set their own).
            "PENSIEVE_KEEP_ALIVE": "-1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env)
    return env


def _wait_until_ready(handle: ServerHandle, timeout: float, status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    with httpx.Client(timeout=5.0) as http:
        while time.monotonic() < deadline:
            if handle.process.poll() is not None:
                raise RuntimeError(
                    f"server {handle.name} exited with status {handle.process.returncode} before it was ready; "
                    f"its output:\n{handle.log_tail(200)}"
                )
            try:
                response = http.get(f"{handle.base_url}/ready")
            except httpx.HTTPError as exc:
                last_problem = repr(exc)
            else:
                if response.status_code == status:
                    return
                last_problem = f"/ready answered {response.status_code}: {response.text}"
            time.sleep(0.2)
    raise RuntimeError(
        f"server {handle.name} not ready after {timeout:.0f} s ({last_problem}); its output:\n{handle.log_tail(200)}"
    )


def launch_server(
    name: str,
    models: ModelsFolder,
    work_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    ready_timeout: float = READY_TIMEOUT,
    ready_status: int = 200,
) -> ServerHandle:
    """Start `python -m pensieve serve` on a free port and wait until GET /ready answers `ready_status`.

    /ready answers only once the start-up (and its load of the default model) is over, so a server whose
    default model cannot load is waited for with `ready_status=503`.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(work_dir, extra_env or {})
    log_path = work_dir / "server.log"
    command = [
        sys.executable,
        "-m",
        "pensieve",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--models-dir",
        str(models.path),
        "--model",
        models.model_id,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    handle = ServerHandle(
        name=name,
        base_url=f"http://127.0.0.1:{port}",
        model_id=models.model_id,
        process=process,
        log_path=log_path,
        env=env,
    )
    LIVE_SERVERS.append(handle)
    try:
        _wait_until_ready(handle, ready_timeout, ready_status)
    except BaseException:
        handle.stop()
        raise
    return handle


@contextlib.contextmanager
def running_server(
    name: str,
    models: ModelsFolder,
    work_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    ready_status: int = 200,
) -> Iterator[ServerHandle]:
    """`launch_server` as a context manager that stops the server on exit."""
    handle = launch_server(name, models, work_dir, extra_env, ready_status=ready_status)
    try:
        yield handle
    finally:
        handle.stop()


# --- Clients and checks --------------------------------------------------------------------------


def make_client(base_url: str, api_key: str = "test", **options: Any) -> openai.OpenAI:
    """The official SDK pointed at a Pensieve server, without retries unless `options` says otherwise."""
    settings: dict[str, Any] = {"max_retries": 0, "timeout": 60.0}
    settings.update(options)
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, **settings)


def assert_openai_error(
    response: httpx.Response, status: int, *, code: object = UNSET, param: object = UNSET
) -> dict[str, Any]:
    """Check that `response` is OpenAI's error JSON with `status` (and `code`/`param` when given).

    Returns the inner `error` object.
    """
    assert response.status_code == status, f"expected HTTP {status}, got {response.status_code}: {response.text}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert "detail" not in body, f"FastAPI's error shape leaked: {body}"
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert set(error) == ERROR_KEYS, body
    assert isinstance(error["message"], str) and error["message"].strip(), body
    assert isinstance(error["type"], str) and error["type"], body
    if code is not UNSET:
        assert error["code"] == code, body
    if param is not UNSET:
        assert error["param"] == param, body
    return error


def model_entry(http: httpx.Client, model_id: str) -> dict[str, Any]:
    """The GET /api/models entry of `model_id`."""
    response = http.get("/api/models")
    assert response.status_code == 200, response.text
    for entry in response.json()["data"]:
        if entry["id"] == model_id:
            return dict(entry)
    raise AssertionError(f"{model_id} is not listed by /api/models: {response.text}")


def engine_stats(http: httpx.Client, model_id: str) -> dict[str, Any]:
    """The `stats` of a loaded model, from GET /api/models."""
    stats = model_entry(http, model_id)["stats"]
    assert isinstance(stats, dict), f"{model_id} has no stats (not loaded?)"
    return stats


def wait_for_idle(
    http: httpx.Client, model_id: str, served_at_least: int, timeout: float = 10.0
) -> tuple[dict[str, Any], float]:
    """Poll the stats until the engine has finished `served_at_least` runs and is idle.

    Returns the stats and the seconds waited; fails when the engine is still busy after `timeout`.
    """
    started = time.monotonic()
    stats = engine_stats(http, model_id)
    while time.monotonic() - started < timeout:
        stats = engine_stats(http, model_id)
        if stats["requests_served"] >= served_at_least and not stats["busy"] and stats["queue_depth"] == 0:
            return stats, time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"engine still busy {timeout:.0f} s after the client left: {stats}")
