"""Every start path works on a fresh checkout, and stopping it leaves no process behind.

A clean `git clone` of the committed repository runs `./run_app.sh` exactly as a new user would: its own
`.venv`, the pinned dependencies, the llama.cpp build chosen and self-tested for this CPU (its wheel comes
from the set-up's cache, so this takes a minute or two, not a compile), the default model. Then each start
script runs in that clone: the server answers `/ready` and a chat through the official SDK, the UI answers
its page and its health check. Each is stopped as a user stops it, by Ctrl+C (SIGINT to the whole process
group, as a terminal sends it), or as a service manager does, by SIGTERM to the script's process; after
that no process of the clone may be left: not the server, not its model worker, not Streamlit.

The scripts run as they would for a user: from the clone, in a new session (their own process group),
without the developer's PENSIEVE_* settings or virtual environment, with CI=true; each one's output goes
to a log file whose last lines are part of every failure message.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx
import openai
import pytest

from support.checks import make_client
from support.models import DEFAULT_MODEL_FILE
from support.server import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL_ID = Path(DEFAULT_MODEL_FILE).stem
# A first set-up on a cold machine compiles llama.cpp (about 5 minutes on 2 cores, more on slow ones);
# with warm caches (pip's, and the llama.cpp wheel in ~/.cache/pensieve) it takes a minute or two.
FIRST_START_TIMEOUT = 15 * 60.0
START_TIMEOUT = 120.0
STOP_TIMEOUT = 20.0
# How long the children (worker, Streamlit) may take to go once the script itself has exited.
LEFTOVER_GRACE = 10.0
LOG_TAIL_LINES = 60


@dataclass
class Started:
    """One start script running in its own process group (group id = its pid), its output in `log`."""

    script: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        """The last lines the script printed, headed by its name."""
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- last lines of {self.script} ({self.log}) ---\n" + "\n".join(text.splitlines()[-LOG_TAIL_LINES:])

    def output(self) -> str:
        """Everything the script printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, url: str, timeout: float, *, body: str | None = None) -> httpx.Response:
        """Poll `url` until it answers 200 (with exactly `body`, when given); fail early if the script exits."""
        deadline, last = time.monotonic() + timeout, "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.script} exited with status {self.process.returncode}\n{self.tail()}")
            try:
                response = httpx.get(url, timeout=5)
            except httpx.HTTPError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200 and (body is None or response.text.strip() == body):
                    return response
                last = f"{response.status_code} {response.text[:200]!r}"
            time.sleep(1)
        pytest.fail(f"{url} not ready within {timeout:.0f} s (last: {last})\n{self.tail()}")

    def stop(self, how: Literal["ctrl-c", "sigterm"]) -> None:
        """Stop like a user: "ctrl-c" is SIGINT to the whole process group, "sigterm" SIGTERM to the script only.

        If the script is still running STOP_TIMEOUT later it gets SIGTERM, then the group SIGKILL, and the
        test fails: a user's Ctrl+C or a service manager's stop must be enough.
        """
        if how == "ctrl-c":
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
            problem = f"needed a SIGTERM after {how} did not stop it"
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            problem = "needed a SIGKILL: neither SIGINT nor SIGTERM stopped it"
        pytest.fail(f"{self.script} did not stop within {STOP_TIMEOUT:.0f} s of {how}: {problem}\n{self.tail()}")


@dataclass(frozen=True)
class Process:
    """A process seen in /proc."""

    pid: int
    group: int
    description: str


def processes_of(folder: Path) -> list[Process]:
    """Processes (other than this one) whose command line or working directory is inside `folder`."""
    found: list[Process] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = str((entry / "cwd").readlink())
            # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, hence the rsplit.
            group = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile (or a zombie), or not ours to read
        if str(folder) in cmdline or cwd == str(folder) or cwd.startswith(f"{folder}/"):
            found.append(Process(int(entry.name), group, f"{entry.name} (group {group}): {cmdline or '?'} [cwd {cwd}]"))
    return found


def assert_nothing_left(clone: Path, started: Started, *, still_running: Started | None = None) -> None:
    """No process of the clone survives `started` (its worker and Streamlit included).

    Processes of `still_running` (another script, deliberately left running) are not counted.
    """
    spared = {still_running.process.pid} if still_running else set()
    deadline = time.monotonic() + LEFTOVER_GRACE
    while (left := [p for p in processes_of(clone) if p.group not in spared]) and time.monotonic() < deadline:
        time.sleep(0.5)
    listing = "\n".join(process.description for process in left)
    assert not left, f"{started.script} left processes behind:\n{listing}\n{started.tail()}"


def assert_stopped_cleanly(started: Started, *logs: Path) -> None:
    """A stop is not a crash: no traceback and no error in the script's output (or the other `logs`)."""
    for path in (started.log, *logs):
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        bad = [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line]
        assert not bad, f"{path.name} reports a failure on a normal stop: {bad[:5]}\n{started.tail()}"


