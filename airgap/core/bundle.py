"""The transfer-bundle format: manifest, canonical bytes, strict tar reader, verification.

A bundle is an uncompressed POSIX ustar archive (``bundles/SPEC.md`` is the normative text)::

    <member 1> ... <member n>   in the manifest's order (cacerts/…, then include/…)
    manifest.json               canonical JSON (sorted keys, no whitespace, ASCII)
    manifest.json.sig           DER ECDSA signature over the exact bytes of manifest.json
    two zero blocks             then only zero bytes up to the end of the file

Trust: everything read from a bundle is hostile until :func:`open_bundle` returns. It checks, in
the order the format requires, and before trusting anything it read: size caps, member types,
member names, the manifest against the schema, the signature against the caller's trusted keys,
every member's size and SHA-256, no member missing or extra, expiry. Only the returned
:class:`VerifiedBundle` may be used by import; :func:`inspect_bundle` reports unverified claims.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core.canonical import canonical_json
from airgap.core.keys import PrivateKey, PublicKey, signature_hash_for, spki_sha256
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.core.signatures import MAX_SIGNATURE, verify_bytes
from airgap.core.x509 import CAMaterial
from airgap.errors import AirgapError, InvalidInput, Refused, VerificationError

FORMAT_VERSION = 2  # what writers produce; 2 added ceremony_head
SUPPORTED_FORMAT_VERSIONS = (1, 2)  # 1: bundles made before ceremony_head, still accepted (SPEC.md 3)
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
BLOCK = 512
CHUNK = 1024 * 1024
MAX_USTAR_SIZE = 8**11 - 1  # 11 octal digits: the largest size a plain ustar header holds
MAX_EXPIRY_DAYS = 3650
MAX_RECIPIENTS = 64
MAX_SEQUENCE = 2**53 - 1  # exact in every JSON implementation

CA_CERT = "cacerts/ca-cert.pem"
CA_KEY = "cacerts/ca-key.pem"
CA_KEY_AGE = "cacerts/ca-key.pem.age"
CERT_CHAIN = "cacerts/cert-chain.pem"
ROOT_CERT = "cacerts/root-cert.pem"
CA_CRL = "cacerts/ca-crl.pem"
CACERTS_ORDER = (CA_CERT, CA_KEY, CA_KEY_AGE, CERT_CHAIN, ROOT_CERT, CA_CRL)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")
_CLUSTER = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
_MEMBER_PATH = re.compile(
    r"^(cacerts/(ca-cert\.pem|ca-key\.pem|ca-key\.pem\.age|cert-chain\.pem|root-cert\.pem|ca-crl\.pem)"
    r"|include/[A-Za-z0-9][A-Za-z0-9._-]{0,90})$"
)
_NAME_CHARS = re.compile(r"^[A-Za-z0-9._/-]+$")
INCLUDE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,90}$")

_TOP_KEYS_V1 = frozenset(
    {"format_version", "bundle_id", "cluster", "sequence", "created", "expires", "signer", "recipients", "members"}
)
_TOP_KEYS = _TOP_KEYS_V1 | {"ceremony_head"}
_TOP_KEYS_BY_VERSION = {1: _TOP_KEYS_V1, 2: _TOP_KEYS}
_MEMBER_KEYS = frozenset({"path", "size", "sha256", "encrypted"})

_TYPE_NAMES = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"5": "directory",
    b"6": "FIFO",
    b"7": "contiguous file",
    b"x": "pax extended header",
    b"g": "pax global header",
    b"L": "GNU long name",
    b"K": "GNU long link name",
    b"S": "GNU sparse file",
}


# -- times -----------------------------------------------------------------------------------------
def format_time(t: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC, the only time form a manifest holds."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str, *, source: str) -> dt.datetime:
    if not _TIME.match(value):
        raise InvalidInput(f"{source}: time {value!r} is not YYYY-MM-DDTHH:MM:SSZ")
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise InvalidInput(f"{source}: time {value!r} is not a valid date") from exc


# -- manifest --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberEntry:
    """One member as the manifest names it: archive path, size and SHA-256 of the stored bytes."""

    path: str
    size: int
    sha256: str
    encrypted: bool

    def to_doc(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "encrypted": self.encrypted}


@dataclass(frozen=True)
class Manifest:
    """The signed statement of a bundle (see ``bundles/SPEC.md``)."""

    format_version: int
    bundle_id: str
    cluster: str
    sequence: int
    created: str
    expires: str
    signer: str
    recipients: tuple[str, ...]
    members: tuple[MemberEntry, ...]
    # SHA-256 (hex) of the last ceremony-log entry when the bundle was sealed; None when the PKI
    # keeps no log. Format 2 always carries the field (null or hex); format 1 has no such field.
    ceremony_head: str | None = None

    def __post_init__(self) -> None:
        if self.format_version == 1 and self.ceremony_head is not None:
            raise ValueError("format_version 1 manifests cannot carry ceremony_head")

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format_version": self.format_version,
            "bundle_id": self.bundle_id,
            "cluster": self.cluster,
            "sequence": self.sequence,
            "created": self.created,
            "expires": self.expires,
            "signer": self.signer,
            "recipients": list(self.recipients),
            "members": [m.to_doc() for m in self.members],
        }
        if self.format_version >= 2:
            doc["ceremony_head"] = self.ceremony_head
        return doc

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_doc())

    @property
    def created_at(self) -> dt.datetime:
        return parse_time(self.created, source="manifest")

    @property
    def expires_at(self) -> dt.datetime:
        return parse_time(self.expires, source="manifest")

    def member(self, path: str) -> MemberEntry | None:
        return next((m for m in self.members if m.path == path), None)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_float(value: str) -> Any:
    raise ValueError("floating-point numbers are not allowed")


def _no_constant(value: str) -> Any:
    raise ValueError(f"{value} is not allowed")


def parse_manifest_json(data: bytes, *, source: str, canonical: bool = True) -> Any:
    """Parse manifest bytes strictly: ASCII JSON, no duplicate keys, no floats, canonical form.

    ``canonical=False`` (``inspect`` only) skips the last check, so a non-canonical manifest can
    still be shown; verification always requires it.
    """
    try:
        doc = json.loads(
            data.decode("ascii"),
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"{source}: manifest.json is not valid JSON: {exc}") from exc
    if not canonical:
        return doc
    try:
        expected = canonical_json(doc)
    except (TypeError, ValueError) as exc:  # pragma: no cover - json.loads only yields encodable values
        raise InvalidInput(f"{source}: manifest.json cannot be canonicalised") from exc
    if expected != data:
        raise InvalidInput(f"{source}: manifest.json is not in canonical form")
    return doc


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_manifest(doc: Any, *, source: str, limits: Limits = DEFAULT_LIMITS) -> Manifest:
    """Check a parsed manifest against the schema (``bundles/manifest.schema.json`` + SPEC rules).

    Unknown fields are rejected. Raises :class:`InvalidInput` (exit 3) naming the first problem.
    """

    def bad(msg: str) -> InvalidInput:
        return InvalidInput(f"{source}: manifest: {msg}")

    if not isinstance(doc, dict):
        raise bad("top level must be an object")
    version = doc.get("format_version")
    if not _is_int(version) or version not in SUPPORTED_FORMAT_VERSIONS:
        raise bad(f"format_version must be one of {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}")
    keys = _TOP_KEYS_BY_VERSION[version]
    unknown = sorted(set(doc) - keys)
    if unknown:
        hint = " (format_version 1 has no ceremony_head)" if unknown[0] == "ceremony_head" else ""
        raise bad(f"unknown field {unknown[0]!r}{hint}")
    missing = sorted(keys - set(doc))
    if missing:
        raise bad(f"missing field {missing[0]!r}")
    head = doc.get("ceremony_head")
    if head is not None and (not isinstance(head, str) or not _HEX64.match(head)):
        raise bad("ceremony_head must be null or 64 lowercase hex digits (SHA-256 of the ceremony log's last entry)")
    if not isinstance(doc["bundle_id"], str) or not _BUNDLE_ID.match(doc["bundle_id"]):
        raise bad("bundle_id must be 32 lowercase hex digits")
    if not isinstance(doc["cluster"], str) or not _CLUSTER.match(doc["cluster"]):
        raise bad("cluster is not a valid cluster name")
    seq = doc["sequence"]
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQUENCE:
        raise bad(f"sequence must be an integer from 1 to {MAX_SEQUENCE}")
    for k in ("created", "expires"):
        if not isinstance(doc[k], str):
            raise bad(f"{k} must be a string")
    created = parse_time(doc["created"], source=f"{source}: manifest: created")
    expires = parse_time(doc["expires"], source=f"{source}: manifest: expires")
    if expires <= created:
        raise bad("expires must be after created")
    if expires - created > dt.timedelta(days=MAX_EXPIRY_DAYS):
        raise bad(f"expires must be at most {MAX_EXPIRY_DAYS} days after created")
    if not isinstance(doc["signer"], str) or not _HEX64.match(doc["signer"]):
        raise bad("signer must be 64 lowercase hex digits (SHA-256 of the DER public key)")
    recips = doc["recipients"]
    if not isinstance(recips, list) or len(recips) > MAX_RECIPIENTS:
        raise bad(f"recipients must be a list of at most {MAX_RECIPIENTS} age recipients")
    for r in recips:
        if not isinstance(r, str) or not _RECIPIENT.match(r):
            raise bad("recipients must be age X25519 recipients (age1…)")
    if len(set(recips)) != len(recips):
        raise bad("recipients are not unique")
    members_doc = doc["members"]
    if not isinstance(members_doc, list) or not members_doc:
        raise bad("members must be a non-empty list")
    if len(members_doc) > limits.max_members:
        raise bad(f"more than {limits.max_members} members")
    members: list[MemberEntry] = []
    for i, m in enumerate(members_doc):
        where = f"members[{i}]"
        if not isinstance(m, dict):
            raise bad(f"{where} must be an object")
        unknown = sorted(set(m) - _MEMBER_KEYS)
        if unknown:
            raise bad(f"{where}: unknown field {unknown[0]!r}")
        missing = sorted(_MEMBER_KEYS - set(m))
        if missing:
            raise bad(f"{where}: missing field {missing[0]!r}")
        path, size, digest, enc = m["path"], m["size"], m["sha256"], m["encrypted"]
        if not isinstance(path, str) or not _MEMBER_PATH.match(path):
            raise bad(f"{where}: path {path!r} is not an allowed member path")
        if not _is_int(size) or not 0 <= size <= min(limits.max_member_size, MAX_USTAR_SIZE):
            raise bad(f"{where}: size must be an integer from 0 to the member size limit")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise bad(f"{where}: sha256 must be 64 lowercase hex digits")
        if not isinstance(enc, bool):
            raise bad(f"{where}: encrypted must be true or false")
        if enc != (path == CA_KEY_AGE):
            raise bad(f"{where}: encrypted must be true for {CA_KEY_AGE} and false for every other member")
        members.append(MemberEntry(path, size, digest, enc))
    paths = [m.path for m in members]
    if len(set(paths)) != len(paths):
        raise bad("member paths are not unique")
    for required in (CA_CERT, CERT_CHAIN, ROOT_CERT):
        if required not in paths:
            raise bad(f"missing the {required} member")
    if (CA_KEY in paths) == (CA_KEY_AGE in paths):
        raise bad(f"needs exactly one of {CA_KEY} and {CA_KEY_AGE}")
    if (CA_KEY_AGE in paths) != bool(recips):
        raise bad("recipients must be listed exactly when a member is encrypted")
    return Manifest(
        format_version=version,
        bundle_id=doc["bundle_id"],
        cluster=doc["cluster"],
        sequence=seq,
        created=doc["created"],
        expires=doc["expires"],
        signer=doc["signer"],
        recipients=tuple(recips),
        members=tuple(members),
        ceremony_head=head,
    )


def check_bundled_crl(crl_pem: bytes, material: CAMaterial, *, source: str) -> None:
    """``ca-crl.pem`` must be a PEM CRL issued and signed by the bundle's CA or its root (exit 1)."""
    from cryptography import x509

    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as exc:
        raise VerificationError(f"{source}: ca-crl.pem is not a valid PEM CRL") from exc
    for issuer in (material.ca_cert, material.root_cert):
        if crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return
    raise VerificationError(f"{source}: ca-crl.pem is not signed by the bundled CA or root")


