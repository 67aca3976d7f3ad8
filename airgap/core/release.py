"""Release artifacts: pinned keys, streaming signature verification, safe extraction, the record.

Trust model:

* **Trusted**: the pinned keys below (copied from the ASM install guide), keys in the user's keys
  folder (see :func:`user_keys_dir`), and a ``--key PEM`` given on the command line.
* **Untrusted**: the release file, its signature, the archive's contents. A release is accepted only
  when a trusted key verifies the detached signature over the SHA-256 (SHA-384 for P-384 keys) of
  the whole file, streamed in chunks with bounded memory.
* ``RELEASE.json`` is written by :func:`extract_release` only after verification; later commands call
  :func:`check_release_file` to re-hash a file (``bin/istioctl``) against it before running it. The
  record detects changes made after extraction; anyone who can rewrite both the file and the record
  can defeat it, so keep the folder writable only by the operator.
"""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.core.atomic import write_new
from airgap.core.canonical import load_json, state_json
from airgap.core.files import open_regular_fd, read_capped
from airgap.core.hashing import Digests, hash_fd, hash_file
from airgap.core.keys import (
    PublicKey,
    key_type_of,
    load_public_key,
    load_public_key_pem,
    signature_hash_for,
    spki_sha256,
)
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.signatures import MAX_SIGNATURE, decode_signature, verify_digest
from airgap.errors import InvalidInput, SignatureMismatch, VerificationError, WrongRelease

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes

    from airgap.core.archive import ExtractedFile

__all__ = ["Digests", "hash_file"]  # re-exported: the release paths' hashing lives in airgap.core.hashing

RECORD_NAME = "RELEASE.json"
RECORD_FORMAT = "airgap-release/1"
MAX_RECORD = 64 * 1024 * 1024
DEFAULT_BASE_URL = "https://storage.googleapis.com/gke-release/asm"
PLATFORMS = ("linux-amd64", "osx", "win")

# The ASM release signing key, exactly as printed in the ASM 1.8 install guide (ECDSA P-256).
ASM_RELEASE_KEY_PEM = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWZrGCUaJJr1H8a36sG4UUoXvlXvZ
wQfk16sxprI2gOJ2vFFggdq3ixF2h4qNBt0kI7ciDhgpwS8t+/960IsIgw==
-----END PUBLIC KEY-----
"""
PINNED_KEYS: tuple[tuple[str, bytes, str], ...] = (
    ("asm-release", ASM_RELEASE_KEY_PEM, "Anthos Service Mesh release key (ASM install guide)"),
)


@dataclass(frozen=True)
class ReleaseKey:
    """A trusted release key: a stable id, where it came from, and the key itself."""

    id: str
    public: PublicKey = field(repr=False)
    source: str  # "pinned", a keys-folder file, or a --key file
    description: str = ""

    @property
    def algorithm(self) -> str:
        return key_type_of(self.public)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex."""
        return spki_sha256(self.public)

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "algorithm": self.algorithm,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "description": self.description,
        }


def pinned_keys() -> list[ReleaseKey]:
    """The keys built into airgap."""
    return [ReleaseKey(kid, load_public_key_pem(pem, source=kid), "pinned", desc) for kid, pem, desc in PINNED_KEYS]


def user_keys_dir() -> Path:
    """The keys folder: ``$AIRGAP_RELEASE_KEYS``, else ``$XDG_CONFIG_HOME/airgap/release-keys``
    (``~/.config/airgap/release-keys``). Every ``*.pem`` public key there is trusted; its id is the
    file name without ``.pem``."""
    env = os.environ.get("AIRGAP_RELEASE_KEYS")
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "airgap" / "release-keys"


def folder_keys(folder: Path | None = None) -> list[ReleaseKey]:
    """Keys from the keys folder (missing folder: none). A broken key file there is exit 3."""
    folder = user_keys_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    return [
        ReleaseKey(p.stem, load_public_key(p), str(p), "keys folder")
        for p in sorted(folder.glob("*.pem"))
        if p.is_file()
    ]


def known_keys() -> list[ReleaseKey]:
    """Pinned keys, then keys-folder keys. A folder key may not reuse a pinned id."""
    keys = pinned_keys()
    ids = {k.id for k in keys}
    for k in folder_keys():
        if k.id in ids:
            raise InvalidInput(f"{k.source}: key id {k.id!r} is already used by another release key; rename the file")
        ids.add(k.id)
        keys.append(k)
    return keys


