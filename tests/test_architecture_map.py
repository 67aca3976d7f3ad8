"""``docs/architecture.md`` is a map that matches the code (issue 26 item 6).

Every module under ``airgap/`` is named there (``core/atomic.py``; a package by its folder,
``core/bundle/``), and every command of the CLI has its row in "Command → module → library
function". A module or command added later fails this test, which lists what is missing.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"


def module_names() -> list[str]:
    """How each module is named in the map: its path under airgap/, a package by its folder."""
    names = []
    for path in sorted((REPO / "airgap").rglob("*.py")):
        rel = path.relative_to(REPO / "airgap").as_posix()
        if rel == "__init__.py":
            continue  # the package itself
        names.append(rel.removesuffix("__init__.py") if rel.endswith("/__init__.py") else rel)
    return names


def cli_commands() -> list[str]:
    """Every command path of the CLI (``ca issue``, ``ca custody rekey``, ``doctor`` ...)."""
    import typer.main

    from airgap.cli import app

    out: list[str] = []

    def walk(group: object, prefix: str) -> None:
        for name, cmd in sorted(getattr(group, "commands", {}).items()):
            if hasattr(cmd, "commands"):
                walk(cmd, f"{prefix}{name} ")
            else:
                out.append(f"{prefix}{name}")

    walk(typer.main.get_command(app), "")
    return out


def test_every_module_is_named_in_the_map() -> None:
    text = DOC.read_text()
    missing = [m for m in module_names() if f"`{m}`" not in text]
    assert not missing, f"name these modules in {DOC.relative_to(REPO)}: {', '.join(missing)}"


def test_every_command_has_its_row() -> None:
    text = DOC.read_text()
    section = text.split("## Command → module → library function", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    named = {part.strip().strip("`") for row in rows for part in row.split("/")}
    first_words = {n.split()[0] for n in named if n}

    def covered(cmd: str) -> bool:
        if cmd in named:
            return True
        group, _, last = cmd.rpartition(" ")
        return bool(group) and group.split()[0] in first_words and last in named

    missing = [c for c in cli_commands() if not covered(c)]
    assert not missing, f"add a row for these commands to {DOC.relative_to(REPO)}: {', '.join(missing)}"


def test_the_map_finds_what_is_missing(tmp_path: Path) -> None:
    assert "core/atomic.py" in module_names() and "core/bundle/" in module_names()
    assert "ca issue" in cli_commands() and "ca custody rekey" in cli_commands() and "doctor" in cli_commands()
