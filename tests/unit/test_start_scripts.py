"""The Windows .bat twins do what the .sh scripts do, step for step (cmd.exe cannot run on this machine).

Each script is reduced to the steps it calls, in order: going to its own folder, finding a Python,
requiring an existing .venv, the set-up (scripts/bootstrap.py, which interpreter runs it, its flags) and
the program it ends in (`python -m pensieve <command>`, or pytest through bootstrap.py's `--test`), with
the user's arguments passed through ("$@" in sh, %* in cmd). Every other line must be known plumbing
(`set -euo pipefail`, `if errorlevel 1 exit /b 1`, ...), so a step added on one side only cannot slip
past as an unrecognised line. A twin that drifts fails here, naming the script and both step lists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["run_app", "run_local_api", "run_streamlit", "run_tests", "quick_start"]
Step = tuple[str, ...]

# The words each shell spells differently, in one spelling.
WORDS = {
    '"$PYTHON"': "<found-python>",
    "%PYTHON%": "<found-python>",
    ".venv/bin/python": "<venv-python>",
    '".venv\\Scripts\\python.exe"': "<venv-python>",
    '"$@"': "<user-args>",
    "%*": "<user-args>",
}
# Lines that are not steps: error handling, scoping, the end of an `if` block, a label.
SH_PLUMBING = {"set -euo pipefail", ". scripts/find_python.sh", "fi", "exit 1"}
BAT_PLUMBING = {"@echo off", "setlocal", "if errorlevel 1 exit /b 1", "exit /b %ERRORLEVEL%", "exit /b 1", ":ready"}
STOP_ON_FAILURE = "if errorlevel 1 exit /b 1"
FINDER_LABEL = ":find_python"


def _words(command: str) -> list[str]:
    """A command's words with each shell's spellings made alike (and Windows paths with forward slashes)."""
    return [WORDS.get(word, word.replace("\\", "/")) for word in command.removeprefix("exec ").split()]


def main_lines(path: Path) -> list[str]:
    """The script's lines up to its :find_python subroutine, without comments, echoes and blank lines."""
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line == FINDER_LABEL:
            break
        if line and not line.startswith(("#", "rem ", "echo ")):
            lines.append(line)
    return lines


def step_of(line: str) -> Step | None:
    """The step a line calls, or None for a line that calls none."""
    if line in ('cd "$(dirname "${BASH_SOURCE[0]}")"', 'cd /d "%~dp0"'):
        return ("cd-to-script-folder",)
    if line in ("find_python", "call :find_python"):
        return ("find-python",)
    if line in ("if [ ! -x .venv/bin/python ]; then", 'if exist ".venv\\Scripts\\python.exe" goto :ready'):
        return ("require-venv",)
    words = _words(line)
    if "scripts/bootstrap.py" in words:
        at = words.index("scripts/bootstrap.py")
        return ("bootstrap", *words[:at], *words[at + 1 :])
    if words[:2] == ["<venv-python>", "-m"]:
        return ("run", *words[2:])
    return None


def steps(path: Path) -> list[Step]:
    """The steps a start script calls, in order, in a form shared by sh and cmd; fails on an unknown line."""
    plumbing = SH_PLUMBING if path.suffix == ".sh" else BAT_PLUMBING
    result: list[Step] = []
    for line in main_lines(path):
        step = step_of(line)
        if step is not None:
            result.append(step)
        elif line not in plumbing:
            pytest.fail(f"{path.name}: unrecognised line {line!r}: a new step? add it here and to the twin")
    return result


@pytest.mark.parametrize("name", SCRIPTS)
def test_bat_twin_calls_the_same_steps(name: str) -> None:
    sh, bat = steps(REPO / f"{name}.sh"), steps(REPO / f"{name}.bat")
    assert len(sh) >= 3, f"{name}.sh: only {sh} found (did its layout change?)"
    assert bat == sh, f"{name}.bat calls\n  {bat}\nbut {name}.sh calls\n  {sh}"
    assert sh[0] == ("cd-to-script-folder",), f"{name}: must first go to its own folder"
    holding_args = [step for step in sh if "<user-args>" in step]
    assert holding_args == [sh[-1]], f"{name}: only the last step, and it always, takes the user's arguments"
    assert sh[-1][-1] == "<user-args>", f"{name}: the user's arguments must come last, after the script's own"