def select_keys(key: Path | None = None, key_id: str | None = None) -> list[ReleaseKey]:
    """The keys a verification trusts: ``--key PEM`` alone, or ``--key-id`` (an id or a full
    fingerprint) among the known keys, or else every known key."""
    if key is not None and key_id is not None:
        raise InvalidInput("give either --key or --key-id, not both")
    if key is not None:
        return [ReleaseKey(key.name.removesuffix(".pem"), load_public_key(key), str(key), "--key")]
    keys = known_keys()
    if key_id is not None:
        wanted = key_id.lower()
        chosen = [k for k in keys if k.id == key_id or k.fingerprint == wanted]
        if not chosen:
            known = ", ".join(k.id for k in keys)
            raise InvalidInput(f"unknown release key id {key_id!r}; known: {known} (see: airgap release keys)")
        return chosen
    return keys


def read_signature(path: Path) -> bytes:
    """Read a detached signature (raw DER or base64); missing/unreadable/empty/huge is exit 3."""
    return decode_release_signature(read_capped(path, MAX_SIGNATURE, "signature file"), source=str(path))


def decode_release_signature(raw: bytes, *, source: str) -> bytes:
    """Raw DER/RSA bytes or their base64 text (cosign): see :func:`decode_signature`."""
    return decode_signature(raw, source=source)


def hashes_for(keys: Iterable[ReleaseKey]) -> dict[str, hashes.HashAlgorithm]:
    """The digests a verification needs: SHA-256 (it names the file in the output and the record)
    and each key's signature hash; usually only SHA-256 (one digest, one pass)."""
    from cryptography.hazmat.primitives import hashes

    algs: dict[str, hashes.HashAlgorithm] = {"sha256": hashes.SHA256()}
    for k in keys:
        alg = signature_hash_for(k.public)
        algs.setdefault(alg.name, alg)
    return algs


def _open_release(path: Path) -> int:
    """Open the release file for reading: a regular file, else :class:`InvalidInput` (exit 3)."""
    fd = open_regular_fd(path, "file")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        why = "is a folder, expected a file" if stat.S_ISDIR(mode) else "not a regular file"
        raise InvalidInput(f"{path}: {why}")
    return fd


def _hash_release(fd: int, path: Path, names: Iterable[str], progress: Progress) -> Digests:
    """One pass over the open release file through the digests the keys need."""
    digests = Digests(names)
    progress.start(f"verifying {path.name}", os.fstat(fd).st_size)
    try:
        hash_fd(fd, digests, progress=progress)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
    finally:
        progress.finish()
    return digests


@dataclass(frozen=True)
class VerifiedRelease:
    """A release file whose signature a trusted key verified. Only :func:`verify_release` makes one."""

    path: Path
    sha256: str
    size: int
    key: ReleaseKey
    signature: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "key_id": self.key.id,
            "key_algorithm": self.key.algorithm,
            "fingerprint": self.key.fingerprint,
            "verdict": "verified",
        }


def verify_digests(
    path: Path, digests: dict[str, bytes], size: int, signature: bytes, keys: Sequence[ReleaseKey]
) -> VerifiedRelease:
    """Check ``signature`` over pre-computed digests of ``path`` against ``keys``; the first that
    verifies wins. Raise :class:`~airgap.errors.SignatureMismatch` (``subject`` ``path``) when none does."""
    if not keys:
        raise SignatureMismatch("no trusted release key to verify with", subject=path)
    for k in keys:
        alg = signature_hash_for(k.public)
        try:
            verify_digest(k.public, digests[alg.name], signature, alg)
        except VerificationError:
            continue
        return VerifiedRelease(path, digests["sha256"].hex(), size, k, signature)
    which = keys[0].id if len(keys) == 1 else f"any of {', '.join(k.id for k in keys)}"
    raise SignatureMismatch(f"signature does not verify with {which}", subject=path)


