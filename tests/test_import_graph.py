"""The import graph of the toolbox: no circles, and no arrows that run up.

Every ``import`` statement of every toolbox module counts, also those inside
functions (a function-level import only hides a circle, it does not break it).
Imports by name (``importlib.import_module``, as the plugin manager loads the
built-in plugins) are not arrows of the graph.
"""
import ast
from pathlib import Path

import pytest

import toolbox

ROOT = Path(toolbox.__file__).parent

#: packages that must not import from the engine or the apis
LOWER_PACKAGES = ("toolbox.models", "toolbox.structures", "toolbox.datasets",
                  "toolbox.evaluation")
UPPER_PACKAGES = ("toolbox.engine", "toolbox.apis")

#: (importer, imported) -> why it is allowed; each is a deprecated alias that
#: goes with the next release
ALLOWED = {
    ("toolbox.engine.launch", "toolbox.apis.image_inference"):
        "launch.infer is a deprecated wrapper of apis.image_inference.run_inference",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The toolbox modules ``name`` imports, anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _in(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_is_read(graph):
    assert "toolbox.registry" in graph["toolbox.engine.runner"]
    assert "toolbox.config_check" in graph["toolbox.engine.runner"]  # a function-level import
    assert "toolbox.plugins" in graph["toolbox.registry"]


def test_cycles_are_found():
    toy = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(toy) == [["a", "b", "c"]]


def test_no_import_circles(graph):
    assert _cycles(graph) == []


def test_registry_and_plugin_manager_do_not_import_each_other_both_ways(graph):
    assert "toolbox.registry" not in graph["toolbox.plugins"]
    assert "toolbox.builtin" not in graph["toolbox.plugins"]  # loaded by name
    assert "toolbox.plugins" not in graph["toolbox.builtin"]
    assert "toolbox.config_check" not in graph["toolbox.registry"]


def test_lower_packages_do_not_import_engine_or_apis(graph):
    upward = sorted((a, b) for a, targets in graph.items() if _in(a, LOWER_PACKAGES)
                    for b in targets if _in(b, UPPER_PACKAGES))
    assert upward == []


def test_engine_and_apis_meet_only_through_lower_modules(graph):
    crossing = sorted(
        (a, b) for a, targets in graph.items() for b in targets
        if (_in(a, ("toolbox.engine",)) and _in(b, ("toolbox.apis",)))
        or (_in(a, ("toolbox.apis",)) and _in(b, ("toolbox.engine",))))
    assert [edge for edge in crossing if edge not in ALLOWED] == []
    stale = [edge for edge in ALLOWED if edge not in crossing]
    assert stale == [], "an allowed exception is gone: drop it from ALLOWED"
