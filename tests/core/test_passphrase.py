from __future__ import annotations

from pathlib import Path

import pytest

from airgap.core.passphrase import read_passphrase_file, resolve_passphrase
from airgap.errors import InvalidInput


@pytest.mark.parametrize(
    "content,expected",
    [(b"pw\n", b"pw"), (b"pw\r\n", b"pw\r"), (b"pw", b"pw"), (b"p w \nnext\n", b"p w "), (b"pw\rx\n", b"pw\rx")],
)
def test_first_line_like_openssl(tmp_path: Path, content: bytes, expected: bytes) -> None:
    p = tmp_path / "p"
    p.write_bytes(content)
    assert read_passphrase_file(p) == expected


def test_empty_file_is_error(tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.write_bytes(b"\nsecond")
    with pytest.raises(InvalidInput, match="empty"):
        read_passphrase_file(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read passphrase file"):
        read_passphrase_file(tmp_path / "nope")


def test_env_var_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRGAP_PASSPHRASE", "from-env")
    assert resolve_passphrase(None) == b"from-env"
    p = tmp_path / "p"
    p.write_bytes(b"from-file\n")
    assert resolve_passphrase(p) == b"from-file"
    assert resolve_passphrase(None, no_passphrase=True) is None


def test_no_source_without_tty_is_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRGAP_PASSPHRASE", raising=False)
    with pytest.raises(InvalidInput, match="no passphrase"):
        resolve_passphrase(None)


def test_file_and_no_passphrase_conflict(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot be used together"):
        resolve_passphrase(tmp_path / "p", no_passphrase=True)


def test_a_crlf_passphrase_file_warns_and_keeps_the_cr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9 item 11: the '\\r' stays (openssl keeps it too), but never silently."""
    from airgap.core.passphrase import read_passphrase_file

    p = tmp_path / "pass.txt"
    p.write_bytes(b"secret\r\n")
    assert read_passphrase_file(p) == b"secret\r"
    err = capsys.readouterr().err
    assert err.startswith("airgap: warning: ") and "carriage return" in err and "secret" not in err
    p.write_bytes(b"secret\n")
    assert read_passphrase_file(p) == b"secret"
    assert capsys.readouterr().err == ""


def test_commands_without_no_passphrase_do_not_suggest_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRGAP_PASSPHRASE", raising=False)
    with pytest.raises(InvalidInput) as exc:
        resolve_passphrase(None, purpose="identity passphrase", offer_no_passphrase=False)
    assert "--no-passphrase" not in exc.value.message
    with pytest.raises(InvalidInput, match="or use --no-passphrase"):
        resolve_passphrase(None)
