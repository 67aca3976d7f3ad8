"""Shared CLI plumbing: app factory, JSON output, the rich progress observer."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from airgap.core.names import KEY_TYPES

# --key-type is checked by airgap.core.keys.check_key_type, not a typer Enum: an unknown key type
# is bad input (exit 3, "unknown key type") in the contract, where an Enum would make it exit 2.
KEY_TYPE_HELP = "Key type: " + " | ".join(KEY_TYPES) + "."


def new_app(**kwargs: Any) -> typer.Typer:
    """A Typer app with pretty exceptions (which print locals, and so secrets) turned off."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(
        pretty_exceptions_enable=False,
        pretty_exceptions_show_locals=False,
        add_completion=False,
        rich_markup_mode=None,
        **kwargs,
    )


def print_json(doc: Any) -> None:
    """One JSON document on stdout, keys sorted, for scripts."""
    from airgap.core.display import without_userinfo

    sys.stdout.write(without_userinfo(json.dumps(doc, indent=2, sort_keys=True)) + "\n")


def json_failure(as_json: bool, doc: dict[str, Any]) -> Any:
    """A context: with ``--json``, an :class:`AirgapError` inside prints one JSON document
    (``doc`` + ``verified: false``, the error line and exit code) on stdout, then propagates."""
    import contextlib

    from airgap.errors import AirgapError

    @contextlib.contextmanager
    def guard() -> Any:
        try:
            yield
        except AirgapError as exc:
            if as_json:
                print_json({**doc, "verified": False, "error": exc.message, "exit_code": exc.exit_code})
            raise

    return guard()


def warn(message: str) -> None:
    """A warning on stderr; like every note it may quote a server or a file, so it is shown escaped."""
    from airgap.core.display import clean_lines

    print(f"airgap: warning: {clean_lines(message)}", file=sys.stderr)


def info(message: str) -> None:
    """Human progress notes go to stderr so stdout stays clean for --json and pipes; shown escaped
    (a retry note quotes the server's answer) with credentials in URLs dropped."""
    from airgap.core.display import clean_lines

    print(clean_lines(message), file=sys.stderr)


class RichProgress:
    """A rich progress bar on stderr when it is a terminal; silent otherwise.

    ``counts=True`` shows "M/N" items (keys, clusters); the default shows bytes and speed.
    """

    def __init__(self, *, counts: bool = False) -> None:
        self._counts = counts
        self._progress: Any = None
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        if not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        amount = (MofNCompleteColumn(),) if self._counts else (DownloadColumn(), TransferSpeedColumn())
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *amount,
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


INSECURE_HELP = "Allow writes to a context with insecure-skip-tls-verify (its API server is not authenticated)."


def allow_insecure(insecure: bool) -> None:
    """``--insecure`` of a command that writes to clusters (see airgap.connected.kube.Kube.check_writable)."""
    from airgap.connected.kube import allow_insecure_writes

    allow_insecure_writes(insecure)
