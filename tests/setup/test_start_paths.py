"""Every start path works on a fresh checkout, and stopping it leaves no process behind.

A clean `git clone` of the committed repository runs `./run_app.sh` exactly as a new user would: its own
`.venv`, the pinned dependencies, the llama.cpp build chosen and self-tested for this CPU (its wheel
comes from the set-up's cache, so this takes a minute or two, not a compile), the default model. Then
each start script runs in that clone: the server answers `/ready` and a chat through the official SDK,
the UI answers its health check, and after a Ctrl+C (SIGINT to the process group, as a terminal sends
it) or a service manager's SIGTERM to the script, no process that belongs to the clone is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# A first set-up on a cold machine compiles llama.cpp (5-14 minutes); with warm caches it takes ~1-2.
FIRST_START_TIMEOUT = 20 * 60.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Started:
    """One start script running in its own process group, its output in `log`."""

    script: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 60) -> str:
        """The last lines the script printed."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- last lines of {self.script} ---\n" + "\n".join(text.splitlines()[-lines:])

    def wait_for(self, url: str, timeout: float, *, expect: str | None = None) -> httpx.Response:
        """Poll `url` until it answers 200 (and contains `expect`); fail with the log if the script exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.script} exited with {self.process.returncode}\n{self.tail()}")
            try:
                response = httpx.get(url, timeout=5)
                if response.status_code == 200 and (expect is None or expect in response.text):
                    return response
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"{url} did not answer within {timeout:.0f} s\n{self.tail()}")

    def stop(self, how: str) -> None:
        """Stop like a user: "ctrl-c" sends SIGINT to the whole process group, "sigterm" only to the script."""
        if how == "ctrl-c":
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            pytest.fail(f"{self.script} did not stop within {STOP_TIMEOUT:.0f} s of {how}\n{self.tail()}")


def processes_of(folder: Path) -> list[str]:
    """Processes (other than this one) whose command line or working directory is inside `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if str(folder) in cmdline or cwd == str(folder) or cwd.startswith(f"{folder}/"):
            found.append(f"{entry.name}: {cmdline or '?'} (cwd {cwd})")
    return found


def assert_nothing_left(clone: Path, started: Started) -> None:
    """No process of the clone survives its script (the model worker and Streamlit included)."""
    deadline = time.monotonic() + 10
    while (left := processes_of(clone)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"{started.script} left processes behind:\n" + "\n".join(left) + "\n" + started.tail()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean clone of the committed repository (what CI and a new user have)."""
    folder = tmp_path_factory.mktemp("fresh") / "pensieve"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(folder)], check=True)
    yield folder
    for line in processes_of(folder):  # never leave a server running after a failed test
        os.kill(int(line.split(":")[0]), signal.SIGKILL)


def start(clone: Path, script: str, *args: str) -> Started:
    """Run `./<script> args` in the clone as a user would, in a new process group."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PENSIEVE_")}
    env.pop("VIRTUAL_ENV", None)
    env["CI"] = "true"
    log = clone.parent / f"{script}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [f"./{script}", *args],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Started(script, process, log)


def chat(port: int) -> str:
    """One short chat answer from the server, through the official SDK."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
    answer = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    return answer.choices[0].message.content or ""


def test_every_start_script_works_on_a_fresh_clone_and_leaves_nothing_behind(clone: Path) -> None:
    api, ui = free_port(), free_port()
    app = start(clone, "run_app.sh", "--port", str(api), "--ui-port", str(ui))
    app.wait_for(f"http://127.0.0.1:{api}/ready", FIRST_START_TIMEOUT)
    assert chat(api).strip(), app.tail()
    app.wait_for(f"http://127.0.0.1:{ui}/_stcore/health", START_TIMEOUT, expect="ok")
    assert "<title>" in app.wait_for(f"http://127.0.0.1:{ui}/", START_TIMEOUT).text
    log = app.log.read_text(encoding="utf-8", errors="replace")
    assert "Self-test passed with llama.cpp build" in log or "self-test passed at set-up" in log, app.tail()
    app.stop("ctrl-c")
    assert_nothing_left(clone, app)
    assert " ERROR " not in app.log.read_text(encoding="utf-8", errors="replace"), app.tail()  # a clean stop

    api = free_port()
    server = start(clone, "run_local_api.sh", "--port", str(api))
    server.wait_for(f"http://127.0.0.1:{api}/ready", START_TIMEOUT)
    assert "Dependencies are up to date" in server.log.read_text(), server.tail()  # no second install
    server.stop("sigterm")
    assert_nothing_left(clone, server)

    api, ui = free_port(), free_port()
    server = start(clone, "run_local_api.sh", "--port", str(api))
    server.wait_for(f"http://127.0.0.1:{api}/ready", START_TIMEOUT)
    streamlit = start(clone, "run_streamlit.sh", "--port", str(ui), "--server-url", f"http://127.0.0.1:{api}")
    streamlit.wait_for(f"http://127.0.0.1:{ui}/_stcore/health", START_TIMEOUT, expect="ok")
    streamlit.stop("ctrl-c")
    server.stop("ctrl-c")
    assert_nothing_left(clone, streamlit)

    api, ui = free_port(), free_port()
    quick = start(clone, "quick_start.sh", "--port", str(api), "--ui-port", str(ui))
    quick.wait_for(f"http://127.0.0.1:{api}/ready", START_TIMEOUT)
    quick.wait_for(f"http://127.0.0.1:{ui}/_stcore/health", START_TIMEOUT, expect="ok")
    assert chat(api).strip(), quick.tail()
    quick.stop("sigterm")
    assert_nothing_left(clone, quick)
