"""Safe extraction of untrusted ``.tar.gz`` and ``.zip`` archives.

Nothing in an archive is trusted, not even after its signature verified (a signed archive can still
be hostile or broken). Every member goes through these steps before a byte is written:

1. Its name: no absolute path, no ``..`` component, no backslash or drive letter, no NUL.
2. Its type: regular files, folders, and (tar only) symbolic and hard links inside the tree.
   Devices, FIFOs and anything else are refused.
3. For tar: the standard library's PEP 706 ``data`` filter (which also strips setuid/setgid and
   group/other write bits) on top of the checks above, which it lacks (it silently strips a
   leading ``/`` instead of refusing it, and it allows ``a/../b``).
4. Caps from :class:`~airgap.core.limits.Limits`: member count, total extracted bytes (counted
   as written, not as the header claims), and the expansion ratio (a decompression bomb).
5. Writes never follow a link: every parent folder is checked with ``lstat`` and files are
   created with ``O_EXCL | O_NOFOLLOW``; duplicate names are refused.
6. When everything is written, every symbolic link is resolved once more against the final
   tree and must stay inside it (catches link chains that only escape once complete).

Everything is extracted into a temporary folder beside the output folder, which is renamed into
place only when all steps passed: a refused archive leaves nothing behind. Unsafe archives raise
:class:`~airgap.errors.InvalidInput` (exit 3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from airgap.core.atomic import ensure_dir, staged_dir
from airgap.core.files import open_regular_fd
from airgap.core.hashing import Digests, WriteBehind, hash_fd
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.names import unsafe_member_name
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.errors import InvalidInput, Refused

CHUNK = 1024 * 1024  # one read of decompressed data, one write
IN_CHUNK = 256 * 1024  # one read of compressed data (inflated at most CHUNK at a time)
# The ratio cap applies once this much was extracted: tiny archives of text compress well by nature.
RATIO_FLOOR = 1024 * 1024


@dataclass(frozen=True)
class ExtractedFile:
    """One extracted member: relative POSIX path, kind, and for files their SHA-256, size and mode."""

    path: str
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    sha256: str | None = None
    size: int = 0
    mode: int = 0
    target: str | None = None  # link target (symlink: as stored; hardlink: the member it links to)


def archive_kind(path: Path) -> str:
    """``"tar"`` for ``.tar.gz``/``.tgz``/``.tar``, ``"zip"`` for ``.zip``; anything else is exit 3."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".zip"):
        return "zip"
    raise InvalidInput(f"{path}: not a .tar.gz or .zip archive")


