from __future__ import annotations

from pathlib import Path

import pytest

from airgap.errors import InvalidInput
from airgap.offline.pkcs11 import read_pin_file


def test_first_line_is_the_pin(tmp_path: Path) -> None:
    p = tmp_path / "pin"
    p.write_bytes(b"1234\nignored\n")
    assert read_pin_file(p) == "1234"


@pytest.mark.parametrize("content,message", [(b"\n", "PIN file is empty"), (b"\xff\xfe\n", "PIN file is not UTF-8")])
def test_bad_pin_files(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "pin"
    p.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        read_pin_file(p)


def test_missing_pin_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read PIN file"):
        read_pin_file(tmp_path / "nope")
