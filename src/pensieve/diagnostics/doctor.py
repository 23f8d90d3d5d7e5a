"""`pensieve doctor`: check the install and the machine, one line per check, with the fix for each problem.

    pensieve doctor [--cloud] [--json]

Exit status 1 when any check failed (warnings alone exit 0), so scripts and CI can gate on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from pensieve.config import Settings, SettingsError, load_settings
from pensieve.diagnostics import doctor_checks as checks
from pensieve.diagnostics.doctor_checks import CheckResult

MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as exc:  # one broken check must not hide the others
        return CheckResult(name, "fail", f"the check itself failed: {type(exc).__name__}: {exc}")


def run_doctor(env_file: Path | None = None, *, cloud: bool = False) -> list[CheckResult]:
    """Run every check, in the order a user would fix things; the cloud only when asked."""
    results = [checks.check_python(), checks.check_env_file(env_file)]
    try:
        settings = load_settings(env_file=env_file)
    except SettingsError:
        settings = (
            Settings.model_construct()
        )  # the settings line already says what is wrong; check the rest with defaults
    results.append(_guarded("models", lambda: checks.check_models(settings)))
    self_test_line, self_test = checks.check_self_test(settings)
    stamp = checks.read_setup_stamp()
    results.append(_guarded("llama.cpp build", lambda: checks.check_llama_build(stamp, self_test)))
    results.append(self_test_line)
    results.append(_guarded("memory", lambda: checks.check_memory(settings)))
    results.append(_guarded("port", lambda: checks.check_port(settings)))
    results.append(_guarded("folders", lambda: checks.check_writable(settings)))
    results.append(checks.check_chromium())
    if cloud:
        try:
            results.extend(checks.check_cloud(settings))
        except Exception as exc:
            results.append(CheckResult("cloud", "fail", f"the check itself failed: {type(exc).__name__}: {exc}"))
    return results


def render(results: list[CheckResult]) -> str:
    """The report as text: `ok   name  detail`, and `fix:` under each warning or failure."""
    width = max(len(result.name) for result in results)
    lines = []
    for result in results:
        lines.append(f"{MARKS[result.status]}  {result.name.ljust(width)}  {result.detail}")
        if result.fix and result.status != "ok":
            lines.append(f"      {' ' * width}  fix: {result.fix}")
    failed = sum(result.status == "fail" for result in results)
    warned = sum(result.status == "warn" for result in results)
    lines.append("")
    lines.append(f"{len(results)} checks: {failed} failed, {warned} warnings." if failed or warned else "All ok.")
    return "\n".join(lines)


def doctor_main(env_file: Path | None, *, cloud: bool, as_json: bool) -> int:
    """Print the report; 1 when any check failed."""
    results = run_doctor(env_file, cloud=cloud)
    if as_json:
        print(json.dumps([asdict(result) for result in results], indent=2))
    else:
        print(render(results))
    return 1 if any(result.status == "fail" for result in results) else 0
