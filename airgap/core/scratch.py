"""Private scratch folders that a killed run does not leave behind for ever.

A run that is killed with SIGKILL (or loses power) cannot remove its scratch folder; for
``images push`` that folder holds a copy of every verified blob. So every scratch folder is named
``PREFIX<pid>-<random>``, and before a run makes its own it removes the folders of its prefix
that a run which no longer exists left behind.

Trust: the folders are this user's (0700, made by :func:`tempfile.mkdtemp`). The sweep removes only
a folder (never a link or a file) whose name has this prefix, that this user owns, whose process
no longer runs, and that nobody has touched for :data:`STALE_AFTER` seconds (so that a run in
another PID namespace sharing the folder is not mistaken for a dead one while it works).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

STALE_AFTER = 600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def sweep(parent: Path, prefix: str, *, now: float | None = None) -> list[Path]:
    """Remove the scratch folders ``PREFIX<pid>-*`` in ``parent`` that a dead run left; the removed ones."""
    pattern = re.compile(re.escape(prefix) + r"(\d{1,10})-[A-Za-z0-9_]+")
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or now - st.st_mtime < STALE_AFTER:
            continue
        if int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A new private folder ``PARENT/PREFIX<pid>-<random>`` (default: the system temp folder), removed
    on the way out, an error or Ctrl-C included; left-overs of killed runs are swept first."""
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep(base, prefix)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = ["STALE_AFTER", "scratch_dir", "sweep"]
