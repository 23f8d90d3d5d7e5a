"""The checks of `pensieve doctor`: each looks at one thing and says ok, warn or fail, and the fix.

Checks never raise: anything unexpected becomes a `fail` naming the exception. The llama.cpp checks run
llama.cpp in a child process only (a build that dies by SIGILL must not take the doctor with it).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pensieve.config import Settings
from pensieve.diagnostics.cpu_features import (
    compiled_features,
    cpu_flags,
    cpu_model_name,
    fingerprint,
    machine,
    missing_features,
)
from pensieve.diagnostics.self_test import SelfTestResult, run_self_test
from pensieve.engine.gguf_split import model_id_of
from pensieve.units import format_bytes

Status = Literal["ok", "warn", "fail"]
SETUP_STAMP = "pensieve-setup.json"  # written into .venv by scripts/bootstrap.py
MIN_PYTHON, NEWEST_TESTED_PYTHON = (3, 10), (3, 13)
CHROMIUM = Path("/usr/bin/chromium")
RERUN_SETUP = "run the set-up again: ./run_app.sh (Windows: run_app.bat)"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: what was checked, how it went, what was seen, and the fix when not ok."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> CheckResult:
    """A passed check."""
    return CheckResult(name, "ok", detail)


def check_python() -> CheckResult:
    """The interpreter's version against what Pensieve is tested on."""
    version = ".".join(str(part) for part in sys.version_info[:3])
    where = f"Python {version} ({sys.executable})"
    if sys.version_info[:2] < MIN_PYTHON:
        return CheckResult("python", "fail", where, "install Python 3.10 or newer, delete .venv and run the set-up")
    if sys.version_info[:2] > NEWEST_TESTED_PYTHON:
        return CheckResult(
            "python", "warn", f"{where}: newer than the tested 3.10-3.13", "use Python 3.12 if installs fail"
        )
    if sys.version_info[:2] < (3, 11):
        return CheckResult("python", "warn", f"{where}: the web UI needs 3.11+", "use Python 3.11+ for the UI")
    return ok("python", where)


