"""`python -m bench [NAME ...]`: run every ``bench/bench_*.py`` module's ``main()`` (or only NAMEs).

Each module writes its JSON to ``bench/results/`` (git-ignored) and prints its own table.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def compile_airgap() -> None:
    """Byte-compile airgap first, as ``pip install`` does for a user: every benchmark times the
    installed tool, not Python compiling its sources (``PYTHONDONTWRITEBYTECODE`` on this machine
    would otherwise make each run recompile every module: about 80 ms per command)."""
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "airgap", quiet=1)


def main(argv: list[str]) -> None:
    compile_airgap()
    names = sorted(p.stem for p in Path(__file__).resolve().parent.glob("bench_*.py"))
    wanted = [n for n in names if not argv or n.removeprefix("bench_") in argv or n in argv]
    for name in wanted:
        print(f"== {name}", flush=True)
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
