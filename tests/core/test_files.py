from __future__ import annotations

from pathlib import Path

import pytest

from airgap.core.files import read_capped
from airgap.errors import InvalidInput


def test_reads_up_to_the_cap(tmp_path: Path) -> None:
    p = tmp_path / "k"
    p.write_bytes(b"x" * 10)
    assert read_capped(p, 10, "private key") == b"x" * 10


@pytest.mark.parametrize(
    "what,make,message",
    [
        ("private key", lambda p: None, "private key not found"),
        ("private key", lambda p: p.mkdir(), "is a folder, expected a private key"),
        ("age identity file", lambda p: p.mkdir(), "is a folder, expected an age identity file"),
        ("signature file", lambda p: p.write_bytes(b"x" * 11), "too large for a signature file"),
    ],
)
def test_errors_are_exit_3_with_the_file_named(tmp_path: Path, what: str, make: object, message: str) -> None:
    p = tmp_path / "f"
    make(p)  # type: ignore[operator]
    with pytest.raises(InvalidInput, match=message) as exc:
        read_capped(p, 10, what)
    assert str(exc.value).startswith(f"{p}: ") and exc.value.exit_code == 3
