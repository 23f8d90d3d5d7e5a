"""Which llama.cpp builds the set-up tries on which CPU, and how a build's features are compared with the CPU's."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from pensieve.diagnostics.cpu_features import (
    build_candidates,
    compiled_features,
    cpu_flags,
    fingerprint,
    forced_candidate,
    missing_features,
    probe_amx,
)

REPO = Path(__file__).resolve().parents[2]
AVX2 = frozenset(["sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"])
AVX512 = AVX2 | frozenset(
    ["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16"]
)
SAPPHIRE_RAPIDS = AVX512 | frozenset(["avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "avx512_fp16"])


def args_of(flags: frozenset[str] | None, **kwargs: object) -> list[dict[str, str]]:
    """Each candidate's CMake args as {option: ON/OFF}."""
    result = []
    for candidate in build_candidates(flags, arch="x86_64", **kwargs):  # type: ignore[arg-type]
        pairs = (arg.removeprefix("-D").split("=") for arg in candidate.cmake_args)
        result.append(dict(pairs))
    return result


def test_amx_listed_but_not_proven_is_never_built() -> None:
    """The machine of issue 12: the CPU lists AMX, the VM does not grant it."""
    candidates = args_of(SAPPHIRE_RAPIDS)
    assert all(c["GGML_AMX_TILE"] == "OFF" and c["GGML_AMX_INT8"] == "OFF" for c in candidates)
    first = candidates[0]
    assert first["GGML_NATIVE"] == "OFF"
    assert first["GGML_AVX512"] == "ON" and first["GGML_AVX512_BF16"] == "ON" and first["GGML_AVX_VNNI"] == "ON"


def test_proven_amx_comes_first_then_each_tier_drops_features() -> None:
    keys = [c.key for c in build_candidates(SAPPHIRE_RAPIDS, arch="x86_64", amx_proven=True)]
    assert keys == ["avx-512-amx", "avx-512", "avx2", "avx", "sse4-2"]
    tiers = args_of(SAPPHIRE_RAPIDS, amx_proven=True)
    assert tiers[0]["GGML_AMX_INT8"] == "ON" and tiers[1]["GGML_AMX_INT8"] == "OFF"
    assert tiers[2]["GGML_AVX512"] == "OFF" and tiers[2]["GGML_AVX2"] == "ON"
    assert tiers[3]["GGML_AVX2"] == "OFF" and tiers[3]["GGML_FMA"] == "OFF" and tiers[3]["GGML_AVX"] == "ON"
    assert tiers[4]["GGML_AVX"] == "OFF" and tiers[4]["GGML_SSE42"] == "ON"


def test_every_option_is_spelt_out() -> None:
    """ggml turns AVX/AVX2/FMA/F16C/BMI2 on by default once GGML_NATIVE is off: a CPU without them needs OFF."""
    for candidate in args_of(frozenset({"sse4_2"})):
        assert candidate["GGML_AVX"] == "OFF" and candidate["GGML_AVX2"] == "OFF" and candidate["GGML_FMA"] == "OFF"


def test_avx512_needs_all_five_base_flags() -> None:
    """GGML_AVX512 compiles with -mavx512f/cd/vl/dq/bw: a CPU with AVX-512F alone (Xeon Phi) must not get it."""
    assert args_of(AVX2 | {"avx512f"})[0]["GGML_AVX512"] == "OFF"


def test_unknown_flags_and_other_architectures_start_native() -> None:
    assert [c.key for c in build_candidates(None, arch="x86_64")] == ["native", "avx2", "avx", "sse4-2"]
    arm = build_candidates(None, arch="aarch64")
    assert [c.key for c in arm] == ["native", "generic"] and arm[0].cmake_args == ()


def test_forced_args_win_and_pensieve_variable_comes_first() -> None:
    forced = forced_candidate({"CMAKE_ARGS": "-DGGML_NATIVE=OFF", "PENSIEVE_LLAMA_CMAKE_ARGS": "-DGGML_AVX2=OFF"})
    assert forced is not None and forced.cmake_args == ("-DGGML_AVX2=OFF",)
    assert forced_candidate({"CMAKE_ARGS": " -DGGML_NATIVE=OFF "}) is not None
    assert forced_candidate({"CMAKE_ARGS": "  "}) is None


def test_build_features_against_cpu_flags() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | AVX_VNNI = 0 | LLAMAFILE = 1 |"
    used = compiled_features(info)
    assert used == {"SSE3", "AVX", "AVX2", "AVX512", "AMX_INT8", "LLAMAFILE"}
    assert missing_features(used, AVX2 | {"pni"}) == ["AMX_INT8", "AVX512"]
    assert missing_features(used, SAPPHIRE_RAPIDS | {"pni"}) == []


def test_fingerprint_changes_with_the_instruction_sets_only() -> None:
    assert fingerprint(AVX2 | {"hypervisor"}, "x86_64") == fingerprint(AVX2, "x86_64")
    assert fingerprint(AVX2, "x86_64") != fingerprint(AVX512, "x86_64")


@pytest.mark.skipif(platform.system() != "Linux" or cpu_flags() is None, reason="reads /proc/cpuinfo flags")
def test_amx_probe_on_this_machine() -> None:
    """The probe compiles and runs for real: it may only say "usable" where the tiles really ran."""
    flags = cpu_flags()
    assert flags is not None
    usable, why = probe_amx(flags | {"amx_tile"})
    if "amx_tile" not in flags:
        assert not usable, why  # tile instructions cannot run on a CPU without AMX
    assert why


def test_setup_modules_need_only_the_standard_library() -> None:
    """bootstrap.py imports these before any dependency is installed: no site-packages, no third party."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import bootstrap, llama_build\n"
        "import pensieve.diagnostics.exit_status, pensieve.diagnostics.self_test\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-I", "-c", code, str(REPO / "scripts"), str(REPO / "src")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
