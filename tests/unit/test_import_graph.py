"""The package's import graph has no cycle: each part depends only on parts below it.

Units are the first-level subpackages of mxarchiverd (supervisor, pipeline,
workers, ...) and its top-level modules (cli, db, ...). Imports made inside
functions count too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mxarchiverd"


def unit_of(module: str) -> str:
    """mxarchiverd.pipeline.channels -> pipeline; mxarchiverd.cli -> cli."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported_modules(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join([*base, node.module] if node.module else base)
            elif node.module:
                yield node.module


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = unit_of(module_name(path))
        targets = {unit_of(m) for m in imported_modules(path) if m.startswith("mxarchiverd.")}
        graph.setdefault(source, set()).update(targets - {source, "__init__"})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    graph = unit_graph()
    assert {"supervisor", "pipeline", "workers", "archive", "sources", "config"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between parts of mxarchiverd: " + " -> ".join(cycle or [])


def test_the_supervisor_and_the_workers_meet_only_in_the_pipeline_package() -> None:
    graph = unit_graph()
    assert "supervisor" not in graph["workers"] and "workers" not in graph["pipeline"]
    assert "supervisor" not in graph["pipeline"]
