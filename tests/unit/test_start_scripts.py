"""The Windows .bat twins do what the .sh scripts do, step for step (they cannot run on this machine).

Each script is reduced to the steps it calls: finding a Python, requiring an existing .venv, running the
set-up (scripts/bootstrap.py and its flags) and starting `python -m pensieve <command>`, with the user's
arguments passed through ("$@" in sh, %* in cmd). A twin that drifts (a flag added on one side only, a
step missing, arguments dropped) fails here, naming the script.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["run_app", "run_local_api", "run_streamlit", "run_tests", "quick_start"]
Step = tuple[str, ...]


def _words(command: str) -> list[str]:
    """A command's words with each shell's spellings made alike."""
    replacements = {
        '"$PYTHON"': "<python>",
        "%PYTHON%": "<python>",
        ".venv/bin/python": "<venv-python>",
        '".venv\\Scripts\\python.exe"': "<venv-python>",
        '"$@"': "<user-args>",
        "%*": "<user-args>",
    }
    return [replacements.get(word, word.replace("\\", "/")) for word in command.split()]


def steps(path: Path) -> list[Step]:
    """The steps a run_* script calls, in order, in a form shared by sh and cmd."""
    result: list[Step] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith(("#", "rem ", "echo")) or not line:
            continue
        if line in ("find_python", "call :find_python"):
            result.append(("find-python",))
        elif re.match(r'if \[ ! -x \.venv/bin/python \]|if exist "\.venv\\Scripts\\python\.exe" goto', line):
            result.append(("require-venv",))
        elif "scripts/bootstrap.py" in line or "scripts\\bootstrap.py" in line:
            words = _words(line.removeprefix("exec "))
            result.append(("bootstrap", *words[words.index("scripts/bootstrap.py") + 1 :]))
        elif " -m pensieve " in line:
            words = _words(line.removeprefix("exec "))
            result.append(("pensieve", *words[words.index("pensieve") + 1 :]))
    return result


@pytest.mark.parametrize("name", SCRIPTS)
def test_bat_twin_calls_the_same_steps(name: str) -> None:
    sh, bat = steps(REPO / f"{name}.sh"), steps(REPO / f"{name}.bat")
    assert sh, f"{name}.sh: no steps found (did its layout change?)"
    assert bat == sh, f"{name}.bat calls {bat}\nbut {name}.sh calls {sh}"
    assert "<user-args>" in sh[-1], f"{name}: the last step must pass the user's arguments on"


@pytest.mark.parametrize("name", SCRIPTS)
def test_both_twins_stop_when_the_set_up_fails(name: str) -> None:
    sh = (REPO / f"{name}.sh").read_text(encoding="utf-8")
    assert "set -euo pipefail" in sh, f"{name}.sh must stop at the first failed step"
    lines = [line.strip() for line in (REPO / f"{name}.bat").read_text(encoding="utf-8").splitlines()]
    for index, line in enumerate(lines):
        if "scripts\\bootstrap.py" in line and not line.startswith("rem ") and "--test" not in line:
            assert lines[index + 1] == "if errorlevel 1 exit /b 1", f"{name}.bat goes on after a failed set-up"
    assert lines[-1].startswith("exit /b") or "exit /b 1" in lines[-1], f"{name}.bat must end with its status"


def _finder(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text[text.index("rem First Python 3.10+") :]


def test_every_bat_carries_the_same_python_finder() -> None:
    """cmd has no `source`: each .bat that looks for Python keeps its own copy of the finder."""
    finders = {name: _finder(REPO / f"{name}.bat") for name in SCRIPTS if name != "quick_start"}
    reference = finders["run_app"]
    for name, finder in finders.items():
        assert finder == reference, f"{name}.bat's :find_python differs from run_app.bat's"


def test_the_sh_scripts_share_one_finder() -> None:
    for name in SCRIPTS:
        if name == "quick_start":
            continue
        text = (REPO / f"{name}.sh").read_text(encoding="utf-8")
        assert ". scripts/find_python.sh" in text, f"{name}.sh does not use scripts/find_python.sh"