@pytest.mark.parametrize("name", SCRIPTS)
def test_both_twins_stop_at_a_failed_step(name: str) -> None:
    """sh stops by `set -e`, cmd by an errorlevel check after each step; both end with the program's status."""
    sh_lines = main_lines(REPO / f"{name}.sh")
    first_step = next(index for index, line in enumerate(sh_lines) if step_of(line))
    assert "set -euo pipefail" in sh_lines[:first_step], f"{name}.sh must stop at the first failed step"
    assert sh_lines[-1].startswith("exec "), f"{name}.sh must end by exec'ing its program (its exit status)"
    for index, line in enumerate(sh_lines):
        if step_of(line) == ("require-venv",):
            assert sh_lines[index + 1] == "exit 1", f"{name}.sh must stop when .venv is missing"

    bat_lines = main_lines(REPO / f"{name}.bat")
    calls = [index for index, line in enumerate(bat_lines) if step_of(line) not in (None, ("cd-to-script-folder",))]
    for index in calls:
        step = step_of(bat_lines[index])
        following = bat_lines[index + 1] if index + 1 < len(bat_lines) else "(the end of the script)"
        if index == calls[-1]:
            assert following == "exit /b %ERRORLEVEL%", f"{name}.bat must return its program's exit status"
            assert index + 2 == len(bat_lines), f"{name}.bat must stop after its program, not run on"
        elif step == ("require-venv",):
            assert following == "exit /b 1", f"{name}.bat must stop when .venv is missing"
        else:
            assert following == STOP_ON_FAILURE, f"{name}.bat goes on after a failed {step}: add {STOP_ON_FAILURE!r}"


def _finder(path: Path) -> str:
    """The :find_python subroutine of a .bat, from its label to the end of the file ("" when it has none)."""
    text = path.read_text(encoding="utf-8")
    return text[text.index(f"\n{FINDER_LABEL}") :] if f"\n{FINDER_LABEL}" in text else ""


def test_every_bat_carries_the_same_python_finder() -> None:
    """cmd has no `source`: each .bat that looks for Python keeps its own copy of the finder, all alike."""
    finders = {name: _finder(REPO / f"{name}.bat") for name in SCRIPTS}
    users = {name for name in SCRIPTS if ("find-python",) in steps(REPO / f"{name}.bat")}
    assert users == set(SCRIPTS) - {"quick_start"}, f"scripts that look for a Python: {sorted(users)}"
    for name in SCRIPTS:
        if name in users:
            assert finders[name] == finders["run_app"], f"{name}.bat's {FINDER_LABEL} differs from run_app.bat's"
        else:
            assert not finders[name], f"{name}.bat carries a finder it does not call"
    assert "exit /b 0" in finders["run_app"] and finders["run_app"].rstrip().endswith("exit /b 1")


def test_the_sh_scripts_share_one_finder() -> None:
    for name in SCRIPTS:
        text = (REPO / f"{name}.sh").read_text(encoding="utf-8")
        uses_it = ("find-python",) in steps(REPO / f"{name}.sh")
        assert (". scripts/find_python.sh" in text) == uses_it, f"{name}.sh: find_python without sourcing it"


def test_line_endings_and_modes_suit_each_shell() -> None:
    """cmd.exe misreads labels in LF-only files; a clone must give CRLF .bat files and executable .sh files."""
    rules = {line.split()[0]: line.split()[1:] for line in (REPO / ".gitattributes").read_text().splitlines() if line}
    assert rules.get("*.bat") == ["text", "eol=crlf"], ".gitattributes must check .bat files out with CRLF"
    assert rules.get("*.sh") == ["text", "eol=lf"], ".gitattributes must check .sh files out with LF"
    if os.name == "posix":
        for name in SCRIPTS:
            assert os.access(REPO / f"{name}.sh", os.X_OK), f"{name}.sh is not executable (git update-index --chmod=+x)"


def test_the_step_reader_sees_a_drift() -> None:
    """The check itself: a flag on one side only, another command, dropped arguments each change the steps."""
    reference = step_of('".venv\\Scripts\\python.exe" -m pensieve up %*')
    assert reference == step_of('exec .venv/bin/python -m pensieve up "$@"') == ("run", "pensieve", "up", "<user-args>")
    assert step_of('exec .venv/bin/python -m pensieve serve "$@"') != reference
    assert step_of("exec .venv/bin/python -m pensieve up") != reference
    assert step_of('"$PYTHON" scripts/bootstrap.py --no-model') == ("bootstrap", "<found-python>", "--no-model")
    assert step_of("%PYTHON% scripts\\bootstrap.py") == ("bootstrap", "<found-python>")
    assert step_of('".venv\\Scripts\\python.exe" scripts\\bootstrap.py') == ("bootstrap", "<venv-python>")
