"""The package's import structure (docs/architecture.md): layers that import only downward, no
import circle, short modules, and every package saying what lives in it.

Every ``import``/``from ... import`` of ``seqmodels`` counts, at module level or inside a
function (a late import still ties two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "seqmodels"
# Bottom to top: a package may import its own modules and any package on a lower floor.
FLOORS = {
    "core": 0,
    "data": 1,
    "metrics": 1,
    "layers": 2,
    "nets": 3,
    "tasks": 4,
    "callbacks": 5,
    "plumbing": 6,
    "commands": 7,
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module a ``from ... import`` names, relative ones (``from ..x import y``) resolved
    against ``path``'s package."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported(path: Path) -> set[str]:
    """The seqmodels modules ``path`` imports (a name imported from a package that is one of
    its modules counts as that module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("seqmodels"))
        elif isinstance(node, ast.ImportFrom):
            module = absolute(node, path)
            if not module.startswith("seqmodels"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in MODULES else module)
    return found & MODULES.keys()


GRAPH = {name: imported(path) for name, path in MODULES.items()}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else None


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a self-import."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_from_the_code() -> None:
    """The reader sees imports at all (else every check below passes vacuously)."""
    assert "seqmodels.layers.encoders" in GRAPH["seqmodels.nets.parts"]
    assert "seqmodels.core.errors" in GRAPH["seqmodels.data.download"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    nets = PACKAGE / "nets" / "parts.py"
    relative = ast.parse("from ..commands import train\nfrom .loading import load_net").body
    assert [absolute(n, nets) for n in relative] == ["seqmodels.commands", "seqmodels.nets.loading"]
    init = PACKAGE / "nets" / "__init__.py"
    assert absolute(ast.parse("from .parts import x").body[0], init) == "seqmodels.nets.parts"
    assert every_package_is_on_a_floor() == []


def every_package_is_on_a_floor() -> list[str]:
    return [
        p.name
        for p in PACKAGE.iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and p.name not in FLOORS
    ]


def test_no_import_circle() -> None:
    assert circles(GRAPH) == []


def test_imports_run_down_the_floors() -> None:
    upward = []
    for module, targets in GRAPH.items():
        source = package_of(module)
        for target in targets:
            goal = package_of(target)
            if source is None or goal is None or goal == source:
                continue
            if FLOORS[goal] >= FLOORS[source]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_root_holds_packages_only() -> None:
    """What a user runs is in commands/, its plumbing in plumbing/: the root is a table of
    contents."""
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_short(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_each_package_says_what_lives_there_and_what_it_imports(package: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "import" in doc.lower(), (
        f"seqmodels/{package}/__init__.py: no docstring on imports"
    )