def user_environment() -> dict[str, str]:
    """This environment as a new user's shell would have it: no PENSIEVE_* settings, no active venv, CI=true."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PENSIEVE_")}
    venvs = {str(REPO / ".venv" / "bin")}
    if "VIRTUAL_ENV" in env:
        venvs.add(str(Path(env.pop("VIRTUAL_ENV")) / "bin"))
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part not in venvs)
    env["CI"] = "true"
    return env


def start(clone: Path, script: str, *args: str) -> Started:
    """Run `./<script> args` in the clone as a user would, in a new session (its own process group)."""
    log = clone.parent / f"{script}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            [f"./{script}", *args],
            cwd=clone,
            env=user_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Started(script, process, log)


def assert_chat_answers(port: int, started: Started) -> None:
    """One short chat through the official SDK must come back with text."""
    client = make_client(f"http://127.0.0.1:{port}", timeout=120.0)
    try:
        answer = client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
        )
    except openai.OpenAIError as exc:
        pytest.fail(f"the chat through {started.script} failed: {exc!r}\n{started.tail()}")
    finally:
        client.close()
    assert (answer.choices[0].message.content or "").strip(), f"empty answer: {answer}\n{started.tail()}"


def assert_ui_answers(port: int, started: Started) -> None:
    """The Streamlit UI serves its page and its health check says "ok"."""
    started.wait_for(f"http://127.0.0.1:{port}/_stcore/health", START_TIMEOUT, body="ok")
    started.wait_for(f"http://127.0.0.1:{port}/", START_TIMEOUT)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean clone of the committed repository (what CI and a new user have); set up by the first test."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    folder = tmp_path_factory.mktemp("fresh") / "pensieve"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(folder)], check=True)
    yield folder
    for process in processes_of(folder):  # never leave a server running after a failed test
        os.kill(process.pid, signal.SIGKILL)


@pytest.fixture
def set_up_clone(clone: Path) -> Path:
    """The clone after run_app.sh's first set-up (the test of run_app.sh, earlier in this module, does it)."""
    if not (clone / ".venv" / "bin" / "python").exists():
        pytest.skip("the clone is not set up: run this whole module (run_app.sh's test sets it up)")
    return clone


def test_run_app_sets_up_a_fresh_clone_and_stops_on_ctrl_c(clone: Path) -> None:
    api, ui = free_port(), free_port()
    app = start(clone, "run_app.sh", "--port", str(api), "--ui-port", str(ui))
    app.wait_for(f"http://127.0.0.1:{api}/ready", FIRST_START_TIMEOUT)
    assert "Self-test passed with llama.cpp build" in app.output(), app.tail()
    assert_chat_answers(api, app)
    assert_ui_answers(ui, app)
    # The scan must see what it is meant to catch: Streamlit and the model worker, both children here.
    running = "\n".join(process.description for process in processes_of(clone))
    assert "-m streamlit run" in running and "multiprocessing.spawn" in running, running
    app.stop("ctrl-c")
    assert_nothing_left(clone, app)
    assert_stopped_cleanly(app, clone / "logs" / "ui.log")


def test_run_local_api_and_run_streamlit_start_and_stop_alone(set_up_clone: Path) -> None:
    api, ui = free_port(), free_port()
    server = start(set_up_clone, "run_local_api.sh", "--port", str(api))
    server.wait_for(f"http://127.0.0.1:{api}/ready", START_TIMEOUT)
    # A second start installs and self-tests nothing again.
    assert "Dependencies are up to date" in server.output(), server.tail()
    assert "self-test passed at set-up" in server.output(), server.tail()
    streamlit = start(set_up_clone, "run_streamlit.sh", "--port", str(ui), "--server-url", f"http://127.0.0.1:{api}")
    assert_ui_answers(ui, streamlit)
    streamlit.stop("ctrl-c")
    assert_nothing_left(set_up_clone, streamlit, still_running=server)
    assert_chat_answers(api, server)  # stopping the UI left the server alone
    server.stop("ctrl-c")
    assert_nothing_left(set_up_clone, server)
    assert_stopped_cleanly(server)
    assert_stopped_cleanly(streamlit)


def test_quick_start_starts_the_set_up_clone_and_stops_on_sigterm(set_up_clone: Path) -> None:
    api, ui = free_port(), free_port()
    quick = start(set_up_clone, "quick_start.sh", "--port", str(api), "--ui-port", str(ui))
    quick.wait_for(f"http://127.0.0.1:{api}/ready", START_TIMEOUT)
    assert_ui_answers(ui, quick)
    assert_chat_answers(api, quick)
    # A service manager's stop (systemctl stop, docker stop, kill PID) reaches only `pensieve up`:
    # it must stop the UI and the worker itself.
    quick.stop("sigterm")
    assert_nothing_left(set_up_clone, quick)
    assert_stopped_cleanly(quick, set_up_clone / "logs" / "ui.log")
