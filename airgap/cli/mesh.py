"""`airgap mesh ...` and `airgap preflight`."""

from __future__ import annotations

import typer

from airgap.cli._app import new_app

app = new_app(help="Install and check the mesh on clusters.")


def register_top_level(root: typer.Typer) -> None:
    """Commands that sit at the top level (``airgap preflight``)."""