def verify_release(
    path: Path,
    signature: Path | None = None,
    *,
    key: Path | None = None,
    key_id: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> VerifiedRelease:
    """Verify a release file's detached signature (default ``FILE.1.sig``) with trusted keys.

    Steps: (1) pick the trusted keys; (2) read and decode the signature (raw DER or base64);
    (3) stream the file once through every hash the keys need; (4) verify the signature over the
    digest. A missing or unreadable file, signature or key is :class:`InvalidInput` (exit 3); a
    signature that does not verify is :class:`VerificationError` (exit 1).
    """
    fd = _open_release(path)  # the file first: its absence explains a missing default .1.sig too
    try:
        return _verify_open(fd, path, signature, key, key_id, progress)
    finally:
        os.close(fd)


def _verify_open(
    fd: int, path: Path, signature: Path | None, key: Path | None, key_id: str | None, progress: Progress
) -> VerifiedRelease:
    keys = select_keys(key, key_id)  # 1
    sig = read_signature(signature if signature is not None else default_signature_path(path))  # 2
    digests = _hash_release(fd, path, hashes_for(keys), progress)  # 3
    return verify_digests(path, digests.digests(), digests.size, sig, keys)  # 4


def default_signature_path(path: Path) -> Path:
    return path.with_name(path.name + ".1.sig")


def release_file_name(version: str, platform: str) -> str:
    """The guide's names: ``istio-VERSION-PLATFORM.tar.gz``, ``.zip`` for ``win``."""
    if platform not in PLATFORMS:
        raise InvalidInput(f"unknown platform {platform!r}; choose one of {', '.join(PLATFORMS)}")
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,99}", version):
        raise InvalidInput(f"invalid release version {version!r}")
    ext = "zip" if platform == "win" else "tar.gz"
    return f"istio-{version}-{platform}.{ext}"


_FILE_NAME = re.compile(r"^istio-([0-9A-Za-z][0-9A-Za-z._+-]{0,99})-(linux-amd64|osx|win)\.(?:tar\.gz|zip)$")


def version_from_file_name(name: str) -> str | None:
    """The version in a guide-named release file (``istio-1.8.6-asm.8-linux-amd64.tar.gz``), else None."""
    m = _FILE_NAME.match(name)
    return m.group(1) if m else None


def _first_member(path: Path, kind: str, shown: str) -> str:
    """The name of the first member of a ``.tar.gz`` (one header: cheap) or ``.zip`` (central directory)."""
    import tarfile
    import zipfile
    import zlib

    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
                return infos[0].filename if infos else ""
        with tarfile.open(path, "r|*") as tar:
            first = tar.next()
            return first.name if first is not None else ""
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error) as exc:
        raise WrongRelease(f"cannot read the archive's first member ({exc.__class__.__name__})", subject=shown) from exc


def check_archive_root(path: Path, version: str, *, kind: str | None = None, shown: str | None = None) -> None:
    """Refuse an archive whose first member is not under ``istio-VERSION/`` (:class:`~airgap.errors.WrongRelease`,
    exit 1; its ``subject`` is ``shown``, the name the user knows the file by, default ``path``).

    The detached signature covers the bytes, not the version: an older signed release published
    under a newer name is caught here, from one header, before anyone extracts it.
    """
    from airgap.core.archive import archive_kind

    shown = shown or str(path)
    first = _first_member(path, kind or archive_kind(path), shown)
    root = first.removeprefix("./").split("/", 1)[0] if first else ""
    _check_root(shown, root, version)


def _check_root(shown: str, root: str | None, version: str) -> None:
    if root != f"istio-{version}":
        raise WrongRelease(
            f"the archive's root folder is {root!r}, not 'istio-{version}' of the release asked for; "
            "refusing it (a different release published under this name?)",
            subject=shown,
        )


# ---------------------------------------------------------------------------------------------
# Extraction and the RELEASE.json record


def _record(verified: VerifiedRelease, entries: list[ExtractedFile], sig_name: str) -> dict[str, Any]:
    tops = {e.path.split("/", 1)[0] for e in entries}
    root: str | None = None
    if len(tops) == 1:
        top = next(iter(tops))
        if any(e.path.startswith(top + "/") or (e.path == top and e.kind == "dir") for e in entries):
            root = top  # the archive's single top-level folder (istio-VERSION)
    files: dict[str, dict[str, Any]] = {}
    links: dict[str, str] = {}
    for e in entries:
        if e.kind in ("file", "hardlink"):
            files[e.path] = {"sha256": e.sha256, "size": e.size, "mode": f"{e.mode:04o}"}
        elif e.kind == "symlink" and e.target is not None:
            links[e.path] = e.target
    return {
        "format": RECORD_FORMAT,
        "archive": {"name": verified.path.name, "sha256": verified.sha256, "size": verified.size},
        "signature": {"name": sig_name, "base64": base64.b64encode(verified.signature).decode("ascii")},
        "key": {"id": verified.key.id, "algorithm": verified.key.algorithm, "fingerprint": verified.key.fingerprint},
        "root": root,
        "version": root.removeprefix("istio-") if root else None,
        "files": dict(sorted(files.items())),
        "symlinks": dict(sorted(links.items())),
    }


