"""Build llama-cpp-python for the CPU it will run on, prove it runs, and fall back to safer builds.

Why this exists: pip compiles llama-cpp-python with `-march=native`, which uses every CPU feature the
machine *advertises*; some machines advertise features they will not execute (Xeon VMs listing AMX),
and that build dies by SIGILL on the first generation. Here each candidate of
`pensieve.diagnostics.cpu_features.build_candidates` (best first, each next one with fewer features)
is compiled with explicit CMake flags into a wheel cached outside the repository, installed into
`.venv`, and self-tested in a child process; the first that passes is kept and recorded in the set-up
stamp, so later runs skip all of this.

Wheels are cached under ~/.cache/pensieve/llama-wheels/<version>/<build>-<hash>/ (PENSIEVE_BUILD_CACHE
moves it) because pip's own wheel cache ignores CMAKE_ARGS: it would hand back a native build.

Standard library only (run by scripts/bootstrap.py before the dependencies exist).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Before the dependencies exist, the standard-library-only diagnostics modules come from the source tree.
_SOURCE = str(Path(__file__).resolve().parent.parent / "src")
if _SOURCE not in sys.path:
    sys.path.insert(0, _SOURCE)

from pensieve.diagnostics.cpu_features import (  # noqa: E402
    BuildCandidate,
    build_candidates,
    cpu_flags,
    cpu_model_name,
    fingerprint,
    forced_candidate,
    is_x86,
    machine,
    probe_amx,
)
from pensieve.diagnostics.self_test import SelfTestResult  # noqa: E402

DISTRIBUTION = "llama-cpp-python"


class BuildError(Exception):
    """A candidate could not be compiled or installed; the message says which and where the log is."""


@dataclass(frozen=True)
class Attempt:
    """One candidate tried: what happened to it."""

    candidate: BuildCandidate
    ok: bool
    detail: str


@dataclass(frozen=True)
class BuildPlan:
    """The builds to try here, best first, with what was found out to choose them."""

    candidates: list[BuildCandidate]
    cpu: str  # fingerprint of the CPU's features: a stamp made on another CPU is not trusted
    notes: list[str]


def plan_builds(environ: dict[str, str] | None = None) -> BuildPlan:
    """The candidates for this machine: the user's forced CMake args alone, else chosen from the CPU."""
    flags = cpu_flags()
    cpu = fingerprint(flags)
    notes = [f"CPU: {cpu_model_name()} ({machine()})"]
    forced = forced_candidate(environ)
    if forced is not None:
        notes.append(f"llama.cpp build forced: {forced.why} = {forced.cmake_args_text}")
        return BuildPlan([forced], cpu, notes)
    amx = False
    if is_x86() and flags and "amx_tile" in flags:
        amx, why = probe_amx(flags)
        notes.append(f"AMX: {'on' if amx else 'off'} ({why})")
    candidates = build_candidates(flags, amx_proven=amx)
    notes.append("llama.cpp builds to try, best first: " + " -> ".join(c.name for c in candidates))
    return BuildPlan(candidates, cpu, notes)


def build_record(
    version: str, candidate: BuildCandidate, cpu: str, self_test: str | None = None, summary: str = ""
) -> dict[str, object]:
    """What the set-up stamp keeps about the installed build ("self_test": None, "passed" or "failed")."""
    return {
        "version": version,
        "key": candidate.key,
        "name": candidate.name,
        "cmake_args": list(candidate.cmake_args),
        "cpu": cpu,
        "self_test": self_test,
        "self_test_summary": summary,
    }


def recorded_position(record: object, version: str, plan: BuildPlan) -> int | None:
    """Where the stamp's installed build sits in the plan (None: rebuild; another version, CPU or flags)."""
    if not isinstance(record, dict) or record.get("version") != version or record.get("cpu") != plan.cpu:
        return None
    for position, candidate in enumerate(plan.candidates):
        if record.get("key") == candidate.key and record.get("cmake_args") == list(candidate.cmake_args):
            return position
    return None


def cache_root(environ: dict[str, str] | None = None) -> Path:
    """Where built wheels are kept: PENSIEVE_BUILD_CACHE, else the platform's user cache folder."""
    env = os.environ if environ is None else environ
    if env.get("PENSIEVE_BUILD_CACHE"):
        return Path(env["PENSIEVE_BUILD_CACHE"]).expanduser()
    if os.name == "nt":
        return Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "pensieve" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "pensieve"
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pensieve"


