"""The one server launcher of the suites and benches: `python -m pensieve serve` as a subprocess.

A server runs on a free loopback port, from its own working directory (so the repository's `.env` is not
read), without the caller's PENSIEVE_* variables, with its output captured to a file, and is waited for
until GET /ready (or another path) answers. Every server started here is listed in `LIVE_SERVERS`, so a
failing test can show the tail of each log (tests/integration/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from support.models import ModelsFolder

N_CTX = 2048
READY_TIMEOUT = 120.0
LOG_TAIL_LINES = 60


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
            # A stopped test server drains what is still running for at most this long (`stop` waits 15 s).
            "PENSIEVE_SHUTDOWN_TIMEOUT": "5",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env)
    return env


def _wait_until_ready(handle: ServerHandle, timeout: float, status: int = 200, path: str = "/ready") -> None:
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
                response = http.get(f"{handle.base_url}{path}")
            except httpx.HTTPError as exc:
                last_problem = repr(exc)
            else:
                if response.status_code == status:
                    return
                last_problem = f"{path} answered {response.status_code}: {response.text}"
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
    ready_path: str = "/ready",
    new_session: bool = False,
    host: str = "127.0.0.1",
) -> ServerHandle:
    """Start `python -m pensieve serve` on a free port and wait until GET `ready_path` answers `ready_status`.

    /ready answers only once the start-up (and its load of the default model) is over, so a server whose
    default model cannot load is waited for with `ready_status=503`; a server that preloads nothing is
    waited for on /health. `new_session` puts the server in its own process group (a bench pauses it with
    SIGSTOP without stopping itself). `host` is the address bound (the handle's URL stays on loopback).
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
        host,
        "--port",
        str(port),
        "--models-dir",
        str(models.path),
        "--model",
        models.model_id,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=work_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session
        )
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
        _wait_until_ready(handle, ready_timeout, ready_status, ready_path)
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
    host: str = "127.0.0.1",
) -> Iterator[ServerHandle]:
    """`launch_server` as a context manager that stops the server on exit."""
    handle = launch_server(name, models, work_dir, extra_env, ready_status=ready_status, host=host)
    try:
        yield handle
    finally:
        handle.stop()