# -- ustar writing ---------------------------------------------------------------------------------
def _octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL."""
    return format(value, "o").zfill(width - 1).encode("ascii") + b"\0"


def ustar_header(name: str, size: int, *, typeflag: bytes = b"0", linkname: str = "", mode: int = 0o644) -> bytes:
    """One 512-byte POSIX ustar header with the fixed fields the format requires (uid/gid/mtime 0).

    Tests use ``typeflag``/``linkname`` to build hostile archives; bundles only use regular files.
    """
    raw_name = name.encode("utf-8")
    raw_link = linkname.encode("utf-8")
    if len(raw_name) > 99 or len(raw_link) > 99:
        raise InvalidInput(f"member name {name!r} is too long for the bundle format (max 99 bytes)")
    if not 0 <= size <= MAX_USTAR_SIZE:
        raise InvalidInput(f"member {name!r} is too large for the bundle format (max {MAX_USTAR_SIZE} bytes)")
    h = bytearray(BLOCK)
    h[0 : len(raw_name)] = raw_name
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(size, 12)
    h[136:148] = _octal(0, 12)
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[157 : 157 + len(raw_link)] = raw_link
    h[257:263] = b"ustar\0"
    h[263:265] = b"00"
    h[329:337] = _octal(0, 8)
    h[337:345] = _octal(0, 8)
    h[148:156] = _octal(sum(h), 7) + b" "
    return bytes(h)


def padding_for(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


class BundleWriter:
    """Streams members into a bundle archive, hashing each byte once as it is written.

    The caller writes members, then :meth:`finish` with the manifest bytes and their signature.
    The writer never reads back what it wrote.
    """

    def __init__(self, out: IO[bytes], *, progress: Progress = NO_PROGRESS) -> None:
        self._out = out
        self._progress = progress
        self._names: set[str] = set()

    def _claim(self, name: str) -> None:
        if name in self._names:
            raise InvalidInput(f"member {name!r} added twice")
        self._names.add(name)

    def add_bytes(self, name: str, data: bytes, *, encrypted: bool = False) -> MemberEntry:
        self._claim(name)
        self._out.write(ustar_header(name, len(data)))
        self._out.write(data)
        self._out.write(padding_for(len(data)))
        return MemberEntry(name, len(data), hashlib.sha256(data).hexdigest(), encrypted)

    def add_stream(self, name: str, src: IO[bytes], size: int, *, source: str) -> MemberEntry:
        """Copy exactly ``size`` bytes from ``src``; a source that grows or shrinks is refused."""
        self._claim(name)
        self._out.write(ustar_header(name, size))
        h = hashlib.sha256()
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        left = size
        while left > 0:
            n = src.readinto(view[: min(CHUNK, left)])  # type: ignore[attr-defined]
            if not n:
                raise InvalidInput(f"{source}: file shrank while it was being read")
            chunk = view[:n]
            h.update(chunk)
            self._out.write(chunk)
            self._progress.advance(n)
            left -= n
        if src.read(1):
            raise InvalidInput(f"{source}: file grew while it was being read")
        self._out.write(padding_for(size))
        return MemberEntry(name, size, h.hexdigest(), False)

    def finish(self, manifest_bytes: bytes, signature: bytes) -> None:
        self._claim(MANIFEST_NAME)
        self._out.write(ustar_header(MANIFEST_NAME, len(manifest_bytes)))
        self._out.write(manifest_bytes + padding_for(len(manifest_bytes)))
        self._claim(SIGNATURE_NAME)
        self._out.write(ustar_header(SIGNATURE_NAME, len(signature)))
        self._out.write(signature + padding_for(len(signature)))
        self._out.write(b"\0" * (2 * BLOCK))


def sign_manifest(key: PrivateKey, manifest_bytes: bytes, *, deterministic: bool = False) -> bytes:
    """DER ECDSA signature over the canonical manifest bytes (SHA-256 for P-256, SHA-384 for P-384).

    ``deterministic`` uses RFC 6979 nonces (the example generator needs byte-identical output).
    """
    check_signer_key(key, source="signing key")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.sign(manifest_bytes, ec.ECDSA(signature_hash_for(key), deterministic_signing=deterministic))


def check_signer_key(key: PrivateKey | PublicKey, *, source: str) -> None:
    """Bundle signers are ECDSA P-256 (or P-384) keys; anything else is exit 3."""
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
    ):
        raise InvalidInput(f"{source}: bundle signing keys must be ECDSA P-256 or P-384")


# -- ustar reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TarEntry:
    """A regular-file entry found by :func:`scan_archive`: its name, size and data offset."""

    name: str
    size: int
    offset: int


def _parse_octal(field_bytes: bytes, *, what: str, source: str) -> int:
    """A numeric header field in its one allowed form: ``width-1`` octal digits then NUL.

    The checksum field is 6 digits, NUL, space (as POSIX, GNU tar and Python write it). One
    spelling per value means no byte of a header can change without changing what it says.
    """
    if field_bytes[:1] and field_bytes[0] & 0x80:
        raise InvalidInput(f"{source}: {what} uses base-256, which the bundle format does not allow")
    digits, tail = (field_bytes[:6], field_bytes[6:]) if what == "checksum" else (field_bytes[:-1], field_bytes[-1:])
    if tail != (b"\0 " if what == "checksum" else b"\0") or any(c not in b"01234567" for c in digits):
        raise InvalidInput(f"{source}: malformed tar header ({what})")
    return int(digits, 8)


def _read_exact(fh: IO[bytes], n: int, *, source: str) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise InvalidInput(f"{source}: truncated archive")
    return data


def _check_name(raw: bytes, *, source: str) -> str:
    """Step 3 for one entry: a safe, relative, normalised name (duplicates are checked by the caller)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: a member name is not valid UTF-8") from exc
    shown = ascii(name)
    if not name:
        raise InvalidInput(f"{source}: a member has an empty name")
    if name.startswith("/"):
        raise InvalidInput(f"{source}: member {shown} has an absolute path")
    parts = name.split("/")
    if ".." in parts:
        raise InvalidInput(f"{source}: member {shown} escapes the bundle ('..')")
    if not _NAME_CHARS.match(name) or any(p in ("", ".") for p in parts):
        raise InvalidInput(f"{source}: member {shown} has a name the bundle format does not allow")
    return name


