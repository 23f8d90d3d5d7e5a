"""What a child process's exit status means, in plain words: the signal's name and its likely cause.

A model worker or a self-test that dies by a signal has no chance to report anything itself; its
exit status is all there is. `describe_exit` turns it into one sentence for logs, `/ready`, `/api/ps`,
the UI and the error a request gets. Standard library only (the set-up script loads this file by path).
"""

from __future__ import annotations

import signal

DOCTOR_HINT = "run `pensieve doctor`"

# Why a process dies by each signal, when the cause is nearly always the same. SIGILL is the one users
# meet after installing: llama.cpp compiled for CPU features (AMX, AVX-512) that the machine advertises
# or lacks but will not execute.
_CAUSES = {
    "SIGILL": (
        "illegal instruction: this llama.cpp build uses CPU instructions this machine will not run; "
        f"{DOCTOR_HINT}, then rebuild it with the set-up script (it picks a safe CPU feature set)"
    ),
    "SIGSEGV": f"segmentation fault: llama.cpp crashed (a corrupt model file or a bug); {DOCTOR_HINT}",
    "SIGBUS": (
        "bus error: the model file could not be read from memory (it changed, shrank or its disk failed "
        f"while mapped); {DOCTOR_HINT}"
    ),
    "SIGFPE": f"arithmetic fault inside llama.cpp; {DOCTOR_HINT}",
    "SIGABRT": f"llama.cpp aborted (an internal check failed; the server log has its message); {DOCTOR_HINT}",
    "SIGKILL": (
        "killed: most often the system ran out of memory and its out-of-memory killer ended the process "
        "(check `dmesg` or the system journal), or someone killed it"
    ),
    "SIGTERM": "terminated by a signal from outside (a service manager or a user)",
}

# Windows reports a crash as an NTSTATUS exit code, not a signal.
_WINDOWS_STATUSES = {
    0xC000001D: "SIGILL",  # STATUS_ILLEGAL_INSTRUCTION
    0xC0000096: "SIGILL",  # STATUS_PRIVILEGED_INSTRUCTION
    0xC0000005: "SIGSEGV",  # STATUS_ACCESS_VIOLATION
    0xC00000FD: "SIGSEGV",  # STATUS_STACK_OVERFLOW
    0xC0000094: "SIGFPE",  # STATUS_INTEGER_DIVIDE_BY_ZERO
    0xC0000409: "SIGABRT",  # STATUS_STACK_BUFFER_OVERRUN (also how abort() ends on recent CRTs)
}


def signal_name(exit_code: int | None) -> str | None:
    """The name of the signal that ended a process ("SIGILL"), or None when it exited by itself.

    POSIX reports death by signal N as -N (subprocess, multiprocessing) or as 128 + N (a shell's `$?`);
    only the negative form is read here, since a program may exit with 132 on purpose. Windows NTSTATUS
    crash codes map to the POSIX signal of the same kind.
    """
    if exit_code is None:
        return None
    if exit_code < 0:
        if exit_code & 0xFFFFFFFF in _WINDOWS_STATUSES:  # a negative int32 NTSTATUS
            return _WINDOWS_STATUSES[exit_code & 0xFFFFFFFF]
        try:
            return signal.Signals(-exit_code).name
        except ValueError:
            return f"signal {-exit_code}"
    return _WINDOWS_STATUSES.get(exit_code)


def describe_exit(exit_code: int | None) -> str:
    """One phrase on how a process ended: "killed by SIGILL (illegal instruction: ...)" or "exit code 3"."""
    if exit_code is None:
        return "still running or not started"
    name = signal_name(exit_code)
    if name is None:
        return f"exit code {exit_code}"
    cause = _CAUSES.get(name)
    return f"killed by {name} ({cause})" if cause else f"killed by {name}"


def died_by_signal(exit_code: int | None) -> bool:
    """True when the process was ended by a signal (or a Windows crash status) rather than exiting."""
    return signal_name(exit_code) is not None
