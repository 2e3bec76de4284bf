"""The shape of the code, as issue 8 set it: no import cycle among the core's modules at
run time (imports inside functions counted, those under ``if TYPE_CHECKING:`` not), no
module over 400 lines, and plugin distributions that use only the core's public modules
(they are released apart from it)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "berrymq"
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/berrymq_*/__init__.py"))


def module_name(path: Path, top: Path) -> str:
    parts = list(path.relative_to(top.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def run_time_imports(path: Path, package: str) -> set[str]:
    """The modules ``path`` imports when it runs (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for inner in node.body for n in ast.walk(inner))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = package.split(".")
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def core_graph() -> dict[str, set[str]]:
    files = {module_name(p, CORE): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {m for m in run_time_imports(path, package) if m in files and m != name}
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_core_modules_at_run_time() -> None:
    graph = core_graph()
    assert len(graph) > 50
    # A package's __init__ re-exports its modules: importing one of them runs it, which is
    # no cycle of the code's own making; only edges between modules count.
    modules = {name: {m for m in deps if not _is_package(m)} for name, deps in graph.items()
               if not _is_package(name)}
    assert cycle_in(modules) is None


def _is_package(name: str) -> bool:
    return (CORE.parent / name.replace(".", "/") / "__init__.py").exists()


def test_no_module_is_over_400_lines() -> None:
    files = [*CORE.rglob("*.py"), *(p for d in PLUGINS for p in d.rglob("*.py"))]
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long


def test_plugins_use_only_the_cores_public_modules() -> None:
    private = {}
    for package in PLUGINS:
        for path in package.rglob("*.py"):
            name = module_name(path, package)
            for module in run_time_imports(path, name.rpartition(".")[0] or name):
                if module.startswith("berrymq.") and any(
                        part.startswith("_") and not part.startswith("__")
                        for part in module.split(".")[1:]):
                    private.setdefault(str(path.relative_to(ROOT)), []).append(module)
    assert PLUGINS and not private


def test_every_core_module_has_a_test_module_of_its_name() -> None:
    tests = {path.name for path in (ROOT / "tests").rglob("test_*.py")}
    untested = [str(path.relative_to(ROOT)) for path in CORE.rglob("*.py")
                if path.stem not in ("__init__", "__main__", "_version")
                and f"test_{path.stem.lstrip('_')}.py" not in tests]
    assert not untested
