"""Issue 9 items 8 and 11: one helper shows untrusted values safely; piped output is never cut."""

from __future__ import annotations

import io

import pytest

from airgap.core import display


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, é ü ß", "plain text, é ü ß"),
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("bell\x07 cr\r lf\n nul\x00 del\x7f", "bell\\x07 cr\\x0d lf\\x0a nul\\x00 del\\x7f"),
        ("bidi \u202eevil", "bidi \\u202eevil"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("c1 \x9b31m", "c1 \\x9b31m"),
        ("line\u2028sep", "line\\u2028sep"),
    ],
)
def test_clean_makes_every_control_and_format_character_visible(raw: str, shown: str) -> None:
    assert display.clean(raw) == shown
    assert display.clean(raw).isprintable()


def test_clean_takes_any_value() -> None:
    assert display.clean(12) == "12" and display.clean(None) == "None"


def test_markup_is_shown_literally_by_rich() -> None:
    from rich.console import Console

    buf = io.StringIO()
    con = Console(file=buf, width=200, force_terminal=True, color_system="truecolor", highlight=False)
    con.print(display.markup("[bold red]ALERT[/] [/] [link=http://x]y[/link]"))
    con.print(display.text("[bold red]cell[/]"))
    out = buf.getvalue()
    assert "[bold red]ALERT[/] [/] [link=http://x]y[/link]" in out
    assert "[bold red]cell[/]" in out
    assert "\x1b[1m" not in out and "\x1b[31m" not in out  # no styling came from the value


def test_a_console_on_a_pipe_is_wide_and_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", io.StringIO())
    con = display.console()
    assert con.width == display.PIPE_WIDTH
    assert not display.is_terminal()
    assert display.short("f" * 64, 16) == "f" * 64  # piped: never cut


def test_short_cuts_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdout", Tty())
    assert display.short("f" * 64, 16) == "f" * 16 + "…"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("https://alice:S3cretPW@host/asm", "https://host/asm"),
        ("fetch https://alice:p@ss@host:8443/x?y=1 failed", "fetch https://host:8443/x?y=1 failed"),
        ('{"url": "https://bob:pw@h/a", "b": "ok@x"}', '{"url": "https://h/a", "b": "ok@x"}'),
        ("HTTPS://tok@H", "HTTPS://H"),
        ("mail alice@example.com, see https://host/a@b", "mail alice@example.com, see https://host/a@b"),
    ],
)
def test_without_userinfo_drops_credentials_from_every_url(given: str, shown: str) -> None:
    from airgap.core.display import without_userinfo

    assert without_userinfo(given) == shown
    assert display.clean(given) == shown