@dataclass(frozen=True)
class ExtractedRelease:
    out: Path
    root: Path | None
    record: dict[str, Any]
    verified: VerifiedRelease


def extract_release(
    path: Path,
    out: Path,
    signature: Path | None = None,
    *,
    key: Path | None = None,
    key_id: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    progress: Progress = NO_PROGRESS,
    version: str | None = None,
    allow_downgrade: bool = False,
    state: Path | None = None,
) -> ExtractedRelease:
    """Verify ``path`` (see :func:`verify_release`), then extract it safely to ``out`` with
    ``out/RELEASE.json``: all or nothing. Nothing is extracted from an unverified file.

    ``version`` (default: read from the guide's file name ``istio-VERSION-PLATFORM.tar.gz``) is the
    release asked for: the archive's single root folder must be ``istio-VERSION`` (else exit 1, a
    rollback under a newer name), and an older release of a line this host has accepted a newer
    one of is refused (exit 4) unless ``allow_downgrade`` (:mod:`airgap.core.release_lines`).

    The file is opened once: hashed and verified, then extracted from the same open file while
    every byte extraction reads is hashed again on the way (the same read, no extra pass); the
    two digests must match before the tree is renamed into place, so a file changed in place
    after it was verified is refused (exit 1) and nothing is left.
    """
    from airgap.core.archive import extract_archive
    from airgap.core.release_lines import check_not_downgrade, record_accepted

    sig_name = (signature if signature is not None else default_signature_path(path)).name
    version = version or version_from_file_name(path.name)
    if version is not None:
        release_file_name(version, "linux-amd64")  # the same rules as fetch's VERSION (exit 3)
        check_not_downgrade(version, allow_downgrade=allow_downgrade, state=state)
    fd = _open_release(path)
    try:
        verified = _verify_open(fd, path, signature, key, key_id, progress)
        again = Digests(["sha256"])

        def finish(tmp: Path, entries: list[ExtractedFile]) -> None:
            if any(e.path == RECORD_NAME for e in entries):
                raise InvalidInput(
                    f"{path}: archive has a top-level {RECORD_NAME}, which would collide with the record"
                )
            if again.size != verified.size or again.hexdigest() != verified.sha256:
                raise VerificationError(f"{path}: changed while it was being extracted; refusing")
            record = _record(verified, entries, sig_name)
            if version is None:
                raise InvalidInput(
                    f"{path}: cannot tell the release version from the file name; pass --version"
                )
            _check_root(str(path), record["root"], version)
            record_accepted(version, state=state)  # before the release is published: a crash only raises the mark
            write_new(tmp / RECORD_NAME, state_json(record))
            holder["record"] = record

        holder: dict[str, dict[str, Any]] = {}
        extract_archive(path, out, limits=limits, progress=progress, finish=finish, fd=fd, digests=again)
    finally:
        os.close(fd)
    record = holder["record"]
    root = out / record["root"] if record["root"] else None
    return ExtractedRelease(out, root, record, verified)


_RELEASE_NAME_RE = re.compile(r"^istio-(?P<version>.+)-(?:" + "|".join(PLATFORMS) + r")\.(?:tar\.gz|zip)$")


def release_version(file_name: str) -> str | None:
    """The version in a release file's name (``istio-VERSION-PLATFORM.tar.gz``), None for another name."""
    m = _RELEASE_NAME_RE.match(file_name)
    return m.group("version") if m else None


def record_extract(rel: ExtractedRelease, *, state: Path | None = None) -> None:
    """Add the extract to the jump host's history (``release-extract``) for ``airgap audit report``.

    Call after :func:`extract_release` succeeded: the record says which file (name, SHA-256) which
    release key verified and where it went. Unsigned, like the rest of the history.
    """
    from airgap.core.history import RELEASE_EXTRACT, record_event

    v = rel.verified
    fields = {
        "version": release_version(v.path.name),
        "file": v.path.name,
        "sha256": v.sha256,
        "size": v.size,
        "key_id": v.key.id,
        "key_fingerprint": v.key.fingerprint,
        "out": str(rel.out.resolve()),
    }
    record_event(RELEASE_EXTRACT, fields, state=state)


