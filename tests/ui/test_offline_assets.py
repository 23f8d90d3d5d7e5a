"""The UI needs no network: no external URL in its code, a page icon that is a file of the package
(Streamlit turns a `:material/...:` page icon into a favicon fetched from fonts.gstatic.com), and every
asset file of the UI package listed in the wheel's package data. No server needed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from streamlit.commands.page_config import _get_favicon_string

from pensieve.ui.app import ICON
from support.models import REPO_ROOT

UI = REPO_ROOT / "src" / "pensieve" / "ui"
# The SVG namespace is a name, never fetched; loopback is the Pensieve server itself.
ALLOWED = re.compile(r"https?://(127\.0\.0\.1|localhost|\{|www\.w3\.org/2000/svg)")


def test_no_external_url_in_the_ui() -> None:
    found = []
    for path in sorted(UI.rglob("*")):
        if path.suffix not in (".py", ".svg", ".css", ".html", ".js") or not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"https?://\S*", line):
                if not ALLOWED.match(match.group()):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {match.group()}")
    assert not found, found


def test_the_page_icon_is_a_bundled_file_served_inline() -> None:
    calls = [
        node
        for path in UI.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "set_page_config"
    ]
    assert calls, "the app sets its page config"
    for call in calls:
        for keyword in call.keywords:
            if keyword.arg == "page_icon" and isinstance(keyword.value, ast.Constant):
                raise AssertionError(f"a literal page icon ({keyword.value.value!r}) is fetched from the internet")
    assert ICON.is_file() and ICON.parent == UI
    assert _get_favicon_string(str(ICON)).startswith("data:image/svg+xml;base64,")  # inline: nothing to fetch


def test_every_ui_asset_goes_into_the_wheel() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    line = re.search(r'^"pensieve\.ui" = \[(.*)\]$', pyproject, re.MULTILINE)  # [tool.setuptools.package-data]
    assert line is not None
    listed = set(re.findall(r'"([^"]+)"', line.group(1)))
    assets = {path.name for path in UI.iterdir() if path.is_file() and path.suffix not in (".py", ".pyc")}
    assert assets <= listed, f"not in [tool.setuptools.package-data]: {sorted(assets - listed)}"
    assert Path(UI / ICON.name).is_file()
