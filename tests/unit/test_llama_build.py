"""The set-up's build choice: a build whose self-test dies by a signal is replaced by the next safer one.

The self-test children here are real processes: one kills itself with SIGILL, as a llama.cpp build
compiled for instructions the CPU will not run does; another prints the report of a passing test.
Compiling is replaced by a recorder (a real build takes minutes; the set-up's own run proves it).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import bootstrap  # noqa: E402
import llama_build  # noqa: E402
from test_cpu_features import SAPPHIRE_RAPIDS  # noqa: E402  (a CPU like issue 12's: AMX listed)

from pensieve.diagnostics.cpu_features import BuildCandidate, build_candidates  # noqa: E402
from pensieve.diagnostics.self_test import SelfTestResult, run_self_test  # noqa: E402

PASSING_REPORT = {"ok": True, "completion_tokens": 16, "threads": 2, "generate_seconds": 0.4, "system_info": "x"}
DIE_BY_SIGILL = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
PASS = [sys.executable, "-c", f"print({json.dumps(json.dumps(PASSING_REPORT))})"]


def fake_self_test(installed: list[str], crashing: set[str]) -> SelfTestResult:
    """The real runner on a real child: SIGILL when the installed build is one of `crashing`."""
    command = DIE_BY_SIGILL if installed[-1] in crashing else PASS
    return run_self_test(sys.executable, Path("unused.gguf"), command=command)


def test_self_test_runner_names_the_signal() -> None:
    result = run_self_test(sys.executable, Path("unused.gguf"), command=DIE_BY_SIGILL)
    assert not result.ok and result.crashed and result.exit_code == -signal.SIGILL
    assert "SIGILL" in result.summary and "illegal instruction" in result.summary
    assert "pensieve doctor" in result.summary


def test_choose_build_falls_back_past_a_crashing_build() -> None:
    candidates = build_candidates(SAPPHIRE_RAPIDS, arch="x86_64", amx_proven=True)
    installed: list[str] = []
    said: list[str] = []
    chosen, attempts = llama_build.choose_build(
        candidates,
        prepare=lambda c: installed.append(c.key),
        self_test=lambda: fake_self_test(installed, {"avx-512-amx"}),
        say=said.append,
    )
    assert chosen is not None and chosen.key == "avx-512"
    assert installed == ["avx-512-amx", "avx-512"]
    assert [a.ok for a in attempts] == [False, True]
    assert "SIGILL" in attempts[0].detail
    assert any("FAILED with llama.cpp build AVX-512 + AMX" in line and "SIGILL" in line for line in said)
    assert any("next, safer llama.cpp build: AVX-512" in line for line in said)


def test_a_build_that_does_not_compile_counts_as_failed() -> None:
    candidates = build_candidates(SAPPHIRE_RAPIDS, arch="x86_64")

    def prepare(candidate: BuildCandidate) -> None:
        if candidate.key == "avx-512":
            raise llama_build.BuildError("compiling llama-cpp-python (AVX-512) failed; its log: x.log")

    chosen, attempts = llama_build.choose_build(
        candidates, prepare=prepare, self_test=lambda: fake_self_test(["avx2"], set()), say=lambda _: None
    )
    assert chosen is not None and chosen.key == "avx2"
    assert not attempts[0].ok and "x.log" in attempts[0].detail


@dataclass
class SetUp:
    """bootstrap.py with its stamp in a temporary folder, on a CPU like issue 12's (AMX listed)."""

    plan: llama_build.BuildPlan
    installed: list[str] = field(default_factory=list)  # builds installed, in order; the last is current
    tested: list[str] = field(default_factory=list)  # the build each self-test ran on


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SetUp:
    """The best build installed and untested, as `ensure_dependencies` leaves it; installs are recorded."""
    monkeypatch.setattr(bootstrap, "STAMP", tmp_path / "pensieve-setup.json")
    plan = llama_build.BuildPlan(build_candidates(SAPPHIRE_RAPIDS, arch="x86_64", amx_proven=True), "cpu1", [])
    state = SetUp(plan, installed=[plan.candidates[0].key])
    monkeypatch.setattr(bootstrap, "install_llama_build", lambda c, _pin: state.installed.append(c.key))
    first = llama_build.build_record(bootstrap.llama_pin(), plan.candidates[0], plan.cpu)
    bootstrap.write_stamp({"format": bootstrap.STAMP_FORMAT, "llama": first})
    return state


