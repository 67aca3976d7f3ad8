"""Atomic file writes: temp file in the same folder, fsync, rename (or link), fsync the folder.

Two policies:

* :func:`write_new` never replaces an existing file (it publishes with ``link(2)``, which fails if
  the name exists, so there is no check-then-write race). Keys and certificates use it.
* :func:`write_replace` atomically replaces (state files, inventories).

:class:`AtomicFile` streams large outputs the same way, and :func:`staged_dir` builds a whole
folder beside its final name and renames it into place only when complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from airgap.core.crashpoint import crash_point
from airgap.errors import InvalidInput, Refused

TMP_PREFIX = ".airgap-tmp-"


def ensure_dir(path: Path, mode: int = 0o755) -> Path:
    """Create ``path`` and its parents when missing; a clear error if that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except FileExistsError as exc:
        raise InvalidInput(f"{path}: exists and is not a folder") from exc
    except PermissionError as exc:
        raise InvalidInput(f"{path}: cannot create folder: parent folder is not writable") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot create folder: {exc.strerror}") from exc
    if not path.is_dir():
        raise InvalidInput(f"{path}: exists and is not a folder")
    return path


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk, so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(final: Path) -> Path:
    return final.parent / f"{TMP_PREFIX}{final.name}.{secrets.token_hex(6)}"


class AtomicFile:
    """A file written under a temporary name and published only on a clean ``close``.

    >>> with AtomicFile(Path("out.bin"), mode=0o600) as f:
    ...     f.write(b"...")

    On an exception inside the block the temporary file is removed and nothing is published.
    With ``replace=False`` (the default) an existing final file is never replaced: :class:`Refused`.
    """

    def __init__(self, path: Path, *, mode: int = 0o644, replace: bool = False) -> None:
        self.path = Path(path)
        self.mode = mode
        self.replace = replace
        self._tmp: Path | None = None
        self._fh: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if not self.replace and self.path.exists():
            raise Refused(f"{self.path}: already exists; refusing to overwrite")
        ensure_dir(self.path.parent)
        tmp = _temp_name(self.path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        except PermissionError as exc:
            raise InvalidInput(f"{self.path.parent}: folder is not writable") from exc
        except OSError as exc:
            raise InvalidInput(f"{self.path}: cannot write: {exc.strerror}") from exc
        os.fchmod(fd, self.mode)  # umask must not widen or narrow what we asked for
        self._tmp = tmp
        self._fh = os.fdopen(fd, "wb")
        return self._fh

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._fh is not None and self._tmp is not None
        tmp = self._tmp
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None:
                publish(tmp, self.path, replace=self.replace)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def publish(tmp: Path, final: Path, *, replace: bool) -> None:
    """Move a complete temp file (or folder, with ``replace=False``) to its final name."""
    crash_point()
    if replace:
        os.replace(tmp, final)
    elif tmp.is_dir():
        # rename(2) would silently replace an *empty* folder; refuse any existing name first.
        if final.exists() or final.is_symlink():
            raise Refused(f"{final}: already exists; refusing to overwrite")
        os.rename(tmp, final)
    else:
        try:
            os.link(tmp, final)  # fails with EEXIST: never replaces, no race
        except FileExistsError as exc:
            raise Refused(f"{final}: already exists; refusing to overwrite") from exc
        tmp.unlink()
    fsync_dir(final.parent)


def move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (same file system) and flush both folders: one step of a swap."""
    crash_point()
    os.rename(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


def write_new(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to a new file ``path`` atomically; refuse (exit 4) if it exists."""
    with AtomicFile(path, mode=mode) as fh:
        fh.write(data)


def write_replace(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Atomically replace ``path`` with ``data`` (state files and records)."""
    with AtomicFile(path, mode=mode, replace=True) as fh:
        fh.write(data)


@contextlib.contextmanager
def staged_dir(final: Path, *, mode: int = 0o755) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; rename it to ``final`` on success.

    Refuses (exit 4) when ``final`` exists. On any error the temporary folder is removed, so a
    failed command leaves nothing half-written under the final name.
    """
    if final.exists() or final.is_symlink():
        raise Refused(f"{final}: already exists; refusing to overwrite")
    ensure_dir(final.parent)
    tmp = _temp_name(final)
    try:
        tmp.mkdir(mode=mode)
    except PermissionError as exc:
        raise InvalidInput(f"{final.parent}: folder is not writable") from exc
    try:
        yield tmp
        for child in tmp.rglob("*"):
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        publish(tmp, final, replace=False)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(folder: Path) -> None:
    """Remove temp files and folders left behind by a killed run (names start with TMP_PREFIX)."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name.startswith(TMP_PREFIX):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