def read_setup_stamp(prefix: Path | None = None) -> dict[str, object] | None:
    """The set-up's stamp in this environment (None when the set-up script did not make it)."""
    try:
        value = json.loads((prefix or Path(sys.prefix)).joinpath(SETUP_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def check_llama_build(stamp: dict[str, object] | None, self_test: SelfTestResult | None) -> CheckResult:
    """Which llama.cpp build is installed, with which CPU features, and whether this CPU has them all."""
    flags = cpu_flags()
    cpu = f"{cpu_model_name()} ({machine()})"
    record = stamp.get("llama") if stamp else None
    if isinstance(record, dict):
        built = f"build {record.get('name')} (self-test at set-up: {record.get('self_test') or 'not run'})"
        if record.get("cpu") != fingerprint(flags):
            return CheckResult(
                "llama.cpp build", "warn", f"{built}, made on a CPU with other features than this {cpu}", RERUN_SETUP
            )
    else:
        built = "installed without the set-up script: pip's default build (-march=native)"
    system_info = str(self_test.report.get("system_info", "")) if self_test else ""
    if not system_info:
        return CheckResult("llama.cpp build", "warn", f"{built}; its CPU features are unknown (self-test did not run)")
    used = sorted(compiled_features(system_info))
    cpu_features = [f for f in used if f not in ("LLAMAFILE", "OPENMP", "REPACK")]
    version = self_test.report.get("llama_cpp_python") if self_test else None
    detail = f"llama-cpp-python {version}, {built}; uses {', '.join(cpu_features) or 'no SIMD extensions'} on {cpu}"
    lacking = missing_features(used, flags) if flags is not None else []
    if lacking:
        return CheckResult(
            "llama.cpp build", "fail", f"{detail}; this CPU lacks {', '.join(lacking)}", RERUN_SETUP + " to rebuild it"
        )
    return ok("llama.cpp build", detail)


def default_model_path(settings: Settings) -> Path:
    """Where the default model's file is expected (a split model's first part, when that is what is there)."""
    model_id, folder = settings.engine.default_model, settings.engine.models_dir
    single = folder / f"{model_id}.gguf"
    if single.is_file():
        return single
    firsts = sorted(folder.glob(f"{glob.escape(model_id)}-00001-of-*.gguf")) if folder.is_dir() else []
    return next((path for path in firsts if model_id_of(path) == model_id), single)


def check_self_test(settings: Settings) -> tuple[CheckResult, SelfTestResult | None]:
    """Load the default model and generate in a child process, with every core, as the worker does."""
    model = default_model_path(settings)
    if not model.is_file():
        return CheckResult("self-test", "fail", f"no model file to test with ({model})", "see the model check"), None
    result = run_self_test(sys.executable, model)
    if result.ok:
        return ok("self-test", f"{model.name}: {result.summary}"), result
    fix = RERUN_SETUP + ": it self-tests and falls back to a build this CPU runs"
    if not result.crashed:
        fix = "see the error; the server log (logs/) has more"
    return CheckResult("self-test", "fail", result.summary, fix), result


def check_models(settings: Settings) -> CheckResult:
    """The models folder exists and holds the default model; the default model file matches its sha256."""
    from pensieve.model_install import ModelInstallError, default_model_source, sha256_of

    folder, model = settings.engine.models_dir, default_model_path(settings)
    install = "pensieve models install-default"
    if not folder.is_dir():
        return CheckResult("models", "fail", f"the models folder {folder} does not exist", install)
    if not model.is_file():
        found = ", ".join(sorted({model_id_of(p) for p in folder.glob("*.gguf")})) or "none"
        return CheckResult("models", "fail", f"{model} is missing (models here: {found})", install)
    try:
        source = default_model_source()
    except ModelInstallError as exc:
        return CheckResult("models", "warn", f"{model.name} present; cannot verify it: {exc}")
    if model.name != source.file_name:
        return ok("models", f"{model} ({format_bytes(model.stat().st_size)}; not the packaged default, not hashed)")
    digest = sha256_of(model)
    if digest != source.sha256:
        return CheckResult(
            "models",
            "fail",
            f"{model.name} sha256 {digest[:12]}… differs from {source.sha256[:12]}…",
            install + " --force",
        )
    return ok("models", f"{model} (sha256 {digest[:12]}… verified)")


def check_env_file(env_file: Path | None) -> CheckResult:
    """The settings file parses and every value is valid."""
    from pensieve.config import SettingsError, load_settings

    path = env_file or Path(".env")
    try:
        load_settings(env_file=env_file)
    except SettingsError as exc:
        return CheckResult("settings", "fail", f"{path}: {exc}", f"edit {path} (see .env.example)")
    if not path.is_file():
        return CheckResult("settings", "warn", f"{path} not found: built-in defaults apply", "cp .env.example .env")
    return ok("settings", f"{path} is valid")


def check_port(settings: Settings) -> CheckResult:
    """The server's port is free (or a Pensieve already answers there)."""
    address = f"{settings.server.host}:{settings.server.port}"
    family = socket.AF_INET6 if ":" in settings.server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((settings.server.host, settings.server.port))
        except OSError as exc:
            running = _pensieve_version_at(settings.server.host, settings.server.port)
            if running:
                return CheckResult("port", "warn", f"{address} is in use by a running Pensieve {running}")
            fix = "stop the program using it, or set PENSIEVE_PORT / --port"
            return CheckResult("port", "fail", f"{address} cannot be bound: {exc.strerror or exc}", fix)
    return ok("port", f"{address} is free")


def _pensieve_version_at(host: str, port: int) -> str | None:
    import httpx

    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    try:
        body = httpx.get(f"http://{shown}:{port}/health", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None
    return str(body.get("version")) if isinstance(body, dict) and body.get("status") == "ok" else None


def check_writable(settings: Settings) -> CheckResult:
    """The data and logs folders exist (or can be made) and accept a file."""
    problems, seen = [], []
    for folder in (settings.persistence.data_dir, settings.server.log_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".doctor-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            seen.append(str(folder))
        except OSError as exc:
            problems.append(f"{folder}: {exc.strerror or exc}")
    if problems:
        return CheckResult("folders", "fail", "; ".join(problems), "fix the folders' permissions or PENSIEVE_*_DIR")
    return ok("folders", f"{' and '.join(seen)} are writable")


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(settings: Settings) -> CheckResult:
    """Memory available now against the default model's estimated need with the configured context."""
    from pensieve.engine.memory import estimate_memory, planned_kv_cells
    from pensieve.engine.model_config import llama_config
    from pensieve.engine.registry import inspect_model_file

    model = default_model_path(settings)
    if not model.is_file():
        return CheckResult("memory", "warn", "no default model to estimate")
    info = inspect_model_file(model)
    needed = estimate_memory(info, planned_kv_cells(info, llama_config(settings.engine))).total_bytes
    available = available_memory_bytes()
    if available is None:
        return CheckResult("memory", "warn", f"the model needs ~{format_bytes(needed)}; available memory unknown here")
    detail = f"{format_bytes(available)} available; {settings.engine.default_model} needs ~{format_bytes(needed)}"
    if available < needed:
        fix = "free memory, or lower PENSIEVE_N_CTX / PENSIEVE_PARALLEL / PENSIEVE_KV_CACHE_TOKENS"
        return CheckResult("memory", "fail", detail, fix)
    if available < 2 * needed:
        return CheckResult("memory", "warn", detail + " (little headroom)", "close other programs")
    return ok("memory", detail)


def check_chromium() -> CheckResult:
    """Debian's Chromium, which the UI's browser tests drive (only developers running the tests need it)."""
    found = CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")
    if found:
        return ok("chromium", f"{found} (for the UI's browser tests)")
    fix = "sudo apt-get install chromium chromium-driver (only to run the UI browser tests)"
    return CheckResult("chromium", "warn", "not installed: the UI browser tests cannot run", fix)


def check_cloud(settings: Settings) -> list[CheckResult]:
    """Each configured cloud provider answers GET /models with its key (only with `doctor --cloud`)."""
    import httpx

    from pensieve.cloud.providers import ProviderConfigError
    from pensieve.cloud.registry import providers_from_settings

    try:
        providers = providers_from_settings(settings.cloud)
    except (ProviderConfigError, OSError, ValueError) as exc:
        return [CheckResult("cloud", "fail", f"the cloud configuration is invalid: {exc}", "fix PENSIEVE_CLOUD_*")]
    if not providers:
        return [ok("cloud", "no cloud provider configured (local only)")]
    results = []
    for provider in providers:
        headers = dict(provider.headers)
        if provider.api_key is not None:
            headers["authorization"] = f"Bearer {provider.api_key.get_secret_value()}"
        url = provider.base_url.rstrip("/") + "/models"
        try:
            response = httpx.get(url, headers=headers, params=provider.query, timeout=10)
        except httpx.HTTPError as exc:
            fix = "check the base URL, the network and any proxy"
            results.append(CheckResult(f"cloud {provider.name}", "fail", f"{url}: {type(exc).__name__}", fix))
            continue
        if response.status_code in (401, 403):
            fix = "check the provider's API key"
            results.append(CheckResult(f"cloud {provider.name}", "fail", f"{url}: HTTP {response.status_code}", fix))
        elif response.status_code >= 400:
            results.append(CheckResult(f"cloud {provider.name}", "warn", f"{url}: HTTP {response.status_code}"))
        else:
            results.append(ok(f"cloud {provider.name}", f"{url} answered"))
    return results
