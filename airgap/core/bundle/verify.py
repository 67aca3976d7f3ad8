"""Bundle verification: :func:`open_bundle` returns a :class:`VerifiedBundle` or raises.

Trust: everything read from a bundle is hostile until :func:`open_bundle` returns (the numbered
steps are in its docstring); :func:`inspect_bundle` reports unverified claims.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from airgap.core.bundle.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    check_signer_key,
    parse_manifest_json,
    validate_manifest,
)
from airgap.core.bundle.ustar import TarEntry, read_member, scan_archive
from airgap.core.hashing import Digests, copy_hashed, hash_fd
from airgap.core.keys import PublicKey, spki_sha256
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.signatures import verify_bytes
from airgap.errors import AirgapError, InvalidInput, Refused, VerificationError

# -- verification ----------------------------------------------------------------------------------
_SEAL = object()


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every check of :func:`open_bundle`. Only ``open_bundle`` makes one.

    Small members (up to ``Limits.max_pem_size``) are kept in memory exactly as they were hashed,
    so later reads cannot be swapped under us; larger ones are re-hashed by :meth:`extract_member`.
    """

    path: Path
    manifest: Manifest
    manifest_bytes: bytes
    signature: bytes
    signer_key_id: str
    _small: Mapping[str, bytes] = field(repr=False)
    _offsets: Mapping[str, int] = field(repr=False)
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL:
            raise TypeError("VerifiedBundle is made only by open_bundle()")

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    @property
    def cluster(self) -> str:
        return self.manifest.cluster

    @property
    def sequence(self) -> int:
        return self.manifest.sequence

    @property
    def ceremony_head(self) -> str | None:
        """The officer's ceremony-log head when sealed (signed, so verified; None: no log / format 1)."""
        return self.manifest.ceremony_head

    def has_member(self, path: str) -> bool:
        return self.manifest.member(path) is not None

    def member_bytes(self, path: str) -> bytes:
        """The verified bytes of a small member (as stored: ciphertext for encrypted members)."""
        if path not in self._small:
            raise InvalidInput(f"{self.path}: member {path!r} is not in the bundle or too large to hold in memory")
        return self._small[path]

    def extract_member(self, path: str, dest: Path, *, progress: Progress = NO_PROGRESS) -> None:
        """Copy a member to the new file ``dest`` (atomic, never replacing), re-checking its SHA-256."""
        from airgap.core.atomic import AtomicFile

        entry = self.manifest.member(path)
        if entry is None or path not in self._offsets:
            raise InvalidInput(f"{self.path}: no member {path!r}")
        with open(self.path, "rb") as src, AtomicFile(dest) as out:
            digests = Digests(["sha256"])
            if copy_hashed(src.fileno(), self._offsets[path], entry.size, out, digests, progress=progress) < entry.size:
                raise VerificationError(f"{self.path}: bundle changed after verification")
            if digests.hexdigest() != entry.sha256:
                raise VerificationError(f"{self.path}: bundle changed after verification ({path})")


def _open_for_reading(path: Path) -> tuple[IO[bytes], int]:
    from airgap.core.files import open_regular

    fh = open_regular(path, "bundle")  # a fifo or device is refused at once, never waited on
    return fh, os.fstat(fh.fileno()).st_size


def _scan(fh: IO[bytes], file_size: int, *, limits: Limits, source: str) -> list[TarEntry]:
    """Steps 1-3 for a whole bundle file: its size cap, then every header (:func:`scan_archive`)."""
    if file_size > limits.max_bundle_size:
        raise InvalidInput(f"{source}: {file_size} bytes is over the bundle size limit ({limits.max_bundle_size})")
    if file_size == 0:
        raise InvalidInput(f"{source}: empty file, not a bundle")
    return scan_archive(fh, file_size, limits=limits, source=source)


def _manifest_entries(entries: list[TarEntry], *, source: str) -> tuple[TarEntry, TarEntry, list[TarEntry]]:
    names = [e.name for e in entries]
    if MANIFEST_NAME not in names:
        if not entries:
            raise InvalidInput(f"{source}: empty archive, not a bundle")
        raise InvalidInput(f"{source}: no manifest.json, not a bundle")
    if SIGNATURE_NAME not in names:
        raise VerificationError(f"{source}: the bundle is not signed (no manifest.json.sig)")
    if names[-2:] != [MANIFEST_NAME, SIGNATURE_NAME]:
        raise InvalidInput(f"{source}: manifest.json and manifest.json.sig must be the last two members")
    return entries[-2], entries[-1], entries[:-2]