def check_member_name(name: str, *, source: str) -> str:
    """Step 1: return the normalised relative POSIX name, or refuse (exit 3)."""
    why = unsafe_member_name(name)
    if why in ("empty", "nul"):
        raise InvalidInput(f"{source}: unsafe member with an empty or NUL name")
    if why is not None:
        reason = {"absolute": "absolute path", "backslash": "backslash in path", "dotdot": "'..' in path"}[why]
        raise InvalidInput(f"{source}: unsafe member {name!r}: {reason}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return "."
    return "/".join(parts)


class _Budget:
    """Step 4: member count, total bytes and expansion ratio."""

    def __init__(self, source: str, archive_size: int, limits: Limits) -> None:
        self.source = source
        self.archive_size = max(archive_size, 1)
        self.limits = limits
        self.members = 0
        self.total = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_archive_members:
            raise InvalidInput(f"{self.source}: more than {self.limits.max_archive_members} members; refusing")

    def add(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_archive_total:
            raise InvalidInput(
                f"{self.source}: extracts to more than {self.limits.max_archive_total} bytes; "
                "refusing (decompression bomb?)"
            )
        if self.total > RATIO_FLOOR and self.total > self.limits.max_archive_ratio * self.archive_size:
            raise InvalidInput(
                f"{self.source}: expands more than {self.limits.max_archive_ratio}x; refusing (decompression bomb?)"
            )


def _check_parents(root: Path, rel: str, source: str) -> Path:
    """Step 5: create missing parent folders of ``rel``; refuse if any existing one is not a real folder."""
    target = root
    parts = rel.split("/")
    for part in parts[:-1]:
        target = target / part
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            target.mkdir(mode=0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidInput(f"{source}: unsafe member {rel!r}: passes through a link or file")
    return target / parts[-1]


class _TarSource:
    """The archive's tar stream, read from ``fd`` in big chunks (``pread``: the fd's position is not
    used), gunzipped when it starts with the gzip magic, every byte read fed to ``digests``.

    Inflating is bounded: at most :data:`CHUNK` bytes come out per call whatever the input, so a
    bomb cannot grow the memory before :class:`_Budget` refuses it. Multi-member gzip files and
    zero padding between members are read as :mod:`gzip` does; zlib checks each member's CRC-32
    and length trailer.
    """

    def __init__(self, fd: int, digests: Digests | None) -> None:
        self._fd, self._digests = fd, digests
        self.pos = 0  # bytes of the archive read (and hashed) so far
        self._buf = bytearray(IN_CHUNK)
        self._view = memoryview(self._buf)
        self._gzip = os.pread(fd, 2, 0) == b"\x1f\x8b"
        self._z: zlib._Decompress | None = zlib.decompressobj(31) if self._gzip else None
        self._tail: bytes | memoryview = b""  # compressed bytes read but not yet inflated

    def _read_raw(self) -> memoryview:
        """The next chunk of the file, hashed, as a view of the reused buffer (valid until the
        next call)."""
        n = os.preadv(self._fd, [self._view], self.pos)
        self.pos += n
        if n and self._digests is not None:
            self._digests.update(self._view[:n])
        return self._view[:n]

    def read(self, size: int = CHUNK) -> bytes:
        if self._z is None:
            return bytes(self._read_raw())
        while True:
            if not self._tail:
                self._tail = self._read_raw()  # inflated straight from the buffer, no copy
                if not self._tail:
                    return b""  # truncated (tarfile refuses) or the end
            if self._z.eof:  # a gzip member ended: padding, then maybe another member
                self._tail = bytes(self._tail).lstrip(b"\x00")
                if not self._tail:
                    continue
                self._z = zlib.decompressobj(31)
            out = self._z.decompress(self._tail, min(max(size, 1), CHUNK))
            self._tail = self._z.unconsumed_tail or self._z.unused_data
            if out:
                return out

    def finish(self, budget: _Budget) -> None:
        """Read the rest of the file (what tarfile did not need after the end-of-archive blocks):
        the gzip stream must end properly (zlib checks its CRC-32 and length); what it inflates to
        still counts against the caps."""
        while chunk := self.read(CHUNK):
            budget.add(len(chunk))
        if self._z is not None and not self._z.eof:
            raise InvalidInput(f"{budget.source}: not a valid tar archive: the gzip stream is truncated")


def _write_member(
    writer: WriteBehind,
    dest: Path,
    stream: IO[bytes],
    mode: int,
    budget: _Budget,
    progress: Progress,
    rel: str,
    open_files: list[BinaryIO],
) -> Digests:
    """Create ``dest`` (never through a link, never over a file) and hand its bytes to the
    write-behind worker, which hashes and writes them; the worker also sets the mode and closes
    the file. The returned digests are complete once the worker is drained."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(dest, flags, 0o600)
    except FileExistsError as exc:
        raise InvalidInput(f"{budget.source}: unsafe archive: member {rel!r} appears twice") from exc
    out = os.fdopen(fd, "wb")
    open_files.append(out)
    digests = Digests(["sha256"])
    while chunk := stream.read(CHUNK):
        budget.add(len(chunk))
        writer.write(out, digests, chunk)
        progress.advance(len(chunk))

    def done() -> None:
        os.fchmod(out.fileno(), mode)
        out.flush()
        if hasattr(os, "posix_fadvise"):
            # Start writing the file back now (asynchronously), so the fsync before the staged
            # tree is renamed into place finds little left to do.
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        out.close()
        open_files.remove(out)

    writer.call(done)
    return digests


def _mkdir(dest: Path, rel: str, source: str) -> None:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        dest.mkdir(mode=0o755)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"{source}: unsafe archive: folder {rel!r} collides with another member")


def _finished(entries: list[ExtractedFile], written: dict[str, Digests]) -> list[ExtractedFile]:
    """Fill in the digests and sizes of written files (and of hard links to them)."""
    out = []
    for e in entries:
        key = e.path if e.kind == "file" else e.target if e.kind == "hardlink" else None
        if key is not None:
            d = written[key]
            e = dataclasses.replace(e, sha256=d.hexdigest(), size=d.size)
        out.append(e)
    return out


def _close_all(writer: WriteBehind, open_files: list[BinaryIO]) -> None:
    writer.stop()  # first: the worker may still be writing to them
    for f in list(open_files):
        with contextlib.suppress(OSError):
            f.close()


def _extract_tar(
    fd: int, source: str, root: Path, limits: Limits, progress: Progress, digests: Digests | None
) -> list[ExtractedFile]:
    budget = _Budget(source, os.fstat(fd).st_size, limits)
    done: list[ExtractedFile] = []
    written: dict[str, Digests] = {}
    modes: dict[str, int] = {}
    open_files: list[BinaryIO] = []
    src = _TarSource(fd, digests)
    writer = WriteBehind(writeback=True)
    try:
        # Stream mode ("r|"): one pass, no seeking, no member list held in memory; big reads.
        with tarfile.open(fileobj=src, mode="r|", bufsize=CHUNK) as tar:  # type: ignore[call-overload]
            for member in tar:
                budget.member()
                rel, filtered = _check_tar_member(member, root, source)
                if rel == ".":
                    continue
                dest = _check_parents(root, rel, source)
                if member.isdir():
                    _mkdir(dest, rel, source)
                    done.append(ExtractedFile(rel, "dir"))
                elif member.issym():
                    done.append(_make_symlink(member, rel, dest, source))
                elif member.islnk():
                    done.append(_make_hardlink(member, rel, dest, root, modes, source))
                else:
                    stream = tar.extractfile(member)
                    if stream is None:  # pragma: no cover - isreg() members always have data
                        raise InvalidInput(f"{source}: member {member.name!r} has no data")
                    mode = stat.S_IMODE(filtered.mode if filtered.mode is not None else 0o644)
                    written[rel] = _write_member(writer, dest, stream, mode, budget, progress, rel, open_files)
                    modes[rel] = mode
                    done.append(ExtractedFile(rel, "file", mode=mode))
        src.finish(budget)
        writer.drain()
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, ValueError) as exc:
        raise InvalidInput(f"{source}: not a valid tar archive: {exc}") from exc
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot extract: {exc.strerror or exc}") from exc
    finally:
        _close_all(writer, open_files)
    return _finished(done, written)


def _check_tar_member(member: tarfile.TarInfo, root: Path, source: str) -> tuple[str, tarfile.TarInfo]:
    """Steps 1-3 for one tar member: its name, its type, its link target, then the PEP 706 data
    filter. Returns the normalised name and the filtered member."""
    rel = check_member_name(member.name, source=source)
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        kind = "device" if (member.ischr() or member.isblk()) else "FIFO" if member.isfifo() else "special"
        raise InvalidInput(f"{source}: unsafe member {member.name!r}: {kind} file")
    if member.issym() or member.islnk():
        if member.linkname.startswith("/"):
            raise InvalidInput(f"{source}: unsafe member {member.name!r}: link to an absolute path")
        if member.islnk():
            check_member_name(member.linkname, source=source)
    # Step 3: the standard library's PEP 706 data filter.
    try:
        filtered = tarfile.data_filter(member, str(root))
    except tarfile.FilterError as exc:
        raise InvalidInput(f"{source}: unsafe member {member.name!r}: {exc}") from exc
    return rel, filtered


def _make_symlink(member: tarfile.TarInfo, rel: str, dest: Path, source: str) -> ExtractedFile:
    """A symbolic link whose target, read lexically from its own folder, stays inside the tree."""
    lexical = posixpath.normpath(posixpath.join(posixpath.dirname(rel), member.linkname))
    if lexical == ".." or lexical.startswith("../"):
        raise InvalidInput(f"{source}: unsafe member {member.name!r}: link points outside")
    try:
        os.symlink(member.linkname, dest)
    except FileExistsError as exc:
        raise InvalidInput(f"{source}: unsafe archive: member {rel!r} appears twice") from exc
    return ExtractedFile(rel, "symlink", target=member.linkname)


def _make_hardlink(
    member: tarfile.TarInfo, rel: str, dest: Path, root: Path, modes: dict[str, int], source: str
) -> ExtractedFile:
    """A hard link, only to a regular file this archive extracted before it (``modes`` holds those)."""
    target_rel = check_member_name(member.linkname, source=source)
    if target_rel not in modes:
        raise InvalidInput(
            f"{source}: unsafe member {member.name!r}: hard link to {member.linkname!r}, "
            "which is not a file extracted before it"
        )
    try:
        os.link(root / target_rel, dest, follow_symlinks=False)
    except FileExistsError as exc:
        raise InvalidInput(f"{source}: unsafe archive: member {rel!r} appears twice") from exc
    return ExtractedFile(rel, "hardlink", mode=modes[target_rel], target=target_rel)


def _extract_zip(
    fd: int, source: str, root: Path, limits: Limits, progress: Progress, digests: Digests | None
) -> list[ExtractedFile]:
    budget = _Budget(source, os.fstat(fd).st_size, limits)
    done: list[ExtractedFile] = []
    written: dict[str, Digests] = {}
    open_files: list[BinaryIO] = []
    writer = WriteBehind(writeback=True)
    try:
        with open(os.dup(fd), "rb") as fh, zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_archive_members:
                raise InvalidInput(f"{source}: more than {limits.max_archive_members} members; refusing")
            for info in infos:
                budget.member()
                rel = check_member_name(info.filename, source=source)
                unix_mode = info.external_attr >> 16
                ftype = stat.S_IFMT(unix_mode)
                if ftype not in (0, stat.S_IFREG, stat.S_IFDIR):
                    kind = "link" if ftype == stat.S_IFLNK else "special"
                    raise InvalidInput(f"{source}: unsafe member {info.filename!r}: {kind} entry in a zip")
                if rel == ".":
                    continue
                dest = _check_parents(root, rel, source)
                if info.is_dir():
                    _mkdir(dest, rel, source)
                    done.append(ExtractedFile(rel, "dir"))
                    continue
                # Same policy as the tar data filter: owner rw, keep exec bits, drop setuid and group/other write.
                mode = (stat.S_IMODE(unix_mode) if unix_mode else 0o644) & 0o755 | 0o600
                with zf.open(info) as stream:
                    written[rel] = _write_member(writer, dest, stream, mode, budget, progress, rel, open_files)
                done.append(ExtractedFile(rel, "file", mode=mode))
        writer.drain()
        if digests is not None:
            # A zip is read out of order (central directory first): hash it whole, once more.
            hash_fd(fd, digests)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error, ValueError) as exc:
        raise InvalidInput(f"{source}: not a valid zip archive: {exc}") from exc
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot extract: {exc.strerror or exc}") from exc
    finally:
        _close_all(writer, open_files)
    return _finished(done, written)


def _check_links_inside(root: Path, entries: list[ExtractedFile], source: str) -> None:
    """Step 6: with the tree complete, every symbolic link must still resolve inside it."""
    real_root = os.path.realpath(root)
    for e in entries:
        if e.kind != "symlink":
            continue
        resolved = os.path.realpath(root / e.path)
        if resolved != real_root and not resolved.startswith(real_root + os.sep):
            raise InvalidInput(f"{source}: unsafe member {e.path!r}: link points outside")


def extract_into(
    archive: Path,
    root: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress = NO_PROGRESS,
    fd: int | None = None,
    digests: Digests | None = None,
) -> list[ExtractedFile]:
    """Extract ``archive`` into the existing, empty folder ``root`` (steps 1 to 6).

    ``fd``: an open descriptor of the archive to read instead of opening ``archive`` (so a
    caller that verified that open file extracts the same file); the descriptor's position is
    not used. ``digests``: fed every byte of the archive, in order, as extraction reads it, so
    that the caller can compare them with what it verified (a file changed in between is caught).

    Prefer :func:`extract_archive`, which also stages and renames; on an error here ``root``
    holds a partial tree that the caller must remove.
    """
    kind = archive_kind(archive)
    own = fd is None
    if fd is None:
        fd = open_regular_fd(archive, "archive")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"{archive}: not a regular file")
        progress.start(f"extracting {archive.name}", None)
        try:
            extract = _extract_tar if kind == "tar" else _extract_zip
            entries = extract(fd, str(archive), root, limits, progress, digests)
        finally:
            progress.finish()
    finally:
        if own:
            os.close(fd)
    _check_links_inside(root, entries, str(archive))
    return entries


def _prepare_out(out: Path) -> None:
    """``--out`` may be missing (created) or an empty folder (replaced); anything else is refused."""
    if out.is_symlink():
        raise Refused(f"{out}: is a link; refusing to extract into it")
    if out.is_dir():
        with contextlib.suppress(OSError):
            out.rmdir()  # only succeeds when empty
        if out.exists():
            raise Refused(f"{out}: already exists and is not empty; refusing to overwrite")
    elif out.exists():
        raise Refused(f"{out}: already exists; refusing to overwrite")
    ensure_dir(out.parent)


def extract_archive(
    archive: Path,
    out: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress = NO_PROGRESS,
    finish: Callable[[Path, list[ExtractedFile]], None] | None = None,
    fd: int | None = None,
    digests: Digests | None = None,
) -> list[ExtractedFile]:
    """Extract ``archive`` safely to the folder ``out``, all or nothing.

    ``out`` must be missing or empty (else :class:`Refused`, exit 4). The tree is built in a
    temporary folder beside ``out``; ``finish(tmp, entries)`` may add files (such as a record)
    before the folder is renamed to ``out``. Any error removes the temporary folder. ``fd`` and
    ``digests``: see :func:`extract_into`.
    """
    _prepare_out(out)
    with staged_dir(out) as tmp:
        entries = extract_into(archive, tmp, limits=limits, progress=progress, fd=fd, digests=digests)
        if finish is not None:
            finish(tmp, entries)
    return entries


def iter_files(entries: list[ExtractedFile]) -> Iterator[ExtractedFile]:
    """The file-like entries (regular files and hard links) of an extraction."""
    return (e for e in entries if e.kind in ("file", "hardlink"))


def remove_tree(path: Path) -> None:
    """Remove a partial tree (used by callers of :func:`extract_into`)."""
    shutil.rmtree(path, ignore_errors=True)
