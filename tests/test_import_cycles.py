"""No import cycle anywhere in airgap/: an AST scan, function-local imports included.

Imports under ``if TYPE_CHECKING:`` do not count (they never run). A cycle through a
function-local import is still a cycle: it only works because of the order things are called in.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "airgap"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str], this: str) -> set[str]:
    """Every airgap module ``tree`` imports, at any depth, except under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                if (m := resolve(a.name)) is not None:
                    found.add(m)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for a in node.names:
                m = resolve(f"{node.module}.{a.name}") or resolve(node.module)
                if m is not None:
                    found.add(m)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(this)
    return found


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(ast.parse(p.read_text(), str(p)), modules, _module_name(p)) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None. Packages importing their
    own submodules (``a`` → ``a.b``) are not edges a cycle can use back (``a.b`` → ``a``)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m.startswith(n + "."):  # a package re-exporting its own submodule
                continue
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (c := dfs(m)) is not None:
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := dfs(n)) is not None:
            return c
    return None


def test_airgap_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_scan_sees_function_local_imports_and_skips_type_checking() -> None:
    """The detector itself: a cycle through a function-local import is found, a TYPE_CHECKING one is not."""
    src_a = "def f():\n    from airgap.b import x\n"
    src_b = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from airgap.a import y\nimport airgap.a\n"
    modules = {"airgap.a", "airgap.b"}
    graph = {
        "airgap.a": _imports(ast.parse(src_a), modules, "airgap.a"),
        "airgap.b": _imports(ast.parse(src_b), modules, "airgap.b"),
    }
    assert find_cycle(graph) == ["airgap.a", "airgap.b", "airgap.a"]
    graph["airgap.b"] = _imports(ast.parse(src_b.replace("import airgap.a\n", "")), modules, "airgap.b")
    assert find_cycle(graph) is None


def test_offline_commands_do_not_import_network_libraries() -> None:
    """airgap.offline and airgap.core never import requests or kubernetes, even inside functions."""
    for p in sorted((PACKAGE / "offline").rglob("*.py")) + sorted((PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in ("requests", "kubernetes") for n in names), p