def open_bundle(
    path: Path,
    trust: Iterable[PublicKey],
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: dt.datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> VerifiedBundle:
    """Verify a bundle against ``trust`` (the officer's public keys) and return it, or raise.

    Nothing in the file is trusted until this returns. Failures: malformed or unsafe archive or
    manifest → :class:`InvalidInput` (3); bad or untrusted signature, wrong size or hash, missing
    or extra member → :class:`VerificationError` (1); expired → :class:`Refused` (4).
    """
    path = Path(path)
    source = str(path)
    trusted = _trusted_keys(trust)
    fh, file_size = _open_for_reading(path)
    try:
        # 1. size caps (the whole file here; each member while scanning headers)
        # 1-3. per header: size caps, member types (regular files only), names (no absolute, no
        # '..', no duplicates)
        entries = _scan(fh, file_size, limits=limits, source=source)
        man_entry, sig_entry, payload = _manifest_entries(entries, source=source)
        # 4. the manifest against the schema (strict JSON, canonical, unknown fields rejected)
        manifest_bytes = read_member(fh, man_entry, source=source)
        manifest = validate_manifest(parse_manifest_json(manifest_bytes, source=source), source=source, limits=limits)
        # 5. the signature against the trusted keys
        signature = read_member(fh, sig_entry, source=source)
        _check_signature(trusted, manifest, manifest_bytes, signature, source=source)
        # 6. every member's size and SHA-256 (sizes first, so nothing over-long is read)
        small, offsets = _hash_members(fh, manifest, payload, limits=limits, progress=progress, path=path)
        # 7. no member missing or extra, and the archive order is the manifest's
        _check_member_set(manifest, payload, source=source)
        # 8. expiry
        t = now or dt.datetime.now(dt.UTC)
        if t >= manifest.expires_at:
            raise Refused(f"{source}: bundle expired at {manifest.expires}")
    except AirgapError:
        raise
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot read bundle: {exc.strerror or exc}") from exc
    finally:
        fh.close()
    return VerifiedBundle(
        path=path,
        manifest=manifest,
        manifest_bytes=manifest_bytes,
        signature=signature,
        signer_key_id=manifest.signer,
        _small=small,
        _offsets=offsets,
        _seal=_SEAL,
    )


def _trusted_keys(trust: Iterable[PublicKey]) -> dict[str, PublicKey]:
    """The --trust keys by SPKI SHA-256, each an allowed signer key; an empty policy fails."""
    trusted: dict[str, PublicKey] = {}
    for trusted_key in trust:
        check_signer_key(trusted_key, source="--trust key")
        trusted[spki_sha256(trusted_key)] = trusted_key
    if not trusted:  # the empty policy fails
        raise InvalidInput("no trusted signer key given (--trust)")
    return trusted


def _check_signature(
    trusted: Mapping[str, PublicKey], manifest: Manifest, manifest_bytes: bytes, signature: bytes, *, source: str
) -> None:
    """Step 5: the manifest's signer is a trusted key and its signature over the manifest verifies."""
    key = trusted.get(manifest.signer)
    if key is None:
        raise VerificationError(f"{source}: signed by key {manifest.signer}, which is not a --trust key")
    try:
        verify_bytes(key, manifest_bytes, signature)
    except VerificationError as exc:
        raise VerificationError(f"{source}: manifest signature does not verify") from exc


def _hash_members(
    fh: IO[bytes], manifest: Manifest, payload: list[TarEntry], *, limits: Limits, progress: Progress, path: Path
) -> tuple[dict[str, bytes], dict[str, int]]:
    """Step 6: each present member's size, then its SHA-256; returns the small members' bytes (kept
    exactly as hashed) and every member's offset."""
    source = str(path)
    by_name = {e.name: e for e in payload}
    small: dict[str, bytes] = {}
    offsets: dict[str, int] = {}
    present = [m for m in manifest.members if m.path in by_name]
    for m in present:
        if by_name[m.path].size != m.size:
            raise VerificationError(
                f"{source}: member {m.path} is {by_name[m.path].size} bytes, the manifest says {m.size}"
            )
    progress.start(f"verifying {path.name}", sum(m.size for m in present))
    for m in present:
        e = by_name[m.path]
        digests = Digests(["sha256"])
        if m.size <= limits.max_pem_size:  # small: kept exactly as hashed
            data = os.pread(fh.fileno(), m.size, e.offset)
            digests.update(data)
            small[m.path] = data
            progress.advance(len(data))
        else:  # large: hashed in place, once, without a copy (airgap.core.hashing)
            hash_fd(fh.fileno(), digests, offset=e.offset, length=m.size, progress=progress)
        if digests.size != m.size:
            raise InvalidInput(f"{source}: truncated archive")
        if digests.hexdigest() != m.sha256:
            raise VerificationError(f"{source}: member {m.path} does not match its SHA-256 in the manifest")
        offsets[m.path] = e.offset
    progress.finish()
    return small, offsets


def _check_member_set(manifest: Manifest, payload: list[TarEntry], *, source: str) -> None:
    """Step 7: no member missing or extra, and the archive order is the manifest's."""
    names = {e.name for e in payload}
    missing = [m.path for m in manifest.members if m.path not in names]
    if missing:
        raise VerificationError(f"{source}: member {missing[0]} is named in the manifest but missing")
    listed = {m.path for m in manifest.members}
    extra = [e.name for e in payload if e.name not in listed]
    if extra:
        raise VerificationError(f"{source}: member {extra[0]!a} is not in the manifest")
    if [e.name for e in payload] != [m.path for m in manifest.members]:
        raise VerificationError(f"{source}: members are not in the manifest's order")


def inspect_bundle(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """What a bundle claims, UNVERIFIED: the archive listing and the manifest, no signature check.

    The archive must still be structurally safe (steps 1-3) and the manifest must parse; a
    manifest that fails the schema is shown raw with the problem. Never use this for import.
    """
    path = Path(path)
    source = str(path)
    fh, file_size = _open_for_reading(path)
    try:
        entries = _scan(fh, file_size, limits=limits, source=source)
        names = [e.name for e in entries]
        if MANIFEST_NAME not in names:
            raise InvalidInput(f"{source}: no manifest.json, not a bundle")
        man = next(e for e in entries if e.name == MANIFEST_NAME)
        raw = read_member(fh, man, source=source)
        doc = parse_manifest_json(raw, source=source, canonical=False)
        problem: str | None = None
        try:
            parse_manifest_json(raw, source=source)
            validate_manifest(doc, source=source, limits=limits)
        except InvalidInput as exc:
            problem = exc.message
    except OSError as exc:
        raise InvalidInput(f"{source}: cannot read bundle: {exc.strerror or exc}") from exc
    finally:
        fh.close()
    return {
        "verified": False,
        "bundle": str(path),
        "manifest": doc,
        "manifest_problem": problem,
        "signature_present": SIGNATURE_NAME in names,
        "archive": [{"name": e.name, "size": e.size} for e in entries],
    }
