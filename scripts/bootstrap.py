"""Set up Pensieve in this checkout, fast and idempotently; the run_*.sh / run_*.bat scripts call it.

Steps: create `.venv` (upgrading its pip once); compile llama-cpp-python with CPU flags chosen for this
machine (scripts/llama_build.py) and install it; install the other pinned dependencies with
`pip install -e .`; copy `.env.example` to `.env` when missing; create the runtime folders; install the
default model; self-test the llama.cpp build in a child process, falling back to safer builds when it
crashes. A stamp in `.venv` records what was installed and which build passed, so later runs skip it all
while pyproject.toml, the extras and the CPU are unchanged.
With `--test` it then runs ruff, ruff format, mypy and pytest (arguments after `--` go to pytest).

Standard library only, and it must keep running on Python 3.10: it runs before any dependency exists
(it imports the standard-library-only modules of src/pensieve/diagnostics by path). The plain steps
(.venv, .env, folders, the model, the checks) are in setup_steps.py, the llama.cpp builds in
llama_build.py; this module decides what to install and keeps the stamp.

    python scripts/bootstrap.py [--extras dev] [--no-model] [--no-install] [--test] [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# llama_build puts src/ on sys.path: the diagnostics modules are standard-library only and shared with
# the server (`pensieve doctor`), so the set-up and the server describe a CPU and a crash alike.
import llama_build
from setup_steps import (
    MIN_PYTHON,
    ROOT,
    RUN_APP,
    VENV,
    SetupError,
    ensure_env_file,
    ensure_model,
    ensure_runtime_dirs,
    ensure_venv,
    run,
    run_checks,
    say,
    sha256_file,
    venv_bin,
    warn,
)

from pensieve.diagnostics.cpu_features import BuildCandidate
from pensieve.diagnostics.self_test import run_self_test

STAMP = VENV / "pensieve-setup.json"
# 2: the stamp records the llama.cpp build and its self-test (a format-1 .venv holds a -march=native build).
STAMP_FORMAT = 2

PIP_HINTS = {
    "Linux": "Linux: install a C/C++ compiler and CMake, e.g. `sudo apt-get install build-essential cmake` "
    "(Fedora: `sudo dnf install gcc-c++ cmake`).",
    "Darwin": "macOS: install Apple's command line tools with `xcode-select --install`.",
    "Windows": 'Windows: install "Visual Studio Build Tools" with the "Desktop development with C++" workload '
    "(https://visualstudio.microsoft.com/visual-cpp-build-tools/), then open a new terminal.",
}


# --- Dependencies ---------------------------------------------------------------------------------


def read_stamp() -> dict[str, object]:
    try:
        stamp = json.loads(STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def stamp_extras(stamp: dict[str, object]) -> set[str]:
    extras = stamp.get("extras")
    return {str(item) for item in extras} if isinstance(extras, list) else set()


def stamp_is_current(stamp: dict[str, object], pyproject_hash: str) -> bool:
    """Whether the last successful install was of this pyproject.toml, in this folder."""
    expected = {"format": STAMP_FORMAT, "pyproject": pyproject_hash, "root": str(ROOT)}
    return all(stamp.get(key) == value for key, value in expected.items())


def pinned_version(distribution: str) -> str | None:
    """The version pinned in pyproject.toml (`name==version`), read without tomllib (absent on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(rf"[\"']{re.escape(distribution)}==([^\"';\s]+)", text)
    return match.group(1) if match else None


def no_deps_pins() -> list[str]:
    """`[tool.pensieve] dev-no-deps` of pyproject.toml: dev-only libraries installed without resolving their
    declared dependencies (their pins conflict with ours although they run on them)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r"^dev-no-deps\s*=\s*\[(.*?)\]", text, re.S | re.M)
    return re.findall(r"[\"']([^\"']+)[\"']", match.group(1)) if match else []


def installed_version(distribution: str) -> str | None:
    """The version of a distribution installed in `.venv`, or None."""
    probe = (
        "import importlib.metadata as m, sys\n"
        "try:\n"
        f"    print(m.version({distribution!r}))\n"
        "except m.PackageNotFoundError:\n"
        "    sys.exit(1)\n"
    )
    result = subprocess.run(
        [str(venv_bin("python")), "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def print_pip_hints() -> None:
    system = platform.system()
    print("\nInstalling the dependencies failed. The first error in pip's output above says why.", file=sys.stderr)
    print(
        "Most often it is llama-cpp-python, which pip compiles from source and so needs a build toolchain:",
        file=sys.stderr,
    )
    ordered = [PIP_HINTS[system]] if system in PIP_HINTS else []
    ordered += [hint for key, hint in PIP_HINTS.items() if key != system]
    for hint in ordered:
        print(f"  - {hint}", file=sys.stderr)
    print(
        "  - Other causes: no network access to PyPI (check proxy settings), or a broken .venv "
        f"(delete the .venv folder and run {RUN_APP} again).",
        file=sys.stderr,
        flush=True,
    )


def write_stamp(stamp: dict[str, object]) -> None:
    STAMP.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def llama_pin() -> str:
    pin = pinned_version(llama_build.DISTRIBUTION)
    if pin is None:
        raise SetupError("pyproject.toml does not pin llama-cpp-python (name==version).")
    return pin


def install_llama_build(candidate: BuildCandidate, pin: str) -> None:
    """Install the cached wheel of this build into .venv, compiling it first when it is not cached."""
    wheel = llama_build.cached_wheel(pin, candidate)
    if wheel is None:
        say(
            f"Compiling llama-cpp-python {pin} for this CPU ({candidate.name}). The first time on a machine this "
            "takes about 5 minutes on 2 cores (longer on slower machines) and shows no progress; please wait. "
            f"The wheel is cached in {llama_build.cache_root()}, so later set-ups take seconds."
        )
        wheel = llama_build.build_wheel(venv_bin("python"), pin, candidate)
    say(f"Installing llama-cpp-python {pin}, build {candidate.name}")
    llama_build.install_wheel(venv_bin("python"), wheel)


def install_first_buildable(plan: llama_build.BuildPlan, pin: str) -> dict[str, object]:
    """Install the best candidate that compiles (an old compiler may not know the newest instructions)."""
    errors = []
    for candidate in plan.candidates:
        try:
            install_llama_build(candidate, pin)
        except llama_build.BuildError as exc:
            errors.append(str(exc))
            warn(f"{exc}\nTrying the next, safer build.")
            continue
        return llama_build.build_record(pin, candidate, plan.cpu)
    print_pip_hints()
    raise SetupError("no llama-cpp-python build could be compiled here:\n" + "\n".join(errors))


def ensure_dependencies(requested: set[str], plan: llama_build.BuildPlan) -> None:
    """Install llama-cpp-python's build for this CPU, then `pip install -e .[extras]`.

    Skipped when the stamp shows the same pyproject.toml, at least these extras, and a llama.cpp build
    chosen for this CPU.
    """
    pyproject_hash = sha256_file(ROOT / "pyproject.toml")
    stamp = read_stamp()
    current = stamp_is_current(stamp, pyproject_hash)
    installed_extras = stamp_extras(stamp) if current else set()
    pin = llama_pin()
    # The build stays valid across other edits of pyproject.toml: only its pin, the CPU or the flags matter.
    position = llama_build.recorded_position(stamp.get("llama"), pin, plan)
    if position is not None and installed_version(llama_build.DISTRIBUTION) != pin:
        position = None  # someone reinstalled it by hand
    if current and requested <= installed_extras and position is not None:
        say("Dependencies are up to date (pyproject.toml unchanged); skipping pip")
        return
    # Keep extras installed earlier (e.g. dev) in step with the pins too.
    extras = requested | stamp_extras(stamp)
    target = f".[{','.join(sorted(extras))}]" if extras else "."
    python = venv_bin("python")
    if run([python, "-m", "pip", "--version"], quiet=True) != 0:
        say("pip is missing from .venv; installing it")
        run([python, "-m", "ensurepip", "--upgrade"])
    STAMP.unlink(missing_ok=True)  # an interrupted install must not look finished
    record = stamp.get("llama") if position is not None else None
    if record is None:
        for note in plan.notes:
            say(note)
        record = install_first_buildable(plan, pin)
    say(f"Installing Pensieve and its pinned dependencies: pip install -e {target}")
    if run([python, "-m", "pip", "install", "-e", target]) != 0:
        print_pip_hints()
        raise SetupError("pip install failed (see above).")
    pins = no_deps_pins() if "dev" in extras else []
    if pins:
        say(f"Installing dev client libraries without their conflicting pins: pip install --no-deps {' '.join(pins)}")
        if run([python, "-m", "pip", "install", "--no-deps", *pins]) != 0:
            raise SetupError("pip install --no-deps failed (see above).")
    write_stamp(
        {
            "format": STAMP_FORMAT,
            "pyproject": pyproject_hash,
            "extras": sorted(extras),
            "root": str(ROOT),
            "python": platform.python_version(),
            "llama": record,
        }
    )


def ensure_llama_runs(plan: llama_build.BuildPlan, model: Path) -> None:
    """Self-test the installed llama.cpp build in a child process; on failure fall back to safer builds.

    The build that passed is recorded in the stamp, so later runs skip the test.
    """
    stamp = read_stamp()
    record = stamp.get("llama")
    pin = llama_pin()
    position = llama_build.recorded_position(record, pin, plan)
    if position is None or not isinstance(record, dict):
        raise SetupError(f"the set-up stamp lost track of the llama.cpp build; run {RUN_APP} again.")
    candidate = plan.candidates[position]
    if record.get("self_test") == "passed":
        say(f"llama.cpp build: {candidate.name} ({candidate.why}); self-test passed at set-up")
        return
    installed = [candidate.key]
    # After a run where no build passed, start from the best again: the user may have changed something.
    start = 0 if record.get("self_test") == "failed" else position
    say(f"Self-testing the llama.cpp build {plan.candidates[start].name} in a child process (load the model, generate)")

    def prepare(next_candidate: BuildCandidate) -> None:
        if next_candidate.key != installed[0]:
            install_llama_build(next_candidate, pin)
            installed[0] = next_candidate.key

    chosen, attempts = llama_build.choose_build(
        plan.candidates[start:],
        prepare=prepare,
        self_test=lambda: run_self_test(venv_bin("python"), model),
        say=say,
    )
    if chosen is None:
        stamp["llama"] = llama_build.build_record(pin, plan.candidates[-1], plan.cpu, "failed", attempts[-1].detail)
        write_stamp(stamp)
        raise SetupError(llama_build.describe_failure(attempts))
    stamp["llama"] = llama_build.build_record(pin, chosen, plan.cpu, "passed", attempts[-1].detail)
    write_stamp(stamp)
    say(f"llama.cpp build: {chosen.name} ({chosen.why})")


def check_installed(plan: llama_build.BuildPlan) -> None:
    """For quick start: the set-up must have finished once; warn when pyproject.toml or the CPU changed since,
    or when the llama.cpp build was never self-tested."""
    if not venv_bin("python").exists():
        raise SetupError(f"Pensieve is not set up yet: run {RUN_APP} first (it creates .venv and installs it).")
    stamp = read_stamp()
    if not stamp:
        raise SetupError(f"the last set-up did not finish: run {RUN_APP} to complete it.")
    if not stamp_is_current(stamp, sha256_file(ROOT / "pyproject.toml")):
        warn(f"pyproject.toml changed since the last set-up; run {RUN_APP} to update the dependencies.")
    record = stamp.get("llama")
    if llama_build.recorded_position(record, pinned_version(llama_build.DISTRIBUTION) or "", plan) is None:
        warn(f"the llama.cpp build was made for another CPU or version; run {RUN_APP} to rebuild it.")
    elif isinstance(record, dict) and record.get("self_test") != "passed":
        warn(f"the llama.cpp build has not passed its self-test here; run {RUN_APP} to test it.")


# --- Entry point ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Options before `--` are ours; everything after it goes to pytest."""
    argv = list(argv)
    rest: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, rest = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description="Set up Pensieve in this checkout (used by the run_* scripts).")
    parser.add_argument("--extras", default="", help="comma-separated extras to install too, e.g. dev")
    parser.add_argument("--no-model", action="store_true", help="do not install the default model")
    parser.add_argument(
        "--no-install", action="store_true", help="never create .venv or run pip; fail if set-up never ran"
    )
    parser.add_argument("--test", action="store_true", help="then run ruff, mypy and pytest (args after --)")
    return parser.parse_args(argv), rest


def main(argv: Sequence[str] | None = None) -> int:
    args, pytest_args = parse_args(sys.argv[1:] if argv is None else argv)
    if sys.version_info < MIN_PYTHON:
        print(f"error: Pensieve needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer.", file=sys.stderr)
        return 1
    extras = {item.strip() for item in args.extras.split(",") if item.strip()}
    try:
        plan = llama_build.plan_builds()
        if args.no_install:
            check_installed(plan)
        else:
            ensure_venv()
            ensure_dependencies(extras, plan)
        ensure_env_file()
        ensure_runtime_dirs()
        if not args.no_model:
            model = ensure_model()
            if not args.no_install:
                ensure_llama_runs(plan, model)
    except (SetupError, llama_build.BuildError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.test:
        try:
            return run_checks(pytest_args)
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
