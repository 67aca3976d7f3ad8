"""Signed request files: a cluster's CSR carried to the root host (``bundles/SPEC.md`` section 9).

A request file is a member of the bundle family: the same ustar container, canonical JSON and
ECDSA manifest signature as a transfer bundle (:mod:`airgap.core.bundle` does all three), with one
member and its own manifest::

    request/csr.pem      the PKCS#10 request (PEM)
    manifest.json        {"kind": "airgap-ca-request", "format_version": 1, "request_id", "cluster",
                          "created", "expires", "requester", "key_id", "members": [...]}
    manifest.json.sig    DER ECDSA by the requester's signing key over manifest.json

Trust: every byte is hostile until :func:`open_request` returns a :class:`VerifiedRequest`. Steps:
1-3. the container (size caps, regular files only, names; exit 3) exactly as for a bundle;
4. the manifest parses strictly, is canonical, and meets the schema (exit 3);
5. the requester is a ``--trust`` key and the signature verifies (exit 1);
6. the member has the manifest's size and SHA-256 (exit 1); 7. nothing missing or extra (exit 1);
8. the CSR itself verifies (:func:`airgap.core.csr.verify_csr`: exit 3 / 1) and its key is the
   manifest's ``key_id`` (exit 1); 9. not expired (exit 4).
Whether the request id was signed before and the cluster is the one meant is the signing act's
check (exit 4). The kind field keeps a request from ever passing as a bundle and the other way.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.core.bundle import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    BundleWriter,
    MemberEntry,
    canonical_json,
    check_signer_key,
    format_time,
    parse_manifest_json,
    parse_time,
    scan_archive,
    sign_manifest,
)
from airgap.core.bundle.ustar import TarEntry, read_member
from airgap.core.csr import MAX_CSR_BYTES, VerifiedCSR, verify_csr
from airgap.core.keys import PrivateKey, PublicKey, load_public_key, spki_sha256
from airgap.core.limits import Limits
from airgap.core.names import CLUSTER_NAME_RE
from airgap.core.signatures import verify_bytes
from airgap.errors import DigestMismatch, Expired, InvalidInput, Refused, SignatureMismatch, TooLarge, VerificationError

KIND = "airgap-ca-request"
FORMAT_VERSION = 1
CSR_MEMBER = "request/csr.pem"
MAX_REQUEST_BYTES = 256 * 1024
MAX_REQUEST_DAYS = 365
DEFAULT_REQUEST_DAYS = 30
REQUEST_LIMITS = Limits(
    max_bundle_size=MAX_REQUEST_BYTES, max_member_size=MAX_CSR_BYTES, max_members=1, max_manifest_size=16 * 1024
)

_KEYS = frozenset(
    {"kind", "format_version", "request_id", "cluster", "created", "expires", "requester", "key_id", "members"}
)
_MEMBER_KEYS = frozenset({"path", "size", "sha256", "encrypted"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class RequestManifest:
    request_id: str
    cluster: str
    created: str
    expires: str
    requester: str
    key_id: str
    member: MemberEntry

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "request_id": self.request_id,
            "cluster": self.cluster,
            "created": self.created,
            "expires": self.expires,
            "requester": self.requester,
            "key_id": self.key_id,
            "members": [self.member.to_doc()],
        }

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_doc())


@dataclass(frozen=True)
class VerifiedRequest:
    """A request file that passed every step of :func:`open_request`."""

    manifest: RequestManifest
    csr: VerifiedCSR

    @property
    def request_id(self) -> str:
        return self.manifest.request_id

    @property
    def cluster(self) -> str:
        return self.manifest.cluster


def check_cluster(name: str) -> str:
    """A cluster name as a manifest holds it (a Kubernetes label value); exit 3 otherwise."""
    if not CLUSTER_NAME_RE.match(name):
        raise InvalidInput(
            f"cluster name {name!a} is not valid: use 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (a Kubernetes label value)"
        )
    return name


def looks_like_request(data: bytes) -> bool:
    """True when ``data`` is a ustar archive (a request file, not a bare CSR): a hint, not a check."""
    return len(data) >= 512 and data[257:263] == b"ustar\0"


def _bad(source: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{source}: request manifest: {msg}")


def validate_request_manifest(doc: Any, *, source: str) -> RequestManifest:
    """The schema of section 9.2 (unknown fields rejected); exit 3 naming the first problem."""
    if not isinstance(doc, dict):
        raise _bad(source, "not a JSON object")
    if doc.get("kind") != KIND:
        raise _bad(source, f"kind must be {KIND!r} (is this a transfer bundle?)")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise _bad(source, f"unknown field {unknown[0]!a}")
    missing = sorted(_KEYS - set(doc))
    if missing:
        raise _bad(source, f"missing field {missing[0]!r}")
    if doc["format_version"] != FORMAT_VERSION or isinstance(doc["format_version"], bool):
        raise _bad(source, f"format_version must be {FORMAT_VERSION}")
    for k, rx in (("request_id", _ID), ("cluster", CLUSTER_NAME_RE), ("requester", _HEX64), ("key_id", _HEX64)):
        if not isinstance(doc[k], str) or not rx.match(doc[k]):
            raise _bad(source, f"{k} is malformed")
    for k in ("created", "expires"):
        if not isinstance(doc[k], str):
            raise _bad(source, f"{k} is not a string")
    created = parse_time(doc["created"], source=source)
    expires = parse_time(doc["expires"], source=source)
    if not created < expires <= created + dt.timedelta(days=MAX_REQUEST_DAYS):
        raise _bad(source, f"expires must be after created and at most {MAX_REQUEST_DAYS} days later")
    members = doc["members"]
    if not isinstance(members, list) or len(members) != 1 or not isinstance(members[0], dict):
        raise _bad(source, f"members must be exactly one object ({CSR_MEMBER})")
    m = members[0]
    if set(m) != _MEMBER_KEYS:
        raise _bad(source, "member fields must be path, size, sha256, encrypted")
    if m["path"] != CSR_MEMBER:
        raise _bad(source, f"the member must be {CSR_MEMBER}")
    size = m["size"]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_CSR_BYTES:
        raise _bad(source, f"member size must be 1 to {MAX_CSR_BYTES}")
    if not isinstance(m["sha256"], str) or not _HEX64.match(m["sha256"]):
        raise _bad(source, "member sha256 is malformed")
    if m["encrypted"] is not False:
        raise _bad(source, "the CSR member is never encrypted")
    return RequestManifest(
        request_id=doc["request_id"],
        cluster=doc["cluster"],
        created=doc["created"],
        expires=doc["expires"],
        requester=doc["requester"],
        key_id=doc["key_id"],
        member=MemberEntry(CSR_MEMBER, size, m["sha256"], False),
    )


def write_request(
    csr_pem: bytes,
    *,
    cluster: str,
    sign_key: PrivateKey,
    created: dt.datetime,
    days: int = DEFAULT_REQUEST_DAYS,
    request_id: str | None = None,
    deterministic: bool = False,
) -> bytes:
    """The bytes of a signed request file for ``csr_pem`` (verified first, so a bad CSR never ships)."""
    if not 0 < days <= MAX_REQUEST_DAYS:
        raise InvalidInput(f"--expires must be 1 to {MAX_REQUEST_DAYS} days")
    check_signer_key(sign_key, source="--sign-key")
    check_cluster(cluster)
    csr = verify_csr(csr_pem, source="request")
    buf = io.BytesIO()
    w = BundleWriter(buf)
    member = w.add_bytes(CSR_MEMBER, csr_pem)
    manifest = RequestManifest(
        request_id=request_id or secrets.token_hex(16),
        cluster=cluster,
        created=format_time(created),
        expires=format_time(created + dt.timedelta(days=days)),
        requester=spki_sha256(sign_key),
        key_id=csr.key_id,
        member=member,
    )
    body = manifest.canonical_bytes()
    w.finish(body, sign_manifest(sign_key, body, deterministic=deterministic))
    return buf.getvalue()


def _trusted_keys(trust: Iterable[PublicKey | Path]) -> dict[str, PublicKey]:
    trusted: dict[str, PublicKey] = {}
    for item in trust:
        trusted_key = load_public_key(item) if isinstance(item, Path) else item
        check_signer_key(trusted_key, source="--trust key")
        trusted[spki_sha256(trusted_key)] = trusted_key
    if not trusted:  # the empty policy fails
        raise InvalidInput("no trusted requester key given (--trust)")
    return trusted


def _scan_container(fh: io.BytesIO, size: int, source: str) -> list[TarEntry]:
    """Steps 1-3: the container, as for a bundle; the manifest and its signature last."""
    if not size:
        raise InvalidInput(f"{source}: empty file, not a request")
    if size > MAX_REQUEST_BYTES:
        raise TooLarge(f"{source}: too large for a request file (over {MAX_REQUEST_BYTES} bytes)")
    entries = scan_archive(fh, size, limits=REQUEST_LIMITS, source=source)
    names = [e.name for e in entries]
    if MANIFEST_NAME not in names:
        raise InvalidInput(f"{source}: no manifest.json, not a request file")
    if SIGNATURE_NAME not in names:
        raise VerificationError(f"{source}: the request is not signed (no manifest.json.sig)")
    if names[-2:] != [MANIFEST_NAME, SIGNATURE_NAME]:
        raise InvalidInput(f"{source}: manifest.json and manifest.json.sig must be the last two entries")
    return entries


def _read_csr_member(fh: io.BytesIO, payload: list[TarEntry], manifest: RequestManifest, source: str) -> bytes:
    """Steps 6-7: the one member, present, alone, its size and SHA-256."""
    import hashlib

    names = [e.name for e in payload]
    if names != [CSR_MEMBER]:
        extra = next((n for n in names if n != CSR_MEMBER), None)
        if extra is not None:
            raise VerificationError(f"{source}: member {extra!a} is not in the manifest")
        raise VerificationError(f"{source}: member {CSR_MEMBER} is named in the manifest but missing")
    entry = payload[0]
    if entry.size != manifest.member.size:
        raise VerificationError(
            f"{source}: member {CSR_MEMBER} is {entry.size} bytes, the manifest says {manifest.member.size}"
        )
    csr_bytes = read_member(fh, entry, source=source)
    if hashlib.sha256(csr_bytes).hexdigest() != manifest.member.sha256:
        raise DigestMismatch(f"{source}: member {CSR_MEMBER} does not match its SHA-256 in the manifest")
    return csr_bytes


def _check_dates(manifest: RequestManifest, source: str, now: dt.datetime | None) -> None:
    """Step 9: not expired, not dated in the future."""
    when = now or dt.datetime.now(dt.UTC)
    if when >= parse_time(manifest.expires, source=source):
        raise Expired(f"{source}: request expired at {manifest.expires}")
    if when < parse_time(manifest.created, source=source) - dt.timedelta(minutes=5):
        raise Refused(f"{source}: request is dated in the future ({manifest.created}); check the clocks")


def open_request(
    data: bytes, trust: Iterable[PublicKey | Path], *, source: str, now: dt.datetime | None = None
) -> VerifiedRequest:
    """Verify an untrusted request file against ``trust`` (operators' public keys), or raise."""
    trusted = _trusted_keys(trust)
    fh = io.BytesIO(data)
    entries = _scan_container(fh, len(data), source)  # 1-3
    man_entry, sig_entry, payload = entries[-2], entries[-1], entries[:-2]
    # 4. the manifest
    manifest_bytes = read_member(fh, man_entry, source=source)
    manifest = validate_request_manifest(parse_manifest_json(manifest_bytes, source=source), source=source)
    # 5. the requester's signature
    signature = read_member(fh, sig_entry, source=source)
    key = trusted.get(manifest.requester)
    if key is None:
        raise VerificationError(f"{source}: signed by key {manifest.requester}, which is not a --trust key")
    try:
        verify_bytes(key, manifest_bytes, signature)
    except VerificationError as exc:
        raise SignatureMismatch(f"{source}: request signature does not verify") from exc
    csr_bytes = _read_csr_member(fh, payload, manifest, source)  # 6-7
    # 8. the CSR itself, and that it carries the key the manifest names
    csr = verify_csr(csr_bytes, source=f"{source}: {CSR_MEMBER}")
    if csr.key_id != manifest.key_id:
        raise VerificationError(f"{source}: the CSR's key {csr.key_id} is not the key_id the manifest names")
    _check_dates(manifest, source, now)  # 9
    return VerifiedRequest(manifest, csr)


__all__ = [
    "CSR_MEMBER",
    "KIND",
    "MAX_REQUEST_BYTES",
    "RequestManifest",
    "VerifiedRequest",
    "check_cluster",
    "looks_like_request",
    "open_request",
    "validate_request_manifest",
    "write_request",
]
