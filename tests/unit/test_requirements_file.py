"""requirements.txt lists exactly pyproject.toml's pinned runtime dependencies (same pins, same markers)."""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def normalised(requirement: str) -> str:
    """One requirement in a canonical spelling: name, specifier and marker as packaging renders them."""
    parsed = Requirement(requirement)
    marker = f"; {parsed.marker}" if parsed.marker else ""
    return f"{parsed.name.lower().replace('_', '-')}{parsed.specifier}{marker}"


def requirements_file() -> list[str]:
    """The requirement lines of requirements.txt (comments, blank lines and pip options left out)."""
    lines = (line.split(" #", 1)[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def test_requirements_txt_matches_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    wanted = sorted(normalised(r) for r in project)
    listed = sorted(normalised(r) for r in requirements_file())
    missing, extra = sorted(set(wanted) - set(listed)), sorted(set(listed) - set(wanted))
    assert not missing and not extra, f"requirements.txt lacks {missing} and has extra {extra}"
    assert len(listed) == len(wanted), "requirements.txt repeats a requirement"


def test_every_runtime_dependency_is_pinned_exactly() -> None:
    for line in requirements_file():
        specifiers = list(Requirement(line).specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not pinned with ==: {line}"
