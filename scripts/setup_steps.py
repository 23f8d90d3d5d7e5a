"""The set-up's plain steps, shared by `bootstrap.py`: output, commands, `.venv`, `.env`, folders, the model,
and the checks `run_tests` runs. Standard library only, Python 3.10+ (it runs before any dependency).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

MIN_PYTHON = (3, 10)
# Newest Python whose wheels every pinned dependency publishes; newer ones make pip compile (e.g. numpy).
NEWEST_TESTED_PYTHON = (3, 13)
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
RUNTIME_DIRS = ("models", "data/uploads", "logs")
WINDOWS = os.name == "nt"
RUN_APP = "run_app.bat" if WINDOWS else "./run_app.sh"


class SetupError(Exception):
    """Set-up cannot go on; the message tells the user what to do."""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def venv_bin(name: str) -> Path:
    """An executable inside `.venv` (`Scripts\\name.exe` on Windows, `bin/name` elsewhere)."""
    return VENV / "Scripts" / f"{name}.exe" if WINDOWS else VENV / "bin" / name


def run(command: Sequence[str | Path], *, quiet: bool = False) -> int:
    """Run a command in the repository root and return its exit status."""
    output = subprocess.DEVNULL if quiet else None
    return subprocess.run([str(part) for part in command], cwd=ROOT, stdout=output, stderr=output).returncode


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Virtual environment ------------------------------------------------------------------------


def ensure_venv() -> None:
    """Create `.venv` with this interpreter, replacing one whose Python no longer exists."""
    python = venv_bin("python")
    if python.exists():
        return
    if VENV.exists():
        # Typically the interpreter it was made from has been upgraded or removed.
        warn(f"{VENV} exists but has no working Python; recreating it.")
        shutil.rmtree(VENV)
    version = ".".join(str(part) for part in sys.version_info[:3])
    say(f"Creating the virtual environment .venv with Python {version} ({sys.executable})")
    if sys.version_info[:2] > NEWEST_TESTED_PYTHON:
        warn(
            f"Python {version} is newer than the versions Pensieve is tested on (3.10 to 3.13); some pinned "
            "packages (numpy) have no wheel for it and must be compiled. If installing fails, install Python "
            "3.12, delete .venv and run this again."
        )
    if run([sys.executable, "-m", "venv", VENV]) != 0 or not python.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        raise SetupError(
            "could not create the virtual environment .venv. On Debian/Ubuntu install the venv module: "
            f"`sudo apt-get install python3-venv` (or python{sys.version_info[0]}.{sys.version_info[1]}-venv)."
        )
    say("Upgrading pip inside .venv")
    if run([python, "-m", "pip", "install", "--upgrade", "pip"]) != 0:
        warn("could not upgrade pip; going on with the version that came with Python.")


# --- Files, folders and the model ------------------------------------------------------------------


def ensure_env_file() -> None:
    env, example = ROOT / ".env", ROOT / ".env.example"
    if env.exists():
        return
    if not example.exists():
        warn(".env.example is missing; not creating .env (the built-in defaults apply).")
        return
    shutil.copyfile(example, env)
    say("Created .env from .env.example; edit it to change the settings")


def ensure_runtime_dirs() -> None:
    for name in RUNTIME_DIRS:
        (ROOT / name).mkdir(parents=True, exist_ok=True)


def ensure_model() -> Path:
    """Install the default model (instant when present and verified); its path."""
    say("Checking the default model (assembled and verified on the first run)")
    command: list[str] = [str(venv_bin("python")), "-m", "pensieve", "models", "install-default"]
    if not sys.stderr.isatty():
        command.append("--quiet")  # no progress bar in CI logs
    # stdout is read for the path it prints last ("Default model ready: <path>"); progress goes to stderr.
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    print(result.stdout, end="", flush=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines or ": " not in lines[-1]:
        raise SetupError(
            f"installing the default model failed (see above). Try: {RUN_APP} again, or "
            "`python -m pensieve models install-default --force` inside .venv."
        )
    return Path(lines[-1].split(": ", 1)[1].strip())


# --- Checks (run_tests) ---------------------------------------------------------------------------


def run_checks(pytest_args: Sequence[str]) -> int:
    """ruff check, ruff format --check, mypy, pytest: all of them run; non-zero if any failed."""
    steps: list[tuple[str, list[str | Path]]] = [
        ("ruff check .", [venv_bin("ruff"), "check", "."]),
        ("ruff format --check .", [venv_bin("ruff"), "format", "--check", "."]),
        ("mypy", [venv_bin("mypy")]),
        (" ".join(["pytest", *pytest_args]), [venv_bin("pytest"), *pytest_args]),
    ]
    results: list[tuple[str, int]] = []
    for number, (title, command) in enumerate(steps, start=1):
        print(flush=True)
        say(f"[{number}/{len(steps)}] {title}")
        status = run(command)
        if status == 5 and title.startswith("pytest"):
            warn("pytest collected no tests (exit status 5).")
        results.append((title, status))
    print(flush=True)
    say("Summary")
    for title, status in results:
        print(f"    {'ok' if status == 0 else f'FAILED (exit {status})':<16} {title}", flush=True)
    failed = [title for title, status in results if status != 0]
    if failed:
        print(f"\n{len(failed)} of {len(results)} checks failed.", file=sys.stderr, flush=True)
        return 1
    print("\nAll checks passed.", flush=True)
    return 0
