"""Download release artifacts over HTTPS (or from a ``file://`` mirror), then verify before keeping.

Trusted: the release keys (see :mod:`airgap.core.release`) and the TLS trust store
(``--ca-bundle``, else ``$REQUESTS_CA_BUNDLE``, else the system's). Not trusted: the server, the
mirror, the proxy, every byte received. TLS only keeps a passive observer out; what makes a download
acceptable is the detached signature, checked before the file gets its final name.

Behaviour: connect/read timeouts; retries with exponential backoff on 5xx/429 and dropped or timed-out
connections; an interrupted body resumes from the ``.part`` file with an HTTP ``Range`` request (also
across runs); a redirect from https to anything else is refused; a size cap; the body is hashed as it
arrives (raw bytes, never content-decoded), so verification needs no second read. ``requests`` is
imported inside functions only: the offline commands never load it.

Concurrency and crashes: one fetch of a name into a folder at a time (``OUT/.NAME.lock``, ``flock``;
the second waits); the tarball is published before its signature, and a re-run checks whatever an
earlier run left under the final names (finishes the pair, says it is already there, or refuses by
name), never replacing a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.core.atomic import fsync_dir, link_regular, open_for_update, output_dir, write_new
from airgap.core.display import without_userinfo
from airgap.core.hashing import Digests, WriteBehind, hash_fd, hash_file
from airgap.core.limits import DEFAULT_LIMITS, MAX_SIGNATURE
from airgap.core.locking import stderr_note
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.release import (
    DEFAULT_BASE_URL,
    ReleaseKey,
    VerifiedRelease,
    check_archive_root,
    decode_release_signature,
    hashes_for,
    read_signature,
    release_file_name,
    select_keys,
    verify_digests,
)
from airgap.core.release_lines import check_not_downgrade, record_accepted
from airgap.core.retry import Attempts, Backoff, LowSpeed
from airgap.core.scratch import scratch_dir
from airgap.errors import InvalidInput, NetworkError, Refused, VerificationError

if TYPE_CHECKING:
    import requests

CHUNK = 1024 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class FetchOptions:
    """Transport settings. Tests shrink the timeouts and the backoff."""

    ca_bundle: Path | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 1.0  # first wait in seconds, doubled on each retry (capped at 30 s)
    max_size: int = DEFAULT_LIMITS.max_download_size
    max_redirects: int = 10
    speed_limit: int = 1024  # bytes/s: an attempt slower than this over speed_time seconds fails (0: off)
    speed_time: float = 30.0
    sleep: Any = field(default=time.sleep, repr=False, compare=False)
    clock: Any = field(default=time.monotonic, repr=False, compare=False)


@dataclass(frozen=True)
class FetchedRelease:
    """A downloaded release that verified, under its final names."""

    tarball: Path
    signature: Path
    url: str
    verified: VerifiedRelease
    status: str = "fetched"  # "fetched", "completed" (a lone file from an earlier run), "already-fetched"

    def to_json(self) -> dict[str, Any]:
        doc = self.verified.to_json()
        url = without_userinfo(self.url)
        doc.update({"file": str(self.tarball), "signature": str(self.signature), "url": url, "status": self.status})
        return doc


def _check_base_url(base_url: str) -> str:
    scheme = urllib.parse.urlsplit(base_url).scheme.lower()
    if scheme not in ("https", "file"):
        raise InvalidInput(f"{base_url}: base URL must be https:// or file:// (got {scheme or 'no scheme'})")
    return base_url.rstrip("/")


def _file_path(url: str) -> Path:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidInput(f"{url}: file:// URLs must name a local path")
    return Path(urllib.request.url2pathname(parts.path))


def _ca_verify(options: FetchOptions) -> str | None:
    if options.ca_bundle is None:
        return None  # requests: $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, else certifi
    if not options.ca_bundle.is_file():
        raise InvalidInput(f"{options.ca_bundle}: CA bundle not found")
    return str(options.ca_bundle)


def _new_session() -> requests.Session:
    import requests

    session = requests.Session()
    session.trust_env = True  # proxies (HTTPS_PROXY, NO_PROXY ...) and REQUESTS_CA_BUNDLE
    session.headers.update({"User-Agent": "airgap-release-fetch", "Accept-Encoding": "identity"})
    return session


class _Transient(Exception):
    """A failure worth retrying (5xx, 429, dropped connection, timeout)."""


def _open(session: requests.Session, url: str, headers: dict[str, str], options: FetchOptions) -> Any:
    """GET ``url`` following redirects by hand: https may only redirect to https."""
    import requests

    current = url
    for _ in range(options.max_redirects + 1):
        try:
            resp = session.get(
                current,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(options.connect_timeout, options.read_timeout),
                verify=_ca_verify(options),
            )
        except requests.exceptions.SSLError as exc:
            raise NetworkError(f"{current}: TLS failed ({_reason(exc)}); a private mirror needs --ca-bundle") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise _Transient(f"{current}: {_reason(exc)}") from exc
        if resp.status_code not in REDIRECTS:
            return resp
        location = resp.headers.get("Location")
        resp.close()
        if not location:
            raise NetworkError(f"{current}: redirect without a Location")
        target = urllib.parse.urljoin(current, location)
        if urllib.parse.urlsplit(current).scheme == "https" and urllib.parse.urlsplit(target).scheme != "https":
            raise Refused(f"{current}: refusing redirect from https to {target}")
        current = target
    raise NetworkError(f"{url}: more than {options.max_redirects} redirects")


def _reason(exc: BaseException, default: str | None = None) -> str:
    """A short reason for a network failure, from its text; else ``default`` (else the exception's type)."""
    text = str(exc)
    for pattern, reason in (
        (r"[Rr]ead timed out", "read timed out"),
        (r"[Cc]onnect(ion)? ?[Tt]imeout|timed out", "timed out"),
        (r"CERTIFICATE_VERIFY_FAILED", "certificate verify failed"),
        (r"Connection refused", "connection refused"),
        (r"IncompleteRead|Connection broken|ended prematurely", "connection dropped mid-body"),
    ):
        if re.search(pattern, text):
            return reason
    return default or type(exc).__name__


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _hash_existing(part: Path, names: Sequence[str]) -> Digests:
    """The digests of what an earlier run left in the ``.part`` (resumed from its end)."""
    hashed = Digests(names)
    fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        hash_fd(fd, hashed)
    finally:
        os.close(fd)
    return hashed


def download(
    url: str,
    part: Path,
    *,
    hash_names: Sequence[str] = ("sha256",),
    options: FetchOptions = FetchOptions(),
    progress: Progress = NO_PROGRESS,
) -> tuple[dict[str, bytes], int]:
    """Download ``url`` into ``part`` (resuming what is there), hashing the raw bytes as they arrive.

    Returns the digests of the complete file and its size. The caller verifies and renames; nothing
    here trusts the content. Every failed attempt counts against ``options.retries`` however many
    bytes it brought, and each is followed by the backoff; an attempt slower than
    ``options.speed_limit`` bytes/s over ``options.speed_time`` seconds fails. Network failures after
    the retries are :class:`NetworkError` (exit 5); a file over the cap is :class:`InvalidInput`
    (exit 3); an https→http redirect is :class:`Refused`.
    """
    if urllib.parse.urlsplit(url).scheme == "file":
        return _copy_file(_file_path(url), part, hash_names, options, progress)
    import requests
    import urllib3

    session = _new_session()
    if part.is_symlink() or (part.exists() and not part.is_file()):
        raise InvalidInput(f"{part}: exists and is not a regular file")
    hashed = _hash_existing(part, hash_names) if part.exists() else Digests(hash_names)
    attempts = Attempts(options.retries, Backoff(options.backoff, MAX_BACKOFF), options.sleep)
    state = _Download(progress, hashed)
    try:
        while True:
            try:
                if _attempt(session, url, part, hash_names, options, state):
                    return state.hashed.digests(), state.hashed.size
            except (
                _Transient,
                requests.exceptions.RequestException,
                urllib3.exceptions.HTTPError,
                ConnectionError,
                TimeoutError,
            ) as exc:
                reason = str(exc) if isinstance(exc, _Transient) else f"{url}: {_reason(exc)}"
                if not attempts.failed():
                    raise NetworkError(f"{reason} (gave up after {options.retries} retries)") from exc
    finally:
        state.finish()
        session.close()


class _Download:
    """One download across its attempts: the digests of what the ``.part`` holds, and the
    progress bar, started once (with the total of the first answer)."""

    def __init__(self, progress: Progress, hashed: Digests) -> None:
        self.progress, self.started, self.hashed = progress, False, hashed

    def start(self, name: str, total: int | None, offset: int) -> None:
        if not self.started:
            self.progress.start(name, total)
            self.started = True
            self.progress.advance(offset)

    def finish(self) -> None:
        if self.started:
            self.progress.finish()


def _attempt(
    session: requests.Session,
    url: str,
    part: Path,
    hash_names: Sequence[str],
    options: FetchOptions,
    state: _Download,
) -> bool:
    """One request: True when the file is complete, False to ask again at once."""
    offset = state.hashed.size
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    resp = _open(session, url, headers, options)
    with resp:
        status = resp.status_code
        if status == 416 and offset:
            m = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return True  # the .part was already complete
            state.hashed = _restart(part, hash_names)
            return False
        if status == 404:
            raise NetworkError(f"{url}: 404 Not Found (check the version, --platform and --base-url)")
        if status == 429 or status >= 500:
            raise _Transient(f"{url}: HTTP {status} {resp.reason}")
        if status not in (200, 206):
            raise NetworkError(f"{url}: HTTP {status} {resp.reason}")
        if status == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                state.hashed = _restart(part, hash_names)  # a range we did not ask for: start over
                raise _Transient(f"{url}: server answered a different range")
            total = None if m.group(3) == "*" else int(m.group(3))
        else:
            if offset:
                state.hashed = _restart(part, hash_names)  # server ignored Range: start over
                offset = 0
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > options.max_size:
            raise InvalidInput(f"{url}: {total} bytes is over the download cap of {options.max_size}")
        state.start(part.name.removesuffix(".part"), total, offset)
        _receive(resp, url, part, state.hashed, offset, options, state.progress)
        if total is not None and state.hashed.size != total:
            raise _Transient(f"{url}: connection dropped mid-body ({state.hashed.size} of {total} bytes)")
        return True


def _receive(
    resp: Any, url: str, part: Path, hashed: Digests, offset: int, options: FetchOptions, progress: Progress
) -> None:
    """Append the body to ``part`` as it arrives (one socket read at a time), hashing it on the way."""
    speed = LowSpeed(options.speed_limit, options.speed_time, options.clock)
    speed.start()
    read = _body_reader(resp, url, offset, options)
    with os.fdopen(open_for_update(part, append=True), "ab") as out:
        sink = _Sink(out, hashed, part, progress)
        try:
            _pump(read, url, offset, options, sink, speed)
        finally:
            sink.close()  # joins the writer: hashed now covers exactly the bytes in the .part
        out.flush()
        os.fsync(out.fileno())


def _pump(
    read: Callable[[memoryview], int], url: str, offset: int, options: FetchOptions, sink: _Sink, speed: LowSpeed
) -> None:
    """Read the body into the sink's buffers, one socket read at a time, and hand each full one over.

    Every read is checked against the size cap (the bytes that would pass it are not kept) and
    fed to the low-speed check, so a trickle fails after ``speed_time`` however small its reads."""
    got, pos = 0, 0
    buf = sink.take()
    view = memoryview(buf)
    try:
        while n := read(view[pos:]):
            if offset + got + n > options.max_size:
                raise InvalidInput(f"{url}: over the download cap of {options.max_size} bytes")
            got, pos = got + n, pos + n
            if pos == len(buf):
                full, buf, pos = buf, sink.take(), 0
                view = memoryview(buf)
                sink.give(full, len(full))
            if speed.too_slow(n):
                raise _Transient(
                    f"{url}: slower than {options.speed_limit} bytes/s for {options.speed_time:g} s "
                    "(--speed-limit/--speed-time)"
                )
    finally:
        sink.give(buf, pos)  # what arrived is kept for a resume, failure or not


def _body_reader(resp: Any, url: str, offset: int, options: FetchOptions) -> Callable[[memoryview], int]:
    """``read(into) -> n``: one socket read of the raw body (never content-decoded) into ``into``; 0 at its end.

    A plain body of a known length (the usual answer) is read from the response's own buffered socket
    reader straight into the caller's buffer (``readinto1``: one TLS record, no allocation, no copy);
    anything else (a chunked body, no length, a length past the cap) through urllib3's ``read1``.
    """
    raw = getattr(resp.raw, "_fp", None)  # urllib3 2's http.client.HTTPResponse
    stream = getattr(raw, "fp", None)  # its buffered socket reader (the headers were read through it)
    length = getattr(raw, "length", None)
    if (
        getattr(raw, "chunked", True) is False
        and isinstance(length, int)
        and offset + length <= options.max_size
        and callable(getattr(stream, "readinto1", None))
    ):
        return _PlainBody(stream, length, url).readinto
    return _FramedBody(resp).readinto


class _PlainBody:
    """The next ``length`` bytes of a buffered socket reader, with the failures urllib3 would report
    turned into the same reasons (see :func:`_reason`): a timeout is ``read timed out``, a TLS
    failure ``SSLError``, a reset, or the end of the stream before ``length`` bytes, ``connection
    dropped mid-body``. It never reads past the body; http.client does not count what it read, so
    the connection must not serve another request: it does not (requests closes the connection of a
    response whose content it did not consume, which ``with resp:`` in :func:`_attempt` does)."""

    def __init__(self, stream: Any, length: int, url: str) -> None:
        self._stream, self._left, self._url = stream, length, url

    def readinto(self, into: memoryview) -> int:
        if not self._left:
            return 0
        try:
            n: int = self._stream.readinto1(into[: self._left] if len(into) > self._left else into)
        except TimeoutError as exc:
            raise _Transient(f"{self._url}: read timed out") from exc
        except OSError as exc:
            import ssl

            reason = _reason(exc, "SSLError") if isinstance(exc, ssl.SSLError) else "connection dropped mid-body"
            raise _Transient(f"{self._url}: {reason}") from exc
        if not n:
            raise _Transient(f"{self._url}: connection dropped mid-body")
        self._left -= n
        return n


class _FramedBody:
    """Any other body, through urllib3 (which decodes chunked framing and translates the errors)."""

    def __init__(self, resp: Any) -> None:
        self._raw = resp.raw

    def readinto(self, into: memoryview) -> int:
        chunk: bytes = self._raw.read1(len(into), decode_content=False)
        into[: len(chunk)] = chunk
        return len(chunk)


class _Sink:
    """Write and hash the body on a worker thread (:class:`~airgap.core.hashing.WriteBehind`),
    so the socket keeps being read meanwhile; TLS decryption, SHA-256 and file writes all
    release the GIL. The body is read into a few reused buffers (:meth:`take`), each handed to the
    worker when full (:meth:`give`) and back in the pool once written and hashed: memory stays flat
    whatever the file size, and no fresh memory is touched per chunk (on a virtual machine a page
    fault costs more than the copy). The worker also starts writeback as it goes, so the fsync
    before the rename has little left."""

    DEPTH = 8  # chunks waiting for the worker; the pool has 3 more: the worker's, the one being filled, the next

    def __init__(self, out: Any, hashed: Digests, part: Path, progress: Progress) -> None:
        import queue

        self._out, self._hashed, self._part, self._progress = out, hashed, part, progress
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(self.DEPTH + 3):
            self._free.put(bytearray(CHUNK))
        self._writer = WriteBehind(depth=self.DEPTH, writeback=True)

    def take(self) -> bytearray:
        """A free buffer (waits for the worker to give one back when all are in use)."""
        return self._free.get()

    def give(self, buf: bytearray, n: int) -> None:
        """Queue the first ``n`` bytes of ``buf`` to be written and hashed; ``buf`` returns to the pool after."""
        if not n:
            self._free.put(buf)
            return
        try:
            self._writer.write(self._out, self._hashed, memoryview(buf)[:n], lambda: self._free.put(buf))
        except OSError as exc:
            self._free.put(buf)
            raise InvalidInput(f"{self._part}: cannot write: {exc.strerror or exc}") from exc
        self._progress.advance(n)

    def close(self) -> None:
        try:
            self._writer.drain()
        except OSError as exc:
            raise InvalidInput(f"{self._part}: cannot write: {exc.strerror or exc}") from exc
        finally:
            self._writer.stop()


def _restart(part: Path, hash_names: Sequence[str]) -> Digests:
    os.close(open_for_update(part, truncate=True))
    return Digests(hash_names)


def _copy_file(
    src: Path, part: Path, hash_names: Sequence[str], options: FetchOptions, progress: Progress
) -> tuple[dict[str, bytes], int]:
    """``file://`` mirrors: a plain streaming copy (no resume needed), same cap and hashing."""
    hashed = Digests(hash_names)
    try:
        fh = open(src, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise InvalidInput(f"{src}: not found in the mirror folder") from exc
    except OSError as exc:
        raise InvalidInput(f"{src}: cannot read: {exc.strerror}") from exc
    with fh, os.fdopen(open_for_update(part, truncate=True), "wb") as out:
        size = os.fstat(fh.fileno()).st_size
        if size > options.max_size:
            raise InvalidInput(f"{src}: {size} bytes is over the download cap of {options.max_size}")
        progress.start(part.name.removesuffix(".part"), size)
        try:
            while chunk := fh.read(CHUNK):
                if hashed.size + len(chunk) > options.max_size:
                    raise InvalidInput(f"{src}: over the download cap of {options.max_size} bytes")
                out.write(chunk)
                hashed.update(chunk)
                progress.advance(len(chunk))
        finally:
            progress.finish()
        out.flush()
        os.fsync(out.fileno())
    return hashed.digests(), hashed.size


def fetch_small(url: str, *, limit: int, options: FetchOptions = FetchOptions()) -> bytes:
    """A small file (a signature) into memory, with the same transport rules and a size limit."""
    if urllib.parse.urlsplit(url).scheme == "file":
        path = _file_path(url)
        try:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
        except FileNotFoundError as exc:
            raise InvalidInput(f"{path}: not found in the mirror folder") from exc
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
        if len(data) > limit:
            raise InvalidInput(f"{url}: larger than {limit} bytes")
        return data
    small = dataclasses.replace(options, max_size=limit)
    with scratch_dir("airgap-sig-") as tmp:
        part = tmp / "small.part"
        download(url, part, options=small)
        return part.read_bytes()


@contextlib.contextmanager
def fetch_lock(out: Path, name: str, notify: Callable[[str], None] = stderr_note) -> Iterator[Path]:
    """Hold an exclusive lock on ``OUT/.NAME.lock`` (``flock``, file mode 0600) for one fetch of ``NAME``.

    A second fetch of the same name into the same folder says ``waiting for another fetch of NAME`` once
    (through ``notify``) and blocks until the first is done. The holder removes the lock file while it
    still holds the lock; a waiter that then wakes up on the removed file sees that the path no longer
    names the file it locked and starts over, so two fetches never hold "the" lock at once. A lock file
    left by a killed run is harmless: the kernel released its lock with the process. Only processes on
    this host (and on file systems where ``flock`` works, i.e. local ones) are kept apart.
    """
    from airgap.core.locking import exclusive_lock

    with exclusive_lock(
        out / f".{name}.lock", holder=f"another fetch of {name}", notify=notify, remove_when_done=True
    ) as path:
        yield path


def _same_signature(sig_final: Path, raw_sig: bytes, sig_url: str) -> None:
    """A lone ``NAME.1.sig`` from an earlier run must be byte for byte the one fetched now (else exit 4)."""
    try:
        with open(sig_final, "rb") as fh:
            mine = fh.read(MAX_SIGNATURE + 1)
    except OSError as exc:
        raise InvalidInput(f"{sig_final}: cannot read: {exc.strerror}") from exc
    if mine != raw_sig:
        raise Refused(
            f"{sig_final}: already exists and differs from {sig_url}; refusing to replace it (move it away and re-run)"
        )


def _check_final(p: Path) -> bool:
    """Is ``p`` present? Present but not a plain file (a symlink, a folder ...) is refused."""
    if p.is_symlink() or (p.exists() and not p.is_file()):
        raise Refused(f"{p}: exists and is not a regular file; refusing to touch it")
    return p.exists()


def _drop_linked_part(part: Path, final: Path) -> None:
    """Remove ``NAME.part`` if it is the same file as ``NAME`` (a run stopped right after the link)."""
    with contextlib.suppress(OSError):
        if part.is_file() and os.path.samefile(part, final):
            part.unlink()


def _already_fetched(
    final: Path,
    sig_final: Path,
    url: str,
    keys: Sequence[ReleaseKey],
    notify: Callable[[str], None],
    progress: Progress,
) -> FetchedRelease:
    """Both final names exist: accept them only if they verify together; never replace them."""
    advice = f"move them away to fetch again, or check them with: airgap release verify {final}"
    try:
        signature = read_signature(sig_final)
    except InvalidInput as exc:
        raise Refused(f"{exc.message}; {final} and {sig_final.name} already exist; {advice}") from exc
    digests, size = hash_file(final, hashes_for(keys), progress)
    try:
        verified = verify_digests(final, digests, size, signature, keys)
    except VerificationError as exc:
        raise Refused(
            f"{final} and {sig_final.name} already exist but do not verify together ({exc.reason}); "
            f"refusing to replace them; {advice}"
        ) from exc
    notify(f"{final}: already fetched and verified")
    return FetchedRelease(final, sig_final, url, verified, status="already-fetched")


def fetch_release(
    version: str,
    *,
    platform: str = "linux-amd64",
    base_url: str = DEFAULT_BASE_URL,
    out: Path = Path(),
    key: Path | None = None,
    key_id: str | None = None,
    options: FetchOptions = FetchOptions(),
    progress: Progress = NO_PROGRESS,
    notify: Callable[[str], None] = stderr_note,
    allow_downgrade: bool = False,
    state: Path | None = None,
) -> FetchedRelease:
    """Fetch ``istio-VERSION-PLATFORM.tar.gz`` (``.zip`` for win) and its ``.1.sig``; verify; keep.

    Rollback guard: the archive's first member must lie under ``istio-VERSION/`` of the version
    asked for (the signature covers bytes, not the version), checked on whatever is kept or
    already there (else exit 1); a release older than one this host accepted of the same line is
    refused before any traffic (exit 4) unless ``allow_downgrade``; the version is then recorded
    (:mod:`airgap.core.release_lines`).

    Steps: (1) check names, URL and trusted keys before any traffic; (2) take the lock
    ``OUT/.NAME.lock`` (see :func:`fetch_lock`), held until the end; (3) if both final names exist,
    verify them together locally and return (``already fetched and verified``) or refuse (exit 4),
    with no traffic; (4) fetch the signature (small, into memory); a lone ``NAME.1.sig`` left by an
    earlier run must equal it byte for byte (else exit 4, naming it); (5) a lone ``NAME`` must verify
    with that signature, which binds its exact digest (else exit 4, naming it): then only the
    signature is written, completing the pair, without downloading the tarball again; (6) download
    into ``NAME.part``, resuming, hashing as it arrives; (7) verify the signature over the digest: on
    failure delete the ``.part`` and raise :class:`VerificationError` (exit 1), so nothing is left
    under the final name; (8) publish the tarball, then the signature last (never replacing a file).

    Publishing in that order means a run stopped at any point leaves a state a re-run completes:
    a ``.part`` (resumed), a verified lone tarball (step 5), or the finished pair (step 3). Trusted:
    the keys and the local lock; not trusted: anything already under the final names, which is
    checked, never assumed, and never replaced.
    """
    name = release_file_name(version, platform)  # 1
    base = _check_base_url(base_url)
    keys: list[ReleaseKey] = select_keys(key, key_id)
    _ca_verify(options)
    check_not_downgrade(version, allow_downgrade=allow_downgrade, state=state)
    got = _fetch_release(version, name, base, out, keys, options, progress, notify)
    record_accepted(version, state=state)
    return got


def _fetch_release(
    version: str,
    name: str,
    base: str,
    out: Path,
    keys: list[ReleaseKey],
    options: FetchOptions,
    progress: Progress,
    notify: Callable[[str], None],
) -> FetchedRelease:
    kind = "zip" if name.endswith(".zip") else "tar"
    final, sig_final, part = out / name, out / f"{name}.1.sig", out / f"{name}.part"
    url, sig_url = f"{base}/{name}", f"{base}/{name}.1.sig"
    # --out is created when missing, and removed again if this run fails before it holds a file
    with output_dir(out), fetch_lock(out, name, notify):  # 2
        have_tar, have_sig = _check_final(final), _check_final(sig_final)
        if have_tar and have_sig:  # 3
            got = _already_fetched(final, sig_final, url, keys, notify, progress)
            check_archive_root(final, version, kind=kind)
            _drop_linked_part(part, final)
            return got
        raw_sig = fetch_small(sig_url, limit=MAX_SIGNATURE, options=options)  # 4
        signature = decode_release_signature(raw_sig, source=sig_url)
        if have_sig:
            _same_signature(sig_final, raw_sig, sig_url)
        if have_tar:  # 5
            digests, size = hash_file(final, hashes_for(keys), progress)
            try:
                verified = verify_digests(final, digests, size, signature, keys)
            except VerificationError as exc:
                raise Refused(
                    f"{final}: already exists and does not match {url} (its signature does not verify it); "
                    "refusing to replace it (move it away and re-run)"
                ) from exc
            check_archive_root(final, version, kind=kind)
            write_new(sig_final, raw_sig)
            fsync_dir(out)
            _drop_linked_part(part, final)
            notify(f"{final}: already here and verified; completed the pair with {sig_final.name}")
            return FetchedRelease(final, sig_final, url, verified, status="completed")
        hash_names = list(hashes_for(keys))
        digests, size = download(url, part, hash_names=hash_names, options=options, progress=progress)  # 6
        try:
            verified = verify_digests(final, digests, size, signature, keys)  # 7
            check_archive_root(part, version, kind=kind, shown=str(final))
        except VerificationError as exc:
            part.unlink(missing_ok=True)
            # the same cause (SignatureMismatch, WrongRelease ...), said about the URL the bytes came from
            raise type(exc)(f"{exc.reason}; the download was removed", subject=url) from exc
        link_regular(part, final)  # 8: the tarball first (never a link; exists: only a writer ignoring the lock)
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        fsync_dir(out)
        if have_sig:
            notify(f"{final}: downloaded and verified; completed the pair with the existing {sig_final.name}")
            return FetchedRelease(final, sig_final, url, verified, status="completed")
        write_new(sig_final, raw_sig)  # ... the signature last
        fsync_dir(out)
        return FetchedRelease(final, sig_final, url, verified)
