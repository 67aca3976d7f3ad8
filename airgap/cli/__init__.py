"""The ``airgap`` command line: thin typer apps over the library.

Every :class:`~airgap.errors.AirgapError` becomes its exit code and one stderr line here, in
:func:`main`, and nowhere else. Usage errors stay click's exit 2. Typer's pretty exceptions are
off: they print local variables, and locals can hold passphrases and keys.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import typer

from airgap import __version__
from airgap.cli import audit, bundle, ca, ca_csr, custody, images, keys, mesh, release
from airgap.cli._app import new_app
from airgap.cli.doctor import register as register_doctor
from airgap.errors import AirgapError

app = new_app(
    help="Service-mesh PKI and installs across an air gap, with every byte verified.\n\n"
    "Offline (root host): ca, keys, bundle create, release verify, audit.\n"
    "Connected (jump host): release fetch/extract, bundle verify/import, mesh, preflight.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"airgap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors (never secrets)."),
) -> None:
    """airgap: the offline and connected halves of a service-mesh PKI."""
    if debug:
        os.environ["AIRGAP_DEBUG"] = "1"


assert ca_csr.app is ca.app  # ca_csr registers ca sign / ca request on the ca group
app.add_typer(ca.app, name="ca")
ca.app.add_typer(custody.app, name="custody")
app.add_typer(keys.app, name="keys")
app.add_typer(bundle.app, name="bundle")
app.add_typer(release.app, name="release")
app.add_typer(mesh.app, name="mesh")
app.add_typer(audit.app, name="audit")
app.add_typer(images.app, name="images")
mesh.register_top_level(app)
register_doctor(app)


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value


def _strict_parameters(root: typer.Typer) -> None:
    """Two rules typer does not apply by itself, set on every parameter of every command:

    * Path parameters get no ``readable`` check (typer ≥ 0.20 defaults it on): an unreadable file
      must be the contract's exit 3 with airgap's one-line error, raised by the command that opens
      it, not click's usage error (exit 2).
    * A float option (its default is a float) refuses ``nan`` and ``inf`` with exit 2: click's
      FloatRange lets NaN through, since every comparison with it is false.
    """
    import inspect

    from typer.models import ParameterInfo

    for info in root.registered_commands:
        if info.callback is not None:
            for p in inspect.signature(info.callback).parameters.values():
                if isinstance(p.default, ParameterInfo):
                    p.default.readable = False
                    if isinstance(p.default.default, float) and p.default.callback is None:
                        p.default.callback = _finite
    for group in root.registered_groups:
        if group.typer_instance is not None:
            _strict_parameters(group.typer_instance)


_strict_parameters(app)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C so every writer's ``finally`` removes its temp."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """While the command runs, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG})


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the app, map errors to exit codes, exit.

    Typer runs in standalone mode, so usage errors keep its own message and exit 2, and
    ``--help``/``--version`` exit 0 by themselves.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("AIRGAP_DEBUG") == "1"
    try:
        with _signals_unwind():
            try:
                app(args=args, prog_name="airgap")
            except SystemExit as exc:
                # typer's click wraps stdout in PacifyFlushWrapper when it exits 1 on EPIPE
                if exc.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
                    raise BrokenPipeError from exc  # click's own EPIPE exit (1): the reader went away
                raise
    except Terminated as exc:
        print(
            f"airgap: terminated by {signal.Signals(exc.signum).name}; nothing half-written was kept", file=sys.stderr
        )
        sys.exit(128 + exc.signum)
    except AirgapError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        from airgap.core.display import clean

        # One line, whatever the message quotes from an untrusted file, cluster or log.
        print(f"airgap: error: {clean(exc.message)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("airgap: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (`| head -1`): exit as a shell reports SIGPIPE (141), never 1,
        # which the contract keeps for "verification failed". stdout now points at /dev/null so
        # the interpreter's last flush cannot print a second error.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(128 + signal.SIGPIPE)
    except OSError as exc:
        # The environment failed under us (stdout on a full disk, an I/O error): one line, exit 3,
        # not "internal error"; the file, when Python names one, is in the message.
        if debug:
            raise
        from airgap.core.display import clean

        where = f"{exc.filename}: " if exc.filename else "output: " if exc.errno in _WRITE_ERRNOS else ""
        print(f"airgap: error: {clean(where)}{clean(exc.strerror or type(exc).__name__)}", file=sys.stderr)
        sys.exit(3)
    except Exception as exc:
        if debug:
            raise
        print(
            f"airgap: internal error: {type(exc).__name__} (run with --debug for details)",
            file=sys.stderr,
        )
        sys.exit(70)
