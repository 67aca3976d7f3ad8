"""Streaming hashes at the hash's speed: every byte read once, hashed once, in bounded memory.

The primitives every large-file path uses (release verify/extract/fetch, bundle verify/create):

* :func:`new_hash` is the one place a digest object is made, so a test can count the bytes that
  go through each digest (every byte exactly once per digest asked for).
* :class:`Digests` feeds one stream to the digests a caller asked for (usually only SHA-256).
* :func:`hash_fd` / :func:`hash_file` hash a regular file. Large files are hashed straight from the
  page cache through a sliding read-only ``mmap`` window (no copy into user memory, no read
  syscalls; the window bounds the resident set to :data:`WINDOW`); small files, and files that
  cannot be mapped, go through ``readinto`` into one reused buffer.
* :class:`WriteBehind` writes and hashes on a worker thread, so the producer (a decompressor,
  a socket, a copy loop) keeps going meanwhile; SHA-256, ``write(2)`` and zlib all release the GIL.
* :func:`copy_hashed` copies part of a file through reused buffers with the read, the hash and
  the write on three threads (bundle create and bundle verify's extraction).

Trust: nothing here trusts the bytes; callers compare the digests with something trusted.

One caveat of mapping (documented, fails closed): if another process truncates a file while it
is being hashed through the map, the kernel sends ``SIGBUS`` and the process dies; nothing is
accepted, written or published, but the exit status is the signal's, not the contract's. Each
window is checked against the file's current size first, which narrows that to a truncation
during one window's hashing (milliseconds). Set ``AIRGAP_NO_MMAP=1`` to use reads only.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Protocol

from airgap.core.files import open_regular_fd
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.errors import InvalidInput

CHUNK = 1024 * 1024  # one read or write
WINDOW = 8 * 1024 * 1024  # one mmap window (and progress step) when hashing a file in place
MAP_AT_LEAST = 4 * 1024 * 1024  # smaller files are read: mapping them saves nothing
WRITEBACK_EVERY = 8 * 1024 * 1024  # WriteBehind starts writeback and drops written-back pages this often
COPY_BUFFERS = 6  # copy_hashed: chunks in flight between the reader, the hasher and the writer


class Hash(Protocol):
    """What :mod:`hashlib` objects offer (and what a test's counting wrapper must)."""

    @property
    def name(self) -> str: ...
    def update(self, data: Any, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def new_hash(name: str) -> Hash:
    """The one factory of digest objects (``sha256``, ``sha384`` ...): OpenSSL's, with SHA-NI."""
    return hashlib.new(name)


class Digests:
    """The named digests over one stream, fed in chunks, and the stream's size."""

    def __init__(self, names: Iterable[str] = ("sha256",)) -> None:
        self._h: dict[str, Hash] = {}
        for n in names:
            if n not in self._h:
                self._h[n] = new_hash(n)
        if not self._h:
            raise ValueError("Digests needs at least one hash name")
        self._all = tuple(self._h.values())
        self.size = 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._h)

    def update(self, chunk: Any) -> None:
        for h in self._all:
            h.update(chunk)
        self.size += len(chunk)

    def digests(self) -> dict[str, bytes]:
        return {n: h.digest() for n, h in self._h.items()}

    def hexdigest(self, name: str = "sha256") -> str:
        return self._h[name].hexdigest()


def _use_mmap() -> bool:
    return os.environ.get("AIRGAP_NO_MMAP", "") in ("", "0")


def hash_fd(
    fd: int,
    digests: Digests,
    *,
    offset: int = 0,
    length: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> int:
    """Feed ``length`` bytes (default: to the end) of the regular file ``fd`` from ``offset`` to
    ``digests``; return the number of bytes hashed. The file position is not used or moved.

    A file that is shorter than ``offset + length`` hashes what is there (the caller compares
    sizes). ``OSError`` propagates; :func:`hash_file` turns it into a one-line error.
    """
    size = os.fstat(fd).st_size
    end = size if length is None else min(size, offset + length)
    if end - offset >= MAP_AT_LEAST and _use_mmap():
        try:
            return _hash_mapped(fd, digests, offset, end, progress)
        except (OSError, ValueError, OverflowError):
            pass  # a file system without mmap: read it (nothing was hashed yet, see _hash_mapped)
    return _hash_read(fd, digests, offset, end, progress)


def _hash_mapped(fd: int, digests: Digests, offset: int, end: int, progress: Progress) -> int:
    gran = mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    pos = offset
    while pos < end:
        base = pos - pos % gran  # a map must start on the granularity
        n = min(WINDOW - (pos - base), end - pos)
        # Only the window about to be hashed, and only if the file still holds it (see the module
        # docstring: a truncation after this check is a SIGBUS).
        if os.fstat(fd).st_size < pos + n:
            break
        try:
            m = mmap.mmap(fd, (pos - base) + n, flags=flags, prot=mmap.PROT_READ, offset=base)
        except (OSError, ValueError, OverflowError):
            if pos == offset:
                raise  # the caller reads instead
            return (pos - offset) + _hash_read(fd, digests, pos, end, progress)
        try:
            with memoryview(m) as view:
                digests.update(view[pos - base :])
        finally:
            m.close()
        pos += n
        progress.advance(n)
    return pos - offset


def _hash_read(fd: int, digests: Digests, offset: int, end: int, progress: Progress) -> int:
    buf = bytearray(min(CHUNK, max(end - offset, 1)))
    view = memoryview(buf)
    pos = offset
    while pos < end:
        got = os.preadv(fd, [view[: min(len(buf), end - pos)]], pos)
        if not got:
            break
        digests.update(view[:got])
        pos += got
        progress.advance(got)
    return pos - offset


def hash_file(
    path: Path,
    names: Iterable[str] = ("sha256",),
    progress: Progress = NO_PROGRESS,
    *,
    label: str | None = None,
) -> tuple[dict[str, bytes], int]:
    """Hash the regular file ``path`` once through the named digests: (digests, size).

    Missing, unreadable or not a regular file is :class:`InvalidInput` (exit 3). ``label`` is
    the progress description (default ``verifying NAME``).
    """
    digests = Digests(names)
    fd = open_regular_fd(path, "file")  # a regular file, else exit 3 (a FIFO never blocks the open)
    try:
        st = os.fstat(fd)
        progress.start(label or f"verifying {path.name}", st.st_size)
        try:
            hash_fd(fd, digests, progress=progress)
        finally:
            progress.finish()
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a folder, expected a file") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return digests.digests(), digests.size


_Write = tuple[IO[bytes] | None, "Digests | None", "bytes | memoryview", "Callable[[], None] | None"]
_Item = _Write | Callable[[], None] | threading.Event | None


class WriteBehind:
    """Write chunks and feed them to digests on one worker thread, in the order given.

    The producer (a decompressor, a socket, a copy loop) keeps going while the worker hashes and
    writes: SHA-256, ``write(2)`` and zlib all release the GIL. :meth:`write` hands over a chunk
    (``bytes``: the worker keeps a reference, so never a buffer the producer reuses) and returns
    at once unless ``depth`` items are already waiting: memory stays at most ``depth`` chunks.
    :meth:`call` runs a function on the worker after what was queued before it (``fchmod`` and
    ``close`` of a finished file). :meth:`drain` waits until everything queued is done; then the
    digests cover exactly the bytes written. The first ``OSError`` of the worker is raised by
    the next :meth:`write`, :meth:`call` or :meth:`drain` (later items are skipped); the caller
    decides what it means. Use it as a context manager: leaving the block stops the worker.

    With ``writeback=True`` the worker asks the kernel every :data:`WRITEBACK_EVERY` bytes of a
    file to start writing back what is dirty and to drop what is already written back (it was
    hashed), so the ``fsync`` before publishing has little left to do and the file's cached pages
    stay at a few windows: the kernel recycles them instead of finding fresh memory for each one,
    which on a virtual machine costs more system time than the copy itself.
    """

    def __init__(self, *, depth: int = 8, writeback: bool = False) -> None:
        self._writeback = writeback
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=depth)
        self._error: OSError | None = None
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="airgap-write-behind", daemon=True)
        self._thread.start()
        self._flushed: dict[int, int] = {}  # id(out) -> bytes written since its last advice

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()  # drain() waits for this
                continue
            release = item[3] if isinstance(item, tuple) else None
            try:
                if self._error is not None:
                    continue  # keep draining, so the producer never blocks forever
                if isinstance(item, tuple):
                    out, digests, chunk, _ = item
                    if out is not None:
                        out.write(chunk)
                    if digests is not None:
                        digests.update(chunk)
                    if self._writeback and out is not None:
                        self._advise(out, len(chunk))
                else:
                    item()
            except OSError as exc:
                self._error = exc
            finally:
                if release is not None:
                    release()  # even after an error: the producer may be waiting for this buffer

    def _advise(self, out: IO[bytes], n: int) -> None:
        key = id(out)
        pending = self._flushed.get(key, 0) + n
        if pending >= WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
            out.flush()
            # The whole file: start writeback of what is dirty, and drop what earlier rounds
            # wrote back (clean by now). Recycling those pages keeps the cache, and the fresh
            # memory the kernel must find for it, at a few windows whatever the file's size.
            os.posix_fadvise(out.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            pending = 0
        self._flushed[key] = pending

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write(
        self,
        out: IO[bytes] | None,
        digests: Digests | None,
        chunk: bytes | memoryview,
        release: Callable[[], None] | None = None,
    ) -> None:
        """Queue ``chunk`` to be written to ``out`` and fed to ``digests`` (either may be None:
        a worker that only hashes, or only writes).

        ``release``, when given, runs on the worker once the chunk is written (or skipped after an
        error): a producer that lends a buffer (a ``memoryview`` it will refill) gets it back then.
        """
        self._raise()
        self._queue.put((out, digests, chunk, release))

    def call(self, fn: Callable[[], None]) -> None:
        self._raise()
        self._queue.put(fn)

    def drain(self) -> None:
        """Wait until every queued write and call is done; raise the worker's first error."""
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._flushed.clear()
        self._raise()

    def stop(self) -> None:
        """Stop the worker (after what is queued); safe to call twice."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Shared:
    """Gives a buffer back to ``free`` once all ``users`` workers are done with it."""

    def __init__(self, free: queue.SimpleQueue[bytearray], buf: bytearray, users: int) -> None:
        self._free, self._buf, self._left = free, buf, users
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._free.put(self._buf)


def copy_hashed(
    src_fd: int,
    offset: int,
    size: int,
    out: IO[bytes],
    digests: Digests,
    *,
    progress: Progress = NO_PROGRESS,
    writeback: bool = True,
) -> int:
    """Copy ``size`` bytes of the file ``src_fd`` from ``offset`` to ``out``, feeding each byte
    once to ``digests``; return how many were copied (fewer: the source is shorter).

    Three stages run at once, each mostly outside the GIL: the caller's thread reads (``preadv``:
    the fd position is not used) into one of a few reused buffers, one worker hashes it and
    another writes it (:class:`WriteBehind`, the writer with ``writeback``). No chunk is
    allocated (a fresh 1 MiB ``bytes`` per read costs page faults), and the bytes written are the
    bytes hashed: a buffer is refilled only after both workers are done with it. Everything is
    written to ``out`` (in order, after what the caller wrote before) and hashed when this
    returns. Write errors raise ``OSError``; read errors too.
    """
    free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    for _ in range(COPY_BUFFERS):
        free.put(bytearray(min(CHUNK, max(size, 1))))
    done = 0
    with WriteBehind(depth=COPY_BUFFERS) as hasher, WriteBehind(depth=COPY_BUFFERS, writeback=writeback) as writer:
        while done < size:
            buf = free.get()
            view = memoryview(buf)
            got = os.preadv(src_fd, [view[: min(len(buf), size - done)]], offset + done)
            if not got:
                free.put(buf)
                break
            shared = _Shared(free, buf, 2)
            hasher.write(None, digests, view[:got], shared)
            writer.write(out, None, view[:got], shared)
            done += got
            progress.advance(got)
        hasher.drain()
        writer.drain()
    return done