def scan_archive(fh: IO[bytes], file_size: int, *, limits: Limits, source: str) -> list[TarEntry]:
    """Walk every header of a bundle archive without reading member data (steps 1 to 3).

    Per entry, in order: header structure (checksum, ustar magic, no prefix/link), size caps (1),
    type (2, regular files only), name (3). Then duplicates (3) and the end of the archive: two
    zero blocks and nothing but zero bytes after them. Padding after each member must be zero.
    """
    entries: list[TarEntry] = []
    pos = 0
    fh.seek(0)
    while True:
        if pos + BLOCK > file_size:
            raise InvalidInput(f"{source}: truncated archive (no end-of-archive marker)")
        block = _read_exact(fh, BLOCK, source=source)
        if block == bytes(BLOCK):
            second = _read_exact(fh, BLOCK, source=source) if pos + 2 * BLOCK <= file_size else b""
            if second != bytes(BLOCK):
                raise InvalidInput(f"{source}: truncated or malformed end-of-archive marker")
            rest = file_size - pos - 2 * BLOCK
            while rest > 0:
                chunk = fh.read(min(CHUNK, rest))
                if not chunk:
                    raise InvalidInput(f"{source}: archive changed while it was being read")
                if chunk.count(0) != len(chunk):
                    raise InvalidInput(f"{source}: data after the end-of-archive marker")
                rest -= len(chunk)
            break
        # header structure
        stored = _parse_octal(block[148:156], what="checksum", source=source)
        if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
            raise InvalidInput(f"{source}: tar header checksum mismatch at offset {pos}")
        if block[257:265] != b"ustar\x0000":
            raise InvalidInput(f"{source}: not a POSIX ustar header at offset {pos}")
        name_field = block[0:100]
        raw_name = name_field.split(b"\0", 1)[0]
        if name_field[len(raw_name) :].count(0) != 100 - len(raw_name):
            raise InvalidInput(f"{source}: malformed member name at offset {pos}")
        typeflag = block[156:157]
        size = _parse_octal(block[124:136], what="size", source=source)
        # step 1: size caps
        if len(entries) >= limits.max_members + 2:
            raise InvalidInput(f"{source}: more than {limits.max_members} members")
        cap = limits.max_member_size
        if raw_name == MANIFEST_NAME.encode():
            cap = limits.max_manifest_size
        elif raw_name == SIGNATURE_NAME.encode():
            cap = MAX_SIGNATURE
        if size > cap:
            raise InvalidInput(f"{source}: member {raw_name.decode('utf-8', 'replace')!a} is over the size limit")
        # step 2: member types
        if typeflag not in (b"0", b"\0"):
            kind = _TYPE_NAMES.get(typeflag, f"type {typeflag.decode('latin-1')!a} entry")
            raise InvalidInput(
                f"{source}: member {raw_name.decode('utf-8', 'replace')!a} is a {kind}; only regular files are allowed"
            )
        if block[157:257] != bytes(100) or block[345:500] != bytes(155):
            raise InvalidInput(f"{source}: member header has a link name or prefix, which the format does not allow")
        # step 3: names
        name = _check_name(raw_name, source=source)
        data_at = pos + BLOCK
        end = data_at + size
        padded = end + (-size % BLOCK)
        if padded > file_size:
            raise InvalidInput(f"{source}: truncated archive (member {name!a} runs past the end)")
        fh.seek(end)
        pad = _read_exact(fh, padded - end, source=source)
        if pad.count(0) != len(pad):
            raise InvalidInput(f"{source}: non-zero padding after member {name!a}")
        entries.append(TarEntry(name, size, data_at))
        pos = padded
    seen: set[str] = set()
    for e in entries:
        if e.name in seen:
            raise InvalidInput(f"{source}: member {e.name!a} appears twice")
        seen.add(e.name)
    return entries


