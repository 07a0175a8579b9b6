"""House rules the linter cannot check: every module of the package, the Airflow edge and the DAGs
stays at most 300 lines; the modules of include/ and plugins/ import each other without a circle; no two
modules share a name (docs/architecture.md). Complexity (C901 ≤ 10) and the import boundaries are ruff's
(pyproject.toml and the nested ruff.toml files)."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 300
ROOTS = ("include", "plugins")


def test_every_module_is_at_most_300_lines():
    modules = [p for folder in ("include", "plugins", "dags") for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(modules) > 40  # the walk found the package, not an empty folder
    too_long = {str(p.relative_to(REPO)): n for p in modules if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"


def _modules() -> dict[str, Path]:
    """Dotted name → file, for every module under include/ and plugins/ (a package by its ``__init__``)."""
    found = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO / root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST, package: str) -> list[str]:
    """Every module name an import statement names, anywhere in the file (inside functions too)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names += [base, *(f"{base}.{a.name}" for a in node.names)]
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of include/ and plugins/ it imports (an imported name resolves to its module)."""
    modules = _modules()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = {owner(n) for n in _imported(ast.parse(path.read_text()), package)}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, …, a]``, or ``None`` (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle():
    """The check below would catch a circle (and not invent one)."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_include_and_plugins_import_each_other_without_a_circle():
    """No module of include/ or plugins/ reaches itself through imports, even lazy ones inside functions."""
    graph = import_graph()
    assert len(graph) > 40 and any(graph.values())  # the walk found modules and their imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_no_two_modules_share_a_name():
    """A module's file name says what it is, once: ``closer.py`` in two folders is two things to grep apart."""
    names = Counter(p.name for root in ROOTS for p in (REPO / root).rglob("*.py") if p.name != "__init__.py")
    twice = sorted(n for n, count in names.items() if count > 1)
    assert not twice, f"module names used more than once (rename one): {twice}"
