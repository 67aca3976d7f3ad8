"""Reading small untrusted files (keys, identities, signatures) with a size cap and clear errors."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from airgap.errors import InvalidInput, NotFound, TooLarge, UnsafePath


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """The bytes of ``path``, at most ``cap``; missing, a folder, unreadable or larger is exit 3.

    ``what`` names the file in the messages ("private key", "age identity file", ...). A pipe is
    read (``--passphrase-file <(...)`` style process substitution), but the open never waits for a
    writer: a named fifo nobody writes to reads as empty instead of hanging the command.
    """
    with _open_errors(path, what):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(cap + 1)
    if len(data) > cap:
        raise TooLarge(f"{path}: too large for {_article(what)} {what}")
    return data


def _article(what: str) -> str:
    return "an" if what[:1].lower() in "aeiou" else "a"


@contextlib.contextmanager
def _open_errors(path: Path, what: str) -> Iterator[None]:
    """The one translation of a failed open or read into the contract's exit 3 lines."""
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: {what} not found") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a folder, expected {_article(what)} {what}") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what}: {exc.strerror}") from exc


def open_regular(path: Path, what: str) -> IO[bytes]:
    """``path`` opened for reading, refused at once (exit 3) unless it is a regular file."""
    return os.fdopen(open_regular_fd(path, what), "rb")


def open_regular_fd(path: Path, what: str) -> int:
    """The one safe open of a file airgap reads: a descriptor, refused at once (exit 3) unless a regular file.

    The open is non-blocking so a fifo with no writer (or a device) is refused instead of
    hanging the command forever; the descriptor is switched back to blocking before use.
    ``what`` names the file in the messages ("archive", "file", "private key" ...).
    """
    article = _article(what)
    with _open_errors(path, what):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InvalidInput(f"{path}: is a folder, expected {article} {what}")
        raise UnsafePath(f"{path}: not a regular file (expected {article} {what})")
    os.set_blocking(fd, True)
    return fd
