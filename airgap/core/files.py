"""Reading small untrusted files (keys, identities, signatures) with a size cap and clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO

from airgap.errors import InvalidInput, NotFound, TooLarge, UnsafePath


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """The bytes of ``path``, at most ``cap``; missing, a folder, unreadable or larger is exit 3.

    ``what`` names the file in the messages ("private key", "age identity file", ...).
    """
    article = "an" if what[:1].lower() in "aeiou" else "a"
    try:
        with open(path, "rb") as fh:
            data = fh.read(cap + 1)
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: {what} not found") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a folder, expected {article} {what}") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what}: {exc.strerror}") from exc
    if len(data) > cap:
        raise TooLarge(f"{path}: too large for {article} {what}")
    return data


def open_regular(path: Path, what: str) -> IO[bytes]:
    """``path`` opened for reading, refused at once (exit 3) unless it is a regular file."""
    return os.fdopen(open_regular_fd(path, what), "rb")


def open_regular_fd(path: Path, what: str) -> int:
    """The one safe open of a file airgap reads: a descriptor, refused at once (exit 3) unless a regular file.

    The open is non-blocking so a fifo with no writer (or a device) is refused instead of
    hanging the command forever; the descriptor is switched back to blocking before use.
    ``what`` names the file in the messages ("archive", "file", "private key" ...).
    """
    article = "an" if what[:1].lower() in "aeiou" else "a"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: {what} not found") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a folder, expected {article} {what}") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what}: {exc.strerror}") from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InvalidInput(f"{path}: is a folder, expected {article} {what}")
        raise UnsafePath(f"{path}: not a regular file (expected {article} {what})")
    os.set_blocking(fd, True)
    return fd