def _find_record(release: Path) -> tuple[Path, dict[str, Any]]:
    """Locate and parse RELEASE.json for ``release`` (the --out folder or the istio-* folder in it)."""
    for out in (release, release.parent):
        rec_path = out / RECORD_NAME
        if rec_path.is_file() or rec_path.is_symlink():
            break
    else:
        raise VerificationError(
            f"{release}: no {RECORD_NAME} found here or in its parent; extract the release with "
            "'airgap release extract' first"
        )
    try:
        if rec_path.is_symlink():
            raise VerificationError(f"{rec_path}: is a link; refusing")
        with open(rec_path, "rb") as fh:
            raw = fh.read(MAX_RECORD + 1)
        if len(raw) > MAX_RECORD:
            raise VerificationError(f"{rec_path}: too large for a release record")
    except OSError as exc:
        raise VerificationError(f"{rec_path}: release record is unreadable: {exc}") from exc
    doc = load_json(raw, what=f"{rec_path}: release record", max_bytes=MAX_RECORD)  # malformed: exit 3
    if (
        not isinstance(doc, dict)
        or doc.get("format") != RECORD_FORMAT
        or not isinstance(doc.get("files"), dict)
        or not (doc.get("root") is None or isinstance(doc.get("root"), str))
    ):
        raise VerificationError(f"{rec_path}: not an airgap release record ({RECORD_FORMAT})")
    return out, doc


def release_root(release: Path) -> Path:
    """The ``istio-*`` folder of an extracted release; ``release`` is the ``--out`` folder of
    ``release extract`` or that ``istio-*`` folder itself. Uses RELEASE.json when present.
    Raise :class:`InvalidInput` (exit 3) when there is no such folder."""
    release = Path(release).absolute()
    if not release.is_dir():
        raise InvalidInput(f"{release}: release folder not found")
    try:
        out, doc = _find_record(release)
    except VerificationError:
        out, doc = release, {}
    root_name = doc.get("root")
    if isinstance(root_name, str) and root_name and "/" not in root_name and root_name != "..":
        candidate = out / root_name
        if candidate.is_dir() and not candidate.is_symlink():
            return candidate
    if release.name.startswith("istio-"):
        return release
    found = sorted(p for p in release.glob("istio-*") if p.is_dir() and not p.is_symlink())
    if len(found) == 1:
        return found[0]
    raise InvalidInput(f"{release}: no single istio-* folder found; pass the --out folder of 'airgap release extract'")


def check_release_file(release: Path, member: str = "bin/istioctl") -> Path:
    """Re-check one file of an extracted release against its RELEASE.json; return its absolute path.

    ``release`` is the ``--out`` folder of ``release extract`` or the ``istio-*`` folder inside it;
    ``member`` is relative to the ``istio-*`` folder. Trusted: the record (written only after the
    signature verified). Not trusted: the file on disk, which is re-hashed now. Raise
    :class:`VerificationError` (exit 1) if the record is missing or unreadable, the member is not in
    it, or the file is missing, not a regular file, or its SHA-256 or mode changed.
    """
    release = Path(release).absolute()
    out, doc = _find_record(release)
    root_name = doc.get("root")
    parts = [p for p in member.split("/") if p not in ("", ".")]
    if member.startswith("/") or ".." in parts or not parts:
        raise VerificationError(f"{member!r}: not a relative path inside the release")
    rel = "/".join(([root_name] if root_name else []) + parts)
    entry = doc["files"].get(rel)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise VerificationError(f"{out / RECORD_NAME}: {rel} is not in the release record")
    path = out / rel
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise VerificationError(f"{path}: missing (recorded in {out / RECORD_NAME})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise VerificationError(f"{path}: is not a regular file any more")
    try:
        digests, _ = hash_file(path, ["sha256"])
    except InvalidInput as exc:
        raise VerificationError(exc.message) from exc
    if digests["sha256"].hex() != entry["sha256"]:
        raise VerificationError(f"{path}: changed since it was extracted (SHA-256 differs from {RECORD_NAME})")
    mode = entry.get("mode")
    if isinstance(mode, str) and f"{stat.S_IMODE(st.st_mode):04o}" != mode:
        raise VerificationError(
            f"{path}: mode changed since it was extracted ({stat.S_IMODE(st.st_mode):04o}, was {mode})"
        )
    return path