def _read_entry(fh: IO[bytes], entry: TarEntry, *, source: str) -> bytes:
    fh.seek(entry.offset)
    return _read_exact(fh, entry.size, source=source)


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
            src.seek(self._offsets[path])
            h = hashlib.sha256()
            left = entry.size
            while left > 0:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise VerificationError(f"{self.path}: bundle changed after verification")
                h.update(chunk)
                out.write(chunk)
                progress.advance(len(chunk))
                left -= len(chunk)
            if h.hexdigest() != entry.sha256:
                raise VerificationError(f"{self.path}: bundle changed after verification ({path})")


def _open_for_reading(path: Path) -> tuple[IO[bytes], int]:
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError as exc:
        raise InvalidInput(f"{path}: bundle not found") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"{path}: is a folder, expected a bundle file") from exc
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read bundle: {exc.strerror}") from exc
    st = os.fstat(fh.fileno())
    import stat

    if not stat.S_ISREG(st.st_mode):
        fh.close()
        raise InvalidInput(f"{path}: not a regular file")
    return fh, st.st_size


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
    trusted: dict[str, PublicKey] = {}
    for trusted_key in trust:
        check_signer_key(trusted_key, source="--trust key")
        trusted[spki_sha256(trusted_key)] = trusted_key
    if not trusted:  # the empty policy fails
        raise InvalidInput("no trusted signer key given (--trust)")
    fh, file_size = _open_for_reading(path)
    try:
        # 1. size caps (the whole file here; each member while scanning headers)
        if file_size > limits.max_bundle_size:
            raise InvalidInput(f"{source}: {file_size} bytes is over the bundle size limit ({limits.max_bundle_size})")
        if file_size == 0:
            raise InvalidInput(f"{source}: empty file, not a bundle")
        # 1-3. per header: size caps, member types (regular files only), names (no absolute, no
        # '..', no duplicates)
        entries = scan_archive(fh, file_size, limits=limits, source=source)
        man_entry, sig_entry, payload = _manifest_entries(entries, source=source)
        # 4. the manifest against the schema (strict JSON, canonical, unknown fields rejected)
        manifest_bytes = _read_entry(fh, man_entry, source=source)
        manifest = validate_manifest(parse_manifest_json(manifest_bytes, source=source), source=source, limits=limits)
        # 5. the signature against the trusted keys
        signature = _read_entry(fh, sig_entry, source=source)
        key = trusted.get(manifest.signer)
        if key is None:
            raise VerificationError(f"{source}: signed by key {manifest.signer}, which is not a --trust key")
        try:
            verify_bytes(key, manifest_bytes, signature)
        except VerificationError as exc:
            raise VerificationError(f"{source}: manifest signature does not verify") from exc
        # 6. every member's size and SHA-256 (sizes first, so nothing over-long is read)
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
            fh.seek(e.offset)
            keep = m.size <= limits.max_pem_size
            kept = bytearray()
            h = hashlib.sha256()
            left = m.size
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise InvalidInput(f"{source}: truncated archive")
                h.update(chunk)
                if keep:
                    kept += chunk
                progress.advance(len(chunk))
                left -= len(chunk)
            if h.hexdigest() != m.sha256:
                raise VerificationError(f"{source}: member {m.path} does not match its SHA-256 in the manifest")
            if keep:
                small[m.path] = bytes(kept)
            offsets[m.path] = e.offset
        progress.finish()
        # 7. no member missing or extra, and the archive order is the manifest's
        missing = [m.path for m in manifest.members if m.path not in by_name]
        if missing:
            raise VerificationError(f"{source}: member {missing[0]} is named in the manifest but missing")
        listed = {m.path for m in manifest.members}
        extra = [e.name for e in payload if e.name not in listed]
        if extra:
            raise VerificationError(f"{source}: member {extra[0]!a} is not in the manifest")
        if [e.name for e in payload] != [m.path for m in manifest.members]:
            raise VerificationError(f"{source}: members are not in the manifest's order")
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


