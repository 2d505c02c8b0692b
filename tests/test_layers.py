"""The package's layers point one way, checked on the source (an AST scan)."""

from __future__ import annotations

import ast
from pathlib import Path

import async_dag

PACKAGE = Path(async_dag.__file__).parent


def module_imports(path: Path) -> set[str]:
    """The async_dag modules a file imports at module level (not inside functions,
    not under ``if TYPE_CHECKING``)."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("async_dag")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("async_dag"):
                found.add(target)
                for alias in node.names:  # `from . import routing` imports a module
                    if (
                        (PACKAGE.parent / (target + "." + alias.name).replace(".", "/"))
                        .with_suffix(".py")
                        .exists()
                    ):
                        found.add(f"{target}.{alias.name}")
    return found


def modules() -> dict[str, set[str]]:
    """Every module of the package and what it imports at module level."""
    result = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        result[name.removesuffix(".__init__")] = module_imports(path)
    return result


def test_the_engine_imports_nothing_outside_core():
    """No module of async_dag/core imports anything outside core at module level."""
    outside = {
        (name, imported)
        for name, imports in modules().items()
        if name.startswith("async_dag.core")
        for imported in imports
        if not imported.startswith("async_dag.core")
    }
    assert outside == set()


def test_no_import_cycle_at_module_level():
    """Module-level imports between the package's modules form no cycle."""
    graph = modules()
    graph = {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if dep == "async_dag":  # the package root only re-exports
                continue
            assert state.get(dep) != 1, " -> ".join([*trail, module, dep])
            if dep not in state:
                visit(dep, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_the_layers_below_never_import_the_notebook_layer():
    """Only the notebook layer imports the notebook layer at module level."""
    offenders = {
        (name, imported)
        for name, imports in modules().items()
        if not name.startswith("async_dag.notebook") and name != "async_dag"
        for imported in imports
        if imported.startswith("async_dag.notebook")
    }
    assert offenders == set()
