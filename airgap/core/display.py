"""Showing values that come from an untrusted source: one helper, used everywhere they are printed.

Log fields, bundle manifests, YAML, names and annotations read back from a cluster may hold rich
markup (``[bold red]``), ANSI escape sequences, carriage returns or bidi overrides that would
restyle or spoof an auditor's screen. :func:`clean` turns every control and format character into a
visible escape (``\\x1b``, ``\\u202e``) and keeps the value on one line; :func:`markup` also escapes
rich markup for strings that go through a rich console; :func:`console` is the rich console the
CLI prints with (full width when stdout is not a terminal, so pipes and cron mail are never cut).

Trust: nothing. Every function takes any value and returns text that is safe to print.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

# Wide enough that no table or line is ever cut when the output is a pipe or a file.
PIPE_WIDTH = 10_000


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# scheme://userinfo@ : the user-info runs to the last "@" before the authority ends ("/", "?", "#",
# whitespace, or a quote when the URL sits inside a JSON string or a repr).
_USERINFO = re.compile(r"""(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s"'\\<>]*@""")


def without_userinfo(text: str) -> str:
    """``text`` with the user-info (``alice:S3cretPW@``) removed from every URL in it.

    ``https://alice:S3cretPW@host/asm`` becomes ``https://host/asm``. Used for every URL airgap
    prints or records: error lines and notes (through :func:`clean`), ``--json`` documents, and
    the URLs a command keeps (``release fetch``'s ``url``).
    """
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(r"\1", text)


def clean(value: object) -> str:
    """``value`` as one printable line: control (Cc), format (Cf: bidi overrides, zero-width),
    line/paragraph separator (Zl/Zp) and unassigned/surrogate characters become visible escapes;
    credentials in URLs are dropped (:func:`without_userinfo`).

    Printable text, spaces and non-ASCII letters are kept as they are.
    """
    text = without_userinfo(value if isinstance(value, str) else str(value))
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":
            out.append(" ")
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def clean_lines(value: str) -> str:
    """Several lines (a report): each one :func:`clean`, the line breaks kept."""
    return "\n".join(clean(line) for line in value.split("\n"))


def markup(value: object) -> str:
    """:func:`clean`, then rich markup escaped: safe inside a string a rich console renders."""
    from rich.markup import escape

    return escape(clean(value))


def text(value: object) -> Text:
    """A rich ``Text`` (never parsed as markup) holding :func:`clean` ``(value)``: for table cells."""
    from rich.text import Text

    return Text(clean(value))


def is_terminal(*, stderr: bool = False) -> bool:
    """True when stdout (or stderr) is a terminal; False for pipes, files and cron mail."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def short(value: object, n: int) -> str:
    """``value`` cut to ``n`` characters and "…" on a terminal; whole when the output is piped."""
    s = clean(value)
    return s[:n] + "…" if is_terminal() and len(s) > n else s


def console(*, stderr: bool = False, **kwargs: Any) -> Console:
    """The CLI's rich console: on a terminal its width; otherwise wide enough to cut nothing."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if not is_terminal(stderr=stderr):
        kwargs.setdefault("width", PIPE_WIDTH)
        kwargs.setdefault("no_color", True)
        kwargs.setdefault("highlight", False)

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's default exits 1, the contract's "verification failed": let the CLI exit 141
            self.quiet = True
            raise BrokenPipeError

    return _Console(stderr=stderr, file=stream, **kwargs)


__all__ = [
    "PIPE_WIDTH",
    "clean",
    "clean_lines",
    "console",
    "is_terminal",
    "markup",
    "short",
    "stderr_note",
    "text",
    "without_userinfo",
]


def stderr_note(message: str) -> None:
    """The default ``notify`` of library calls: one line on stderr (credentials in URLs dropped)."""
    print(without_userinfo(message), file=sys.stderr, flush=True)
