"""Which CPU features this machine has, and which llama.cpp builds to try on it, safest last.

llama-cpp-python compiles llama.cpp with `-march=native` by default. That build uses every feature the
CPU *advertises*, and some machines advertise features they will not run: Xeon VMs list AMX while the
hypervisor does not grant its tile state, and the build dies by SIGILL on the first matrix product. So
the set-up builds with an explicit feature list instead, AMX only when a probe proved it runs, and
falls back along `build_candidates` when the self-test of a build fails.

Standard library only: the set-up script imports this before any dependency is installed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# ggml's CMake options for x86 instruction sets, and the /proc/cpuinfo flags each one needs.
# (GGML_AVX512 compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw: it needs all five.)
X86_OPTIONS: dict[str, tuple[str, ...]] = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
    "GGML_AMX_TILE": ("amx_tile",),
    "GGML_AMX_INT8": ("amx_int8",),
    "GGML_AMX_BF16": ("amx_bf16",),
}
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
AVX512_OPTIONS = ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16")
AVX2_OPTIONS = ("GGML_SSE42", "GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2")
AVX_OPTIONS = ("GGML_SSE42", "GGML_AVX")
SSE_OPTIONS = ("GGML_SSE42",)

# Features in llama.cpp's system-info line ("AVX2 = 1 | ...") and the /proc/cpuinfo flag each needs.
SYSTEM_INFO_FLAGS: dict[str, str] = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}

X86_MACHINES = ("x86_64", "amd64", "x86", "i386", "i686")


@dataclass(frozen=True)
class BuildCandidate:
    """One way to compile llama.cpp: a short key (cache and stamp), a name for people, and CMake args."""

    key: str
    name: str
    cmake_args: tuple[str, ...]
    why: str

    @property
    def cmake_args_text(self) -> str:
        """The arguments as one CMAKE_ARGS string."""
        return " ".join(self.cmake_args)


def available_cores() -> int:
    """CPU cores this process may run on (respects affinity masks and container cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def machine() -> str:
    """The CPU architecture, lower case ("x86_64", "arm64", "aarch64")."""
    return platform.machine().lower()


def is_x86(arch: str | None = None) -> bool:
    """True on 32- or 64-bit x86."""
    return (arch or machine()) in X86_MACHINES


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags as Linux names them ("avx2", "amx_tile"), or None when unknown here.

    Read from /proc/cpuinfo on Linux (the first `flags` line: x86) and from sysctl on Intel Macs.
    Elsewhere (Windows, ARM Linux) None: the set-up then relies on the self-test alone.
    """
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return _mac_flags() if platform.system() == "Darwin" else None
    match = re.search(r"^flags\s*:\s*(.*)$", text, flags=re.MULTILINE)
    return frozenset(match.group(1).split()) if match else None


def _mac_flags() -> frozenset[str] | None:
    """Intel Mac feature names from sysctl, renamed to Linux's ("AVX2" -> "avx2", "SSE4.2" -> "sse4_2")."""
    try:
        result = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    renames = {"avx1.0": "avx", "sse4.2": "sse4_2", "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16"}
    names = (name.lower() for name in result.stdout.split())
    return frozenset(renames.get(name, name) for name in names)


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name where the system tells it, else the architecture."""
    try:
        match = re.search(r"^model name\s*:\s*(.*)$", cpuinfo.read_text(errors="replace"), flags=re.MULTILINE)
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or machine())


def supported_options(flags: Iterable[str]) -> set[str]:
    """The ggml x86 options whose every required CPU flag is present."""
    present = set(flags)
    return {option for option, needed in X86_OPTIONS.items() if all(flag in present for flag in needed)}


def x86_cmake_args(enabled: Iterable[str]) -> tuple[str, ...]:
    """CMake args that turn exactly `enabled` on and every other x86 option off.

    Every option is spelt out: with GGML_NATIVE=OFF ggml turns SSE4.2, AVX, AVX2, BMI2, FMA and F16C
    on by default, which a CPU without them could not run.
    """
    on = set(enabled)
    return ("-DGGML_NATIVE=OFF", *(f"-D{option}={'ON' if option in on else 'OFF'}" for option in X86_OPTIONS))


def _describe(options: set[str]) -> str:
    if options & set(AMX_OPTIONS):
        return "AVX-512 + AMX" if "GGML_AVX512" in options else "AVX2 + AMX"
    if "GGML_AVX512" in options:
        return "AVX-512"
    if "GGML_AVX2" in options:
        return "AVX2"
    if "GGML_AVX" in options:
        return "AVX"
    return "SSE4.2" if "GGML_SSE42" in options else "x86-64 baseline"


def build_candidates(
    flags: frozenset[str] | None, *, arch: str | None = None, amx_proven: bool = False
) -> list[BuildCandidate]:
    """The builds to try on this machine, best first: each next one uses fewer CPU features.

    x86 with known flags: everything the CPU lists (AMX only when `amx_proven`), then without AMX,
    without AVX-512, AVX only, SSE4.2 only. Unknown flags (Windows) or another architecture (ARM,
    Apple silicon): llama.cpp's own native detection first, then a generic build.
    """
    arch = arch or machine()
    if not is_x86(arch):
        return [
            BuildCandidate("native", "native", (), f"{arch}: llama.cpp's own detection of this CPU"),
            BuildCandidate("generic", "generic", ("-DGGML_NATIVE=OFF",), f"{arch}: no CPU-specific instructions"),
        ]
    if flags is None:
        return [
            BuildCandidate("native", "native", (), "CPU features unknown here: llama.cpp's own detection"),
            *_tiered(set(X86_OPTIONS) - set(AMX_OPTIONS) - set(AVX512_OPTIONS) - {"GGML_AVX_VNNI"}, "a fallback"),
        ]
    supported = supported_options(flags)
    if not amx_proven:
        supported -= set(AMX_OPTIONS)
    return _tiered(supported, "the CPU's own feature list")


def _tiered(best: set[str], origin: str) -> list[BuildCandidate]:
    tiers: list[tuple[set[str], str]] = [(best, f"every feature in {origin}")]
    tiers.append((best - set(AMX_OPTIONS), "without AMX"))
    tiers.append((best & set(AVX2_OPTIONS), "without AVX-512 (AVX2 family only)"))
    tiers.append((best & set(AVX_OPTIONS), "AVX only"))
    tiers.append((best & set(SSE_OPTIONS), "SSE4.2 only"))
    candidates: list[BuildCandidate] = []
    seen: set[frozenset[str]] = set()
    for options, why in tiers:
        if frozenset(options) in seen:
            continue
        seen.add(frozenset(options))
        name = _describe(options)
        key = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        candidates.append(BuildCandidate(key, name, x86_cmake_args(options), why))
    return candidates


def forced_candidate(environ: Mapping[str, str] | None = None) -> BuildCandidate | None:
    """The user's own choice: PENSIEVE_LLAMA_CMAKE_ARGS, else the standard CMAKE_ARGS (None when neither)."""
    environ = os.environ if environ is None else environ
    for variable in ("PENSIEVE_LLAMA_CMAKE_ARGS", "CMAKE_ARGS"):
        value = environ.get(variable, "").strip()
        if value:
            return BuildCandidate("custom", f"custom ({variable})", tuple(value.split()), f"set by {variable}")
    return None


def compiled_features(system_info: str) -> set[str]:
    """The CPU features a llama.cpp build uses, from its system-info line ("AVX2 = 1 | AVX512 = 1 | ...")."""
    return {name for name, value in re.findall(r"([A-Z0-9_]+) = (\d+)", system_info) if value != "0"}


def missing_features(compiled: Iterable[str], flags: frozenset[str]) -> list[str]:
    """Features the build uses that the CPU does not list (it would die by SIGILL on them)."""
    return sorted(f for f in compiled if f in SYSTEM_INFO_FLAGS and SYSTEM_INFO_FLAGS[f] not in flags)


def fingerprint(flags: frozenset[str] | None, arch: str | None = None) -> str:
    """A short text that changes when the set-up runs on another kind of CPU (the stamp keeps it)."""
    import hashlib

    wanted = sorted(f for f in flags or () if any(f in needed for needed in X86_OPTIONS.values()))
    text = f"{arch or machine()}:{','.join(wanted) if flags is not None else 'unknown'}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- Is AMX really usable? -------------------------------------------------------------------------

# Asks Linux for the AMX tile state, then zeroes a tile on the main thread and on four more threads,
# as ggml's worker threads would. A VM that advertises AMX without granting it fails here (arch_prctl
# refuses, or `tilezero` raises SIGILL) in a few milliseconds instead of in a 5-minute build.
_AMX_PROBE = textwrap.dedent(
    """
    #include <immintrin.h>
    #include <pthread.h>
    #include <stdint.h>
    #include <string.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    #define ARCH_REQ_XCOMP_PERM 0x1023
    #define XFEATURE_XTILEDATA 18

    typedef struct {
        uint8_t palette_id, start_row, reserved[14];
        uint16_t colsb[16];
        uint8_t rows[16];
    } tile_config;

    static void *use_tiles(void *arg) {
        tile_config config;
        memset(&config, 0, sizeof config);
        config.palette_id = 1;
        config.rows[0] = 16;
        config.colsb[0] = 64;
        _tile_loadconfig(&config);
        _tile_zero(0);
        _tile_release();
        return arg;
    }

    int main(void) {
        if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 3;
        use_tiles(0);
        pthread_t threads[4];
        for (int i = 0; i < 4; i++)
            if (pthread_create(&threads[i], 0, use_tiles, 0) != 0) return 4;
        for (int i = 0; i < 4; i++) pthread_join(threads[i], 0);
        return 0;
    }
    """
)


def probe_amx(flags: frozenset[str] | None, compiler: str | None = None) -> tuple[bool, str]:
    """(usable, why): whether AMX tiles really run here, tested by compiling and running a tiny program.

    Not usable when the CPU does not list AMX, when this is not Linux, when no C compiler knows
    -mamx-tile, or when the probe fails (arch_prctl refused, or killed by SIGILL).
    """
    from pensieve.diagnostics.exit_status import describe_exit

    if not flags or "amx_tile" not in flags:
        return False, "the CPU does not list AMX"
    if platform.system() != "Linux":
        return False, "AMX is only probed on Linux"
    compiler = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return False, "no C compiler to probe AMX with"
    with tempfile.TemporaryDirectory(prefix="pensieve-amx-") as folder:
        source, binary = Path(folder) / "amx.c", Path(folder) / "amx"
        source.write_text(_AMX_PROBE, encoding="utf-8")
        try:
            built = subprocess.run(
                [compiler, "-O0", "-mamx-tile", "-pthread", str(source), "-o", str(binary)],
                capture_output=True,
                timeout=120,
                check=False,
            )
            if built.returncode != 0:
                return False, f"{compiler} cannot compile AMX code (too old for -mamx-tile?)"
            ran = subprocess.run([str(binary)], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"the AMX probe could not run ({exc})"
    if ran.returncode == 0:
        return True, "the AMX probe ran tile instructions on 5 threads"
    if ran.returncode == 3:
        return False, "the CPU lists AMX but the kernel refuses its tile state (arch_prctl)"
    return False, f"the CPU lists AMX but the probe failed: {describe_exit(ran.returncode)}"
