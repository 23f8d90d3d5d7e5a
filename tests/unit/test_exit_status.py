"""Exit statuses in plain words: POSIX signals (negative codes), Windows crash statuses, ordinary exits."""

from __future__ import annotations

import signal

import pytest

from pensieve.diagnostics.exit_status import DOCTOR_HINT, describe_exit, died_by_signal, signal_name

STATUS_ILLEGAL_INSTRUCTION = 0xC000001D


def test_sigill_is_named_with_its_cause_and_the_doctor_hint() -> None:
    text = describe_exit(-signal.SIGILL)
    assert text.startswith("killed by SIGILL (illegal instruction: ")
    assert "CPU instructions this machine will not run" in text and DOCTOR_HINT in text
    assert signal_name(-4) == "SIGILL" and died_by_signal(-4)


@pytest.mark.parametrize(
    ("code", "name", "words"),
    [
        (-signal.SIGKILL, "SIGKILL", "out-of-memory"),
        (-signal.SIGSEGV, "SIGSEGV", "segmentation fault"),
        (-signal.SIGABRT, "SIGABRT", "aborted"),
        (-signal.SIGBUS, "SIGBUS", "bus error"),
        (-signal.SIGFPE, "SIGFPE", "arithmetic fault"),
        (-signal.SIGTERM, "SIGTERM", "terminated"),
    ],
)
def test_each_signal_with_a_known_cause_says_it(code: int, name: str, words: str) -> None:
    assert signal_name(code) == name
    assert describe_exit(code).startswith(f"killed by {name} (") and words in describe_exit(code)


def test_a_signal_without_a_known_cause_is_named_only() -> None:
    assert describe_exit(-signal.SIGUSR1) == "killed by SIGUSR1"
    assert describe_exit(-200) == "killed by signal 200"  # no such signal: still said to be one


@pytest.mark.parametrize("code", [STATUS_ILLEGAL_INSTRUCTION, STATUS_ILLEGAL_INSTRUCTION - 2**32])
def test_windows_illegal_instruction_status_reads_as_sigill(code: int) -> None:
    """Windows reports the crash as NTSTATUS 0xC000001D, unsigned or as a negative int32."""
    assert signal_name(code) == "SIGILL"
    assert describe_exit(code).startswith("killed by SIGILL (illegal instruction")


def test_other_windows_crash_statuses() -> None:
    assert signal_name(0xC0000005) == "SIGSEGV"  # access violation
    assert signal_name(0xC0000409) == "SIGABRT"


@pytest.mark.parametrize("code", [0, 1, 3, 132, 137, 255])
def test_an_exit_code_is_not_a_signal(code: int) -> None:
    """128 + N is a shell's way of saying signal N; a program may exit with it on purpose, so it stays a code."""
    assert signal_name(code) is None and not died_by_signal(code)
    assert describe_exit(code) == f"exit code {code}"


def test_no_exit_status_yet() -> None:
    assert signal_name(None) is None and not died_by_signal(None)
    assert describe_exit(None) == "still running or not started"
