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


def test_a_pipe_is_read_and_a_fifo_without_writer_reads_empty_instead_of_hanging(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.write(write, b"from a pipe")
    os.close(write)
    try:
        assert read_capped(Path(f"/proc/self/fd/{read}"), 100, "passphrase file") == b"from a pipe"
    finally:
        os.close(read)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # In a child, so that a regression hangs one process (killed by the timeout) and not the suite.
    code = (
        "from pathlib import Path; from airgap.core.files import read_capped; "
        f"print(read_capped(Path({str(fifo)!r}), 9, 'x'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "b''"
