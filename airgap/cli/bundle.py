"""`airgap bundle ...` commands."""

from __future__ import annotations

from airgap.cli._app import new_app

app = new_app(help="bundle commands.")
