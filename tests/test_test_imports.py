"""No test module imports another test module (issue 26 item 7): shared fixtures and helpers live in
fixture modules (``tests/*_fixtures.py``, ``conftest.py``, ``tests/helpers.py``, ``tests/kubeapi/``),
so a test module can be run, moved or deleted on its own."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    return dotted.startswith("tests.") and dotted.rsplit(".", 1)[-1].startswith("test_")


def imports_of_test_modules(root: Path = TESTS) -> list[str]:
    """``file: module`` for every import of a ``test_*`` module found under ``root``."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            found += [f"{path.relative_to(root.parent)}: {n}" for n in names if _is_test_module(n)]
    return found


def test_no_test_module_imports_another() -> None:
    found = imports_of_test_modules()
    assert not found, "move what these share to a tests/*_fixtures.py module: " + "; ".join(found)


def test_the_scan_finds_such_an_import(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_b.py").write_text("def f():\n    from tests.test_a import X\n")
    (tmp_path / "tests" / "test_c.py").write_text("from tests.a_fixtures import Y\nimport tests.helpers\n")
    assert imports_of_test_modules(tmp_path / "tests") == ["tests/test_b.py: tests.test_a"]