def wheel_dir(version: str, candidate: BuildCandidate, root: Path | None = None) -> Path:
    """The cache folder of one build: the version, the candidate and a hash of its flags and platform."""
    identity = "\n".join([*candidate.cmake_args, platform.system(), platform.machine()])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return (root or cache_root()) / "llama-wheels" / version / f"{candidate.key}-{digest}"


def cached_wheel(version: str, candidate: BuildCandidate, root: Path | None = None) -> Path | None:
    """The cached wheel of this build, if one was built before."""
    folder = wheel_dir(version, candidate, root)
    wheels = sorted(folder.glob("llama_cpp_python-*.whl")) if folder.is_dir() else []
    return wheels[-1] if wheels else None


def build_wheel(python: Path, version: str, candidate: BuildCandidate, root: Path | None = None) -> Path:
    """Compile llama-cpp-python `version` with the candidate's CMake args into the cache; the wheel's path.

    `--no-cache-dir` makes pip compile (its wheel cache would return an earlier build whatever the
    flags); the output is moved into place only once complete, so an interrupted build leaves nothing.
    """
    target = wheel_dir(version, candidate, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CMAKE_ARGS"] = candidate.cmake_args_text
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    log = target.parent / f"{candidate.key}-build.log"
    with tempfile.TemporaryDirectory(prefix="build-", dir=target.parent) as scratch:
        command = [
            str(python), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
            "--no-binary", DISTRIBUTION, f"{DISTRIBUTION}=={version}", "-w", scratch,
        ]  # fmt: skip
        with log.open("w", encoding="utf-8") as output:
            status = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=env, check=False).returncode
        built = sorted(Path(scratch).glob("llama_cpp_python-*.whl"))
        if status != 0 or not built:
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
            raise BuildError(f"compiling llama-cpp-python ({candidate.name}) failed; its log: {log}\n{tail}")
        shutil.rmtree(target, ignore_errors=True)
        staged = Path(scratch) / "done"
        staged.mkdir()
        shutil.move(str(built[0]), staged / built[0].name)
        staged.rename(target)
    return target / built[0].name


def install_wheel(python: Path, wheel: Path) -> None:
    """Install a built wheel into the environment of `python`, replacing whatever build was there."""
    command = [str(python), "-m", "pip", "install", "--force-reinstall", "--no-deps", "--quiet", str(wheel)]
    if subprocess.run(command, check=False).returncode != 0:
        raise BuildError(f"installing {wheel.name} failed (see pip's output above)")


def choose_build(
    candidates: Sequence[BuildCandidate],
    *,
    prepare: Callable[[BuildCandidate], None],
    self_test: Callable[[], SelfTestResult],
    say: Callable[[str], None],
) -> tuple[BuildCandidate | None, list[Attempt]]:
    """Try candidates in order: `prepare` (build if needed, install) then `self_test`; the first that passes.

    Returns (None, attempts) when none passed. A candidate that fails to compile counts as failed too:
    an old compiler may not know the newest instruction sets.
    """
    attempts: list[Attempt] = []
    for position, candidate in enumerate(candidates):
        if position:
            say(f"Trying the next, safer llama.cpp build: {candidate.name} ({candidate.why})")
        try:
            prepare(candidate)
        except BuildError as exc:
            attempts.append(Attempt(candidate, False, str(exc).splitlines()[0]))
            say(f"llama.cpp build {candidate.name} could not be built: {exc}")
            continue
        result = self_test()
        attempts.append(Attempt(candidate, result.ok, result.summary))
        if result.ok:
            say(f"Self-test passed with llama.cpp build {candidate.name}: {result.summary}")
            return candidate, attempts
        say(f"Self-test FAILED with llama.cpp build {candidate.name}: {result.summary}")
        if result.output_tail:
            print(_indent(result.output_tail), flush=True)
    return None, attempts


def describe_failure(attempts: Sequence[Attempt]) -> str:
    """The error shown when no build runs here: each attempt and what the user can do."""
    lines = ["no llama.cpp build runs on this machine. Tried:"]
    lines += [
        f"  - {a.candidate.name} [{a.candidate.cmake_args_text or 'default flags'}]: {a.detail}" for a in attempts
    ]
    lines += [
        "Force a build of your own with PENSIEVE_LLAMA_CMAKE_ARGS (for example",
        '  PENSIEVE_LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF'
        ' -DGGML_F16C=OFF -DGGML_BMI2=OFF")',
        "and run the set-up again; `pensieve doctor` describes this CPU and the installed build.",
    ]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join(f"      | {line}" for line in text.splitlines())
