"""Atomic file writes: temp file in the same folder, fsync, rename (or link), fsync the folder.

Two policies:

* :func:`write_new` never replaces an existing file (it publishes with ``link(2)``, which fails if
  the name exists, so there is no check-then-write race). Keys and certificates use it.
* :func:`write_replace` atomically replaces (state files, inventories).

Every file airgap creates -- temporary names included -- is created by :func:`create_file`
(``O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC``, mode explicit) or, for the few files a run resumes or
appends to (a download's ``.part``, the jump host's history), opened by :func:`open_for_update`
(``O_NOFOLLOW``, a regular file with one link only). A publish never publishes a link
(:func:`link_regular`, :func:`publish`) and never replaces a link or a non-file silently.

:class:`AtomicFile` streams large outputs the same way, and :func:`staged_dir` builds a whole
folder beside its final name and renames it into place only when complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

from airgap.core.crashpoint import crash_point
from airgap.errors import InvalidInput, WouldOverwrite

TMP_PREFIX = ".airgap-tmp-"
# A temp whose writer (the PID in its name) is gone is removed by the next writer in its folder
# once it is this old; the age guards against a writer this host cannot see (another PID
# namespace, a shared folder). Temps without a PID (older airgap versions) wait a day.
STALE_AFTER = 600.0
STALE_AFTER_WITHOUT_PID = 86_400.0
_swept: set[str] = set()
_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two names atomically
_AT_FDCWD = -100


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


CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_file(path: Path, mode: int) -> int:
    """Create ``path`` (never through a link, never over anything) with exactly ``mode``; a descriptor.

    The one way airgap creates a file: an existing name -- a planted symlink included -- is
    :class:`~airgap.errors.WouldOverwrite` (exit 4); an unwritable folder or other failure is :class:`InvalidInput`.
    """
    try:
        fd = os.open(path, CREATE_FLAGS, mode)
    except FileExistsError as exc:
        raise WouldOverwrite(f"{path}: already exists; refusing to overwrite") from exc
    except PermissionError as exc:
        raise InvalidInput(f"{Path(path).parent}: folder is not writable") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write: {exc.strerror}") from exc
    os.fchmod(fd, mode)  # umask must not widen or narrow what we asked for
    return fd


def open_for_update(path: Path, *, mode: int = 0o644, append: bool = False, truncate: bool = False) -> int:
    """Open (or create) ``path`` for writing more of it: a resumed download, an append-only record.

    Never through a link (``O_NOFOLLOW``); refused (exit 4) unless what is there is a regular
    file with no other name (a planted hard link would let the write reach another file).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    flags |= os.O_APPEND if append else 0
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if Path(path).is_symlink() or exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise WouldOverwrite(f"{path}: exists and is not a regular file; refusing to write through it") from exc
        raise InvalidInput(f"{path}: cannot write: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise WouldOverwrite(f"{path}: exists and is not a regular file; refusing to write through it")
    os.set_blocking(fd, True)
    if truncate:
        os.ftruncate(fd, 0)
    return fd


def link_regular(src: Path, final: Path) -> None:
    """Give the regular file ``src`` the new name ``final`` (``link(2)``: never replaces, exit 4).

    Refused when ``src`` is not a regular file by then (swapped for a link): a link is never
    published. The caller removes ``src`` and flushes the folder.
    """
    before = os.lstat(src)
    if not stat.S_ISREG(before.st_mode):
        raise WouldOverwrite(f"{src}: is not a regular file; refusing to publish it as {final}")
    try:
        os.link(src, final, follow_symlinks=False)
    except FileExistsError as exc:
        raise WouldOverwrite(f"{final}: already exists; refusing to overwrite") from exc
    after = os.lstat(final)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        with contextlib.suppress(OSError):
            os.unlink(final)
        raise WouldOverwrite(f"{src}: changed while being published as {final}; nothing published")


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
            raise WouldOverwrite(f"{self.path}: already exists; refusing to overwrite")
        ensure_dir(self.path.parent)
        sweep_stale_temps(self.path.parent)
        tmp = temp_name(self.path)
        fd = create_file(tmp, self.mode)
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
        _check_replaceable(final)
        os.replace(tmp, final)
    elif tmp.is_dir():
        # rename(2) would silently replace an *empty* folder; refuse any existing name first.
        if final.exists() or final.is_symlink():
            raise WouldOverwrite(f"{final}: already exists; refusing to overwrite")
        os.rename(tmp, final)
    else:
        link_regular(tmp, final)  # fails with EEXIST: never replaces, no race
        tmp.unlink()
    fsync_dir(final.parent)


def _check_replaceable(final: Path) -> None:
    """A file replaced in place must be a regular file (or absent): a link or a folder is refused."""
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise WouldOverwrite(f"{final}: exists and is not a regular file; refusing to replace it")


def move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (same file system) and flush both folders: one step of a swap."""
    crash_point()
    os.rename(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


def exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Where the call is missing, two renames through a temporary name; recovery then still finds
    both folders or finishes the swap (see :func:`_recover_rotate`).
    """
    crash_point()
    libc_name = ctypes.util.find_library("c")
    fn = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None) if libc_name else None
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            fsync_dir(a.parent)
            return
        err = ctypes.get_errno()
        if err not in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: fall back below
            raise OSError(err, os.strerror(err), str(a))
    spare = a.parent / f".exchange-{a.name}"  # pragma: no cover - only without renameat2
    move(a, spare)  # pragma: no cover
    move(b, a)  # pragma: no cover
    move(spare, b)  # pragma: no cover


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
    fd = create_file(path, mode)
    with naming(path), os.fdopen(fd, "wb") as fh:
        fh.write(data)


@contextlib.contextmanager
def staged_dir(final: Path, *, mode: int = 0o755) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``final``; rename it to ``final`` on success.

    Refuses (exit 4) when ``final`` exists. On any error the temporary folder is removed, so a
    failed command leaves nothing half-written under the final name.
    """
    if final.exists() or final.is_symlink():
        raise WouldOverwrite(f"{final}: already exists; refusing to overwrite")
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
            if child.is_file() and not child.is_symlink():
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
