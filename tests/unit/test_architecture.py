"""The house rules that keep the code readable, checked on the source tree (docs/architecture.md).

- no import circle between Pensieve's modules (module-level imports);
- no module over 400 lines in src/, scripts/ or bench/;
- the Engine contract (`pensieve.engine_api`) depends on no implementation;
- routers in `pensieve.api` import no other router (shared pieces live in deps, errors, limits, sse);
- only the local engine's worker side imports llama_cpp, so the server process never loads it;
- the UI never imports server code: it is a plain HTTP client.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
MAX_LINES = 400
API_SHARED = {
    "pensieve.api.access",
    "pensieve.api.deps",
    "pensieve.api.drain",
    "pensieve.api.errors",
    "pensieve.api.limits",
    "pensieve.api.security",
    "pensieve.api.sse",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "pensieve").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, *, module_level: bool) -> Iterator[str]:
    """Modules imported by `path` (only the top-level statements when `module_level`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _internal_graph() -> dict[str, set[str]]:
    return {
        name: {target for target in _imports(path, module_level=True) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules on it, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circle() -> None:
    assert _cycle(_internal_graph()) is None


def test_the_cycle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_module_over_400_lines() -> None:
    files = [*(SRC / "pensieve").rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "bench").rglob("*.py")]
    too_long = {
        str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert too_long == {}


def test_engine_contract_depends_on_no_implementation() -> None:
    imported = set(_imports(MODULES["pensieve.engine_api"], module_level=False))
    assert not {name for name in imported if name.startswith("pensieve.")}


def test_routers_do_not_import_routers() -> None:
    routers = {name for name in MODULES if name.startswith("pensieve.api.")} - API_SHARED
    for name in routers:
        crossing = set(_imports(MODULES[name], module_level=False)) & (routers - {name})
        assert not crossing, f"{name} imports {crossing}"


def test_only_the_engine_imports_llama_cpp() -> None:
    importers = {
        name
        for name, path in MODULES.items()
        if any(t.split(".")[0] == "llama_cpp" for t in _imports(path, module_level=False))
    }
    assert importers and all(name.startswith("pensieve.engine.llamacpp") for name in importers), importers


def test_the_ui_imports_no_server_code() -> None:
    server = ("pensieve.engine", "pensieve.burst", "pensieve.cloud", "pensieve.serving", "pensieve.api", "pensieve.app")
    for name, path in MODULES.items():
        if name.startswith("pensieve.ui"):
            bad = {t for t in _imports(path, module_level=False) if t.startswith(server)}
            assert not bad, f"{name} imports {bad}"
