"""One exclusive ``flock`` lock, used by the PKI folder, the jump host's import state and fetch.

:func:`exclusive_lock` opens (creating, mode 0600, never following a symlink) a lock file and
holds an exclusive ``flock`` on it for the block. When another process holds it, ``notify`` is
told once (``waiting for HOLDER (lock: PATH)``) before the call blocks, so a second run never
waits silently. The descriptor is close-on-exec, so no program the holder starts inherits the lock
(process-pool workers are started with the ``spawn`` method for the same reason: see
:mod:`airgap.core.workers`). A lock file left by a killed run is harmless: the kernel releases a
``flock`` with the last descriptor of the process that held it.

With ``folder=True`` ``path`` is a folder and the folder itself is locked: no lock file is made
(the gitops renderer does this, so its Git tree holds no lock file).

With ``remove_when_done`` the holder removes the lock file while it still holds the lock; a waiter
that then wakes up on the removed file sees that the path no longer names the file it locked and
starts over, so two processes never hold "the" lock at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from airgap.core.display import stderr_note
from airgap.errors import InvalidInput

Notify = Callable[[str], None]


def _open(path: Path, unwritable: str | None, folder: bool) -> int:
    try:
        if folder:  # lock the folder itself (no lock file in it)
            return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if unwritable is not None:
            raise InvalidInput(f"{unwritable}: {exc.strerror}") from exc
        raise InvalidInput(f"{path}: cannot open the lock file: {exc.strerror}") from exc


@contextlib.contextmanager
def exclusive_lock(
    path: Path,
    *,
    holder: str,
    notify: Notify | None = stderr_note,
    remove_when_done: bool = False,
    unwritable: str | None = None,
    folder: bool = False,
) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` for the block; say once through ``notify`` when waiting.

    ``holder`` names who else may hold it, for the waiting line ("another act on the PKI folder").
    ``unwritable`` is the start of the error line when the lock file cannot be opened (default:
    ``PATH: cannot open the lock file``); the reason follows it.
    """
    path = Path(path)
    waited = False
    while True:
        fd = _open(path, unwritable, folder)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited and notify is not None:
                    notify(f"waiting for {holder} (lock: {path})")
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not remove_when_done:
                break
            held = os.fstat(fd)
            try:
                now: os.stat_result | None = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the previous holder removed this file as it finished: lock the current one
    try:
        yield path
    finally:
        if remove_when_done:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # while still holding it: see the module docstring
        os.close(fd)


__all__ = ["Notify", "exclusive_lock", "stderr_note"]
