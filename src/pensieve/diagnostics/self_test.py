"""Run the llama.cpp self-test in a child process and say plainly how it went.

The child (`python -m pensieve.engine.llamacpp.selftest`) loads the model and generates with several
threads. A child killed by a signal is the finding that matters (SIGILL: the build uses instructions
this CPU will not run), so the test always runs in its own process, never in the caller's.
Standard library only: the set-up script runs it before the server's dependencies are importable
in its own interpreter (it passes the virtual environment's Python).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pensieve.diagnostics.cpu_features import available_cores
from pensieve.diagnostics.exit_status import describe_exit, died_by_signal

SELF_TEST_MODULE = "pensieve.engine.llamacpp.selftest"
# A load and 16 tokens take seconds at most (bench/README.md); a slow disk or a loaded machine gets room.
SELF_TEST_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class SelfTestResult:
    """How the self-test child ended and what it reported."""

    ok: bool
    exit_code: int | None
    summary: str  # one line for people
    report: dict[str, object] = field(default_factory=dict)  # the child's JSON line, when it printed one
    output_tail: str = ""  # the last lines the child wrote, when it failed

    @property
    def crashed(self) -> bool:
        """True when the child died by a signal (SIGILL, SIGSEGV, ...)."""
        return died_by_signal(self.exit_code)


def default_threads() -> int:
    """Several threads, as the worker uses: every core, and at least two so worker threads run too."""
    return max(2, available_cores())


def self_test_command(python: str | Path, model: Path, threads: int) -> list[str]:
    """The child's command line."""
    return [str(python), "-m", SELF_TEST_MODULE, "--model", str(model), "--threads", str(threads)]


def run_self_test(
    python: str | Path,
    model: Path,
    *,
    threads: int | None = None,
    timeout: float = SELF_TEST_TIMEOUT_SECONDS,
    command: list[str] | None = None,
) -> SelfTestResult:
    """Run the self-test with `python` (the environment whose llama.cpp is tested) on `model`.

    `command` replaces the child's command line (tests use it to stand in a child that crashes).
    """
    argv = command or self_test_command(python, model, threads or default_threads())
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return SelfTestResult(False, None, f"the self-test did not finish within {timeout:.0f} s")
    except OSError as exc:
        return SelfTestResult(False, None, f"the self-test could not start: {exc}")
    report = _last_json_line(completed.stdout)
    tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
    code = completed.returncode
    if code == 0 and report.get("ok") is True:
        made, seconds = report.get("completion_tokens"), report.get("generate_seconds")
        threads_used = report.get("threads")
        return SelfTestResult(True, 0, f"generated {made} tokens on {threads_used} threads in {seconds} s", report)
    if died_by_signal(code):
        return SelfTestResult(False, code, f"the self-test process was {describe_exit(code)}", report, tail)
    error = report.get("error") or f"the self-test process ended with {describe_exit(code)}"
    return SelfTestResult(False, code, str(error), report, tail)


def _last_json_line(stdout: str) -> dict[str, object]:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}
