"""The anchor of every speed claim: llama.cpp's own `llama-server`, built from the llama.cpp we ship.

The binary is compiled once from the llama.cpp that the pinned llama-cpp-python sdist vendors (so both
sides run the same kernels), with the CPU feature flags the set-up chose for this machine (recorded in
`.venv/pensieve-setup.json`; without a stamp, the set-up's first candidate for this CPU). It is cached
outside the repository, under the set-up's build cache (`~/.cache/pensieve/llama-server/<version>/
<build>-<hash>/`), so later bench runs start at once.

    .venv/bin/python bench/llama_server.py            # build (or find) it and print its path
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from common import REPO_ROOT, free_port

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import llama_build  # the set-up's own build planning and cache location (scripts/ is put on sys.path above)

DISTRIBUTION = "llama-cpp-python"
STAMP = REPO_ROOT / ".venv" / "pensieve-setup.json"
# Only the server: no tests, examples, web UI download, HTTPS or curl (the machine may have no network).
SERVER_ONLY = (
    "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_CURL=OFF",
)  # fmt: skip


@dataclass(frozen=True)
class BuildChoice:
    """Which llama.cpp to compile and with which CPU flags."""

    version: str
    name: str
    cmake_args: tuple[str, ...]

    @property
    def folder(self) -> Path:
        """The cache folder of this build (version, build name and a hash of flags and platform)."""
        identity = "\n".join([*self.cmake_args, *SERVER_ONLY, platform.system(), platform.machine()])
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return llama_build.cache_root() / "llama-server" / self.version / f"{self.name}-{digest}"


def pinned_version() -> str:
    """The llama-cpp-python version pinned in pyproject.toml."""
    for line in (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        text = line.strip().strip('",')
        if text.startswith(f"{DISTRIBUTION}=="):
            return text.split("==", 1)[1]
    raise RuntimeError(f"{DISTRIBUTION} is not pinned in pyproject.toml")


def build_choice() -> BuildChoice:
    """The set-up's recorded build for this machine, else its first candidate for this CPU."""
    version = pinned_version()
    try:
        record = json.loads(STAMP.read_text(encoding="utf-8")).get("llama") or {}
    except (OSError, ValueError):
        record = {}
    if record.get("version") == version and record.get("cmake_args") is not None:
        return BuildChoice(version, str(record.get("key", "recorded")), tuple(record["cmake_args"]))
    candidate = llama_build.plan_builds().candidates[0]
    return BuildChoice(version, candidate.key, tuple(candidate.cmake_args))


def ensure_binary(choice: BuildChoice | None = None, log=print) -> Path:  # type: ignore[no-untyped-def]
    """The path of a built `llama-server` for this machine, compiling it first if it is not cached."""
    choice = choice or build_choice()
    binary = choice.folder / "llama-server"
    if binary.is_file():
        return binary
    choice.folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-server-", dir=choice.folder.parent) as scratch:
        source = _vendored_source(choice.version, Path(scratch))
        build = Path(scratch) / "build"
        build_log = choice.folder.parent / f"{choice.name}-build.log"
        log(f"compiling llama-server {choice.version} ({choice.name}); log: {build_log}")
        started = time.monotonic()
        with build_log.open("w", encoding="utf-8") as output:
            for command in (
                ["cmake", "-S", str(source), "-B", str(build), *choice.cmake_args, *SERVER_ONLY],
                ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(os.cpu_count() or 2)],
            ):
                if subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False).returncode:
                    raise RuntimeError(f"building llama-server failed; see {build_log}")
        staged = Path(scratch) / "done"
        staged.mkdir()
        shutil.copy2(build / "bin" / "llama-server", staged / "llama-server")
        shutil.rmtree(choice.folder, ignore_errors=True)
        staged.rename(choice.folder)
        log(f"llama-server built in {time.monotonic() - started:.0f} s: {binary}")
    return binary


def _vendored_source(version: str, scratch: Path) -> Path:
    """Download the llama-cpp-python sdist (from the package index, no binaries) and unpack its llama.cpp."""
    command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet"]
    subprocess.run([*command, f"{DISTRIBUTION}=={version}", "-d", str(scratch)], check=True)
    archive = next(scratch.glob("llama_cpp_python-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(scratch, filter="data")
    return next(scratch.glob("llama_cpp_python-*/vendor/llama.cpp"))


class LlamaServer:
    """A running `llama-server` on loopback, configured like the Pensieve server it is compared with."""

    def __init__(self, model: Path, *, n_ctx: int, threads: int, parallel: int, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        command = [
            str(ensure_binary()), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            # llama-server splits its context among its slots; Pensieve gives each sequence n_ctx.
            "-c", str(n_ctx * parallel), "-np", str(parallel), "-t", str(threads), "-tb", str(threads),
            "--no-webui", "--log-disable",
        ]  # fmt: skip
        self._log = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}; see {log_path}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.close()
        raise RuntimeError(f"llama-server did not become ready in 120 s; see {log_path}")

    def close(self) -> None:
        """Stop it."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


if __name__ == "__main__":
    print(ensure_binary(log=lambda message: print(message, file=sys.stderr)))