def crashing_on(state: SetUp, crashing: set[str]) -> Callable[[object, Path], SelfTestResult]:
    """A stand-in for bootstrap's run_self_test: a real child that dies by SIGILL on the `crashing` builds."""

    def self_test(_python: object, _model: Path) -> SelfTestResult:
        state.tested.append(state.installed[-1])
        return fake_self_test(state.installed, crashing)

    return self_test


def test_setup_records_the_build_that_passed_and_skips_the_test_next_time(
    setup: SetUp, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bootstrap, "run_self_test", crashing_on(setup, {"avx-512-amx", "avx-512"}))
    bootstrap.ensure_llama_runs(setup.plan, Path("model.gguf"))
    record = bootstrap.read_stamp()["llama"]
    assert isinstance(record, dict)
    assert record["key"] == "avx2" and record["self_test"] == "passed"
    assert record["cmake_args"] == list(setup.plan.candidates[2].cmake_args)
    assert setup.tested == ["avx-512-amx", "avx-512", "avx2"]
    assert setup.installed == ["avx-512-amx", "avx-512", "avx2"]
    out = capsys.readouterr().out
    assert "Self-test FAILED with llama.cpp build AVX-512 + AMX" in out and "SIGILL" in out
    assert "llama.cpp build: AVX2 (without AVX-512 (AVX2 family only))" in out

    bootstrap.ensure_llama_runs(setup.plan, Path("model.gguf"))  # the stamp says it passed: no test, no build
    assert setup.tested == ["avx-512-amx", "avx-512", "avx2"]
    assert "self-test passed at set-up" in capsys.readouterr().out


def test_setup_fails_clearly_when_no_build_runs(setup: SetUp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap, "run_self_test", crashing_on(setup, {c.key for c in setup.plan.candidates}))
    with pytest.raises(bootstrap.SetupError) as caught:
        bootstrap.ensure_llama_runs(setup.plan, Path("model.gguf"))
    message = str(caught.value)
    assert message.startswith("no llama.cpp build runs on this machine")
    assert message.count("SIGILL") == len(setup.plan.candidates)
    assert "PENSIEVE_LLAMA_CMAKE_ARGS" in message and "pensieve doctor" in message
    record = bootstrap.read_stamp()["llama"]
    assert isinstance(record, dict) and record["self_test"] == "failed"

    # The user fixes something and runs the set-up again: it starts from the best build, not the last tried.
    setup.tested.clear()
    monkeypatch.setattr(bootstrap, "run_self_test", crashing_on(setup, set()))
    bootstrap.ensure_llama_runs(setup.plan, Path("model.gguf"))
    assert setup.tested == [setup.plan.candidates[0].key]
    assert setup.installed[-1] == setup.plan.candidates[0].key


def test_a_stamp_from_another_cpu_or_version_is_not_trusted() -> None:
    plan = llama_build.BuildPlan(build_candidates(SAPPHIRE_RAPIDS, arch="x86_64"), "cpu1", [])
    record = llama_build.build_record("0.3.36", plan.candidates[1], "cpu1", "passed")
    assert llama_build.recorded_position(record, "0.3.36", plan) == 1
    assert llama_build.recorded_position(record, "0.3.37", plan) is None
    assert llama_build.recorded_position({**record, "cpu": "cpu2"}, "0.3.36", plan) is None
    assert llama_build.recorded_position({**record, "cmake_args": ["-DGGML_NATIVE=ON"]}, "0.3.36", plan) is None


def test_wheel_cache_keys_differ_by_flags(tmp_path: Path) -> None:
    candidates = build_candidates(SAPPHIRE_RAPIDS, arch="x86_64")
    folders = {llama_build.wheel_dir("0.3.36", c, tmp_path) for c in candidates}
    assert len(folders) == len(candidates)
    assert llama_build.cached_wheel("0.3.36", candidates[0], tmp_path) is None
    wheel = llama_build.wheel_dir("0.3.36", candidates[0], tmp_path) / "llama_cpp_python-0.3.36-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"")
    assert llama_build.cached_wheel("0.3.36", candidates[0], tmp_path) == wheel
    assert llama_build.cache_root({"PENSIEVE_BUILD_CACHE": str(tmp_path)}) == tmp_path
