"""requirements.txt lists exactly pyproject.toml's pinned runtime dependencies (same pins, same markers).

Both files are parsed with `packaging` (a dev dependency), so spellings that mean the same thing
(`prometheus_client` and `prometheus-client`, `"` and `'` in a marker) compare equal, and anything that
means something else (another pin, another marker, an extra such as `uvicorn[standard]`, a line one
file has and the other lacks) fails, naming the requirement and both versions of it.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (tomli is a runtime dependency there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def normalised(requirement: str) -> str:
    """One requirement in a canonical spelling: name, extras, specifier and marker as packaging renders them."""
    parsed = Requirement(requirement)
    extras = f"[{','.join(sorted(parsed.extras))}]" if parsed.extras else ""
    marker = f"; {parsed.marker}" if parsed.marker else ""
    return f"{canonicalize_name(parsed.name)}{extras}{parsed.specifier}{marker}"


def requirements_file() -> list[str]:
    """The requirement lines of requirements.txt, comments and blank lines left out."""
    lines = (line.split(" #", 1)[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def pyproject_dependencies() -> list[str]:
    """`[project] dependencies` of pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"])


def differences(wanted: list[str], listed: list[str]) -> list[str]:
    """What requirements.txt (`listed`) gets wrong against pyproject.toml (`wanted`), one line per problem."""
    by_name: dict[str, tuple[list[str], list[str]]] = {}
    for requirement in wanted:
        by_name.setdefault(canonicalize_name(Requirement(requirement).name), ([], []))[0].append(requirement)
    for requirement in listed:
        by_name.setdefault(canonicalize_name(Requirement(requirement).name), ([], []))[1].append(requirement)
    problems = []
    for name, (in_pyproject, in_file) in sorted(by_name.items()):
        if Counter(map(normalised, in_pyproject)) != Counter(map(normalised, in_file)):
            problems.append(
                f"{name}: pyproject.toml has {in_pyproject or 'nothing'}, requirements.txt {in_file or 'nothing'}"
            )
    return problems


def test_requirements_txt_matches_pyproject() -> None:
    listed = requirements_file()
    options = [line for line in listed if line.startswith("-")]
    assert not options, f"requirements.txt holds pip options, not only the pinned dependencies: {options}"
    problems = differences(pyproject_dependencies(), listed)
    assert not problems, "requirements.txt is out of step with pyproject.toml:\n" + "\n".join(problems)


def test_every_runtime_dependency_is_pinned_exactly() -> None:
    for line in requirements_file():
        specifiers = list(Requirement(line).specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not pinned with ==: {line}"


def test_the_comparison_notices_a_difference() -> None:
    """The check itself: other spellings pass; another pin, marker or extra, a missing, added or repeated line fail."""
    numpy_310, numpy_311 = "numpy==2.2.6; python_version < '3.11'", "numpy==2.3.5; python_version >= '3.11'"
    wanted = [numpy_310, numpy_311, "httpx==0.28.1"]
    respelled = ['numpy==2.2.6; python_version<"3.11"', numpy_311, "HTTPX==0.28.1"]
    assert differences(wanted, respelled) == []
    for wrong in (
        [numpy_310, numpy_311, "httpx==0.28.2"],
        [numpy_310, numpy_311, "httpx==0.28.1; python_version >= '3.11'"],
        [numpy_310, numpy_311, "httpx[http2]==0.28.1"],
        [numpy_310, numpy_311],
        [*wanted, "httpx==0.28.1"],
    ):
        assert [line.split(":")[0] for line in differences(wanted, wrong)] == ["httpx"], wrong
    unmarked = differences(wanted, [numpy_310, "numpy==2.3.5", "httpx==0.28.1"])
    assert [line.split(":")[0] for line in unmarked] == ["numpy"]
    assert differences(wanted, [*wanted, "tqdm==4.70.1"]) == [
        "tqdm: pyproject.toml has nothing, requirements.txt ['tqdm==4.70.1']"
    ]
