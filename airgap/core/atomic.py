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
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from airgap.core.crashpoint import crash_point
from airgap.errors import InvalidInput, Refused

TMP_PREFIX = ".airgap-tmp-"
# A temp whose writer (the PID in its name) is gone is removed by the next writer in its folder
# once it is this old; the age guards against a writer this host cannot see (another PID
# namespace, a shared folder). Temps without a PID (older airgap versions) wait a day.
STALE_AFTER = 600.0
STALE_AFTER_WITHOUT_PID = 86_400.0
_swept: set[str] = set()


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


@contextlib.contextmanager
def output_dir(path: Path, mode: int = 0o755) -> Iterator[Path]:
    """:func:`ensure_dir` for a command's output folder ("created when missing"), undone on failure.

    When the block raises, the folders this call created (``path`` and missing parents) are
    removed again if they are still empty, so a refused or failed command leaves no new folder.
    """
    made: list[Path] = []
    p = Path(path)
    while not p.exists() and not p.is_symlink() and p != p.parent:
        made.append(p)
        p = p.parent
    ensure_dir(Path(path), mode)
    try:
        yield Path(path)
    except BaseException:
        for d in made:  # deepest first; stop at the first that is not empty
            try:
                d.rmdir()
            except OSError:
                break
        raise


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk, so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """``DIR/.airgap-tmp-NAME.PID.RANDOM``: hidden, unique, and naming the process that writes it."""
    return final.parent / f"{TMP_PREFIX}{final.name}.{os.getpid()}.{secrets.token_hex(6)}"


def _writer_pid(name: str) -> int | None:
    parts = name.rsplit(".", 2)
    if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 12:
        return int(parts[1])
    return None


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def is_stale_temp(path: Path, *, now: float | None = None) -> bool:
    """True for a temp left by a writer that is gone: its PID is dead and it is STALE_AFTER old."""
    if not path.name.startswith(TMP_PREFIX):
        return False
    try:
        age = (time.time() if now is None else now) - os.lstat(path).st_mtime
    except FileNotFoundError:
        return False
    pid = _writer_pid(path.name)
    if pid is None:
        return age > STALE_AFTER_WITHOUT_PID
    return pid != os.getpid() and age > STALE_AFTER and not _process_exists(pid)


def sweep_stale_temps(folder: Path) -> None:
    """Remove the stale temps (:func:`is_stale_temp`) of ``folder``, once per folder and process.

    Every writer calls it (no lock needed: a live writer's temps are never stale), so a killed
    run's hidden leftovers -- which may hold a plaintext key -- go with the next write there.
    """
    key = os.path.abspath(folder)
    if key in _swept:
        return
    _swept.add(key)
    try:
        children = list(Path(folder).iterdir())
    except OSError:
        return
    for child in children:
        if is_stale_temp(child):
            _remove(child)


def _remove(child: Path) -> None:
    if child.is_dir() and not child.is_symlink():
        shutil.rmtree(child, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            child.unlink()


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
        sweep_stale_temps(self.path.parent)
        tmp = temp_name(self.path)
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
        with naming(self.path):  # a full disk names the file being written, never just "output"
            try:
                if exc_type is None:
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                with contextlib.suppress(OSError) if exc_type is not None else contextlib.nullcontext():
                    self._fh.close()  # after a failed write: the buffer's second failure is not news
                if exc_type is None:
                    publish(tmp, self.path, replace=self.replace)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            if isinstance(exc, OSError) and exc.filename is None:
                raise exc  # re-raised inside naming(): with the file's name


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An :class:`OSError` without a file name (a write, flush or fsync on a full disk) is raised
    again naming ``path``, so the user learns which file could not be written (issue 23, fault 8)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


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


def write_staged(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """A new file inside a folder that :func:`staged_dir` is building: no temp name, no fsync of its own.

    The folder is only published after ``staged_dir`` has fsynced every file in it, so the file is
    written once, exclusively (exit 4 if it exists), with ``mode`` from the start.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise Refused(f"{path}: already exists; refusing to overwrite") from exc
    with naming(path), os.fdopen(fd, "wb") as fh:
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
    sweep_stale_temps(final.parent)
    tmp = temp_name(final)
    try:
        tmp.mkdir(mode=mode)
    except PermissionError as exc:
        raise InvalidInput(f"{final.parent}: folder is not writable") from exc
    try:
        yield tmp
        for child in tmp.rglob("*"):
            if child.is_file():
                with naming(final / child.relative_to(tmp)), open(child, "rb") as fh:
                    os.fsync(fh.fileno())
            elif child.is_dir():
                fsync_dir(child)  # a sub-folder's entries, as the top folder's below
        with naming(final):
            fsync_dir(tmp)
            publish(tmp, final, replace=False)
    except OSError as exc:  # a file of the temporary folder is named by its final name
        name = exc.filename if isinstance(exc.filename, str) else None
        if name is not None and exc.errno is not None and name.startswith(f"{tmp}/"):
            raise OSError(exc.errno, exc.strerror, f"{final}{name[len(str(tmp)) :]}") from exc
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(folder: Path) -> None:
    """Remove temp files and folders left behind by a killed run (names start with TMP_PREFIX)."""
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        if child.name.startswith(TMP_PREFIX):
            _remove(child)