def inspect_bundle(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """What a bundle claims, UNVERIFIED: the archive listing and the manifest, no signature check.

    The archive must still be structurally safe (steps 1-3) and the manifest must parse; a
    manifest that fails the schema is shown raw with the problem. Never use this for import.
    """
    path = Path(path)
    source = str(path)
    fh, file_size = _open_for_reading(path)
    try:
        if file_size > limits.max_bundle_size:
            raise InvalidInput(f"{source}: over the bundle size limit")
        if file_size == 0:
            raise InvalidInput(f"{source}: empty file, not a bundle")
        entries = scan_archive(fh, file_size, limits=limits, source=source)
        names = [e.name for e in entries]
        if MANIFEST_NAME not in names:
            raise InvalidInput(f"{source}: no manifest.json, not a bundle")
        man = next(e for e in entries if e.name == MANIFEST_NAME)
        raw = _read_entry(fh, man, source=source)
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


__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "SUPPORTED_FORMAT_VERSIONS",
    "BundleWriter",
    "Manifest",
    "MemberEntry",
    "TarEntry",
    "VerifiedBundle",
    "canonical_json",
    "format_time",
    "inspect_bundle",
    "open_bundle",
    "parse_manifest_json",
    "scan_archive",
    "sign_manifest",
    "ustar_header",
    "validate_manifest",
]
