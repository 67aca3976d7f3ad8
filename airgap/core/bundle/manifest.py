"""The bundle manifest: its fields, canonical bytes, strict JSON, schema and cross-field checks, signature.

Trust: a manifest read from a bundle is hostile until :func:`airgap.core.bundle.verify.open_bundle`
has checked its signature; :func:`validate_manifest` only says it is well formed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec

from airgap.core import names
from airgap.core.canonical import canonical_json, load_json
from airgap.core.keys import PrivateKey, PublicKey, signature_hash_for
from airgap.core.limits import DEFAULT_LIMITS, Limits
from airgap.core.names import CLUSTER_NAME_RE
from airgap.errors import InvalidInput, Refused, VerificationError

if TYPE_CHECKING:  # only a type here: bundle verify does not need the x509 module loaded
    from airgap.core.x509 import CAMaterial

FORMAT_VERSION = 2  # what writers produce for a bundle that carries the CA key; 2 added ceremony_head
KEYLESS_FORMAT_VERSION = 3  # a bundle for a cluster whose key is held elsewhere (no key member, held_key)
SUPPORTED_FORMAT_VERSIONS = (1, 2, 3)  # 1: bundles made before ceremony_head, still accepted (SPEC.md 3)
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
MAX_USTAR_SIZE = 8**11 - 1  # 11 octal digits: the largest size a plain ustar header holds
MAX_EXPIRY_DAYS = 3650
MAX_RECIPIENTS = 64
MAX_SEQUENCE = 2**53 - 1  # exact in every JSON implementation

# Member paths of a cluster's CA material (the cacerts file names under cacerts/).
CA_CERT = f"cacerts/{names.CA_CERT}"
CA_KEY = f"cacerts/{names.CA_KEY}"
CA_KEY_AGE = f"cacerts/{names.CA_KEY}.age"
CERT_CHAIN = f"cacerts/{names.CERT_CHAIN}"
ROOT_CERT = f"cacerts/{names.ROOT_CERT}"
CA_CRL = f"cacerts/{names.CA_CRL}"
CACERTS_ORDER = (CA_CERT, CA_KEY, CA_KEY_AGE, CERT_CHAIN, ROOT_CERT, CA_CRL)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_BUNDLE_ID = re.compile(r"^[0-9a-f]{32}$")
_CLUSTER = CLUSTER_NAME_RE
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
_MEMBER_PATH = re.compile(
    r"^(cacerts/(ca-cert\.pem|ca-key\.pem|ca-key\.pem\.age|cert-chain\.pem|root-cert\.pem|ca-crl\.pem)"
    r"|include/[A-Za-z0-9][A-Za-z0-9._-]{0,90})$"
)
INCLUDE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,90}$")

_TOP_KEYS_V1 = frozenset(
    {"format_version", "bundle_id", "cluster", "sequence", "created", "expires", "signer", "recipients", "members"}
)
_TOP_KEYS = _TOP_KEYS_V1 | {"ceremony_head"}
_TOP_KEYS_V3 = _TOP_KEYS | {"held_key"}
_TOP_KEYS_BY_VERSION = {1: _TOP_KEYS_V1, 2: _TOP_KEYS, 3: _TOP_KEYS_V3}
_HELD_KEY_KEYS = frozenset({"key_id", "request_id"})
_MEMBER_KEYS = frozenset({"path", "size", "sha256", "encrypted"})


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
class HeldKey:
    """Format 3: the CA key is held elsewhere (made on the jump host, or in OpenBao); the bundle is
    bound to it by its SPKI fingerprint and, when it came in a request file, the request id."""

    key_id: str  # SHA-256 of the DER SubjectPublicKeyInfo of ca-cert.pem's key
    request_id: str | None = None

    def to_doc(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "request_id": self.request_id}


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
    # Format 3 only (and required there): the key that stays on the other side of the gap.
    held_key: HeldKey | None = None

    def __post_init__(self) -> None:
        if self.format_version == 1 and self.ceremony_head is not None:
            raise ValueError("format_version 1 manifests cannot carry ceremony_head")
        if (self.format_version == KEYLESS_FORMAT_VERSION) != (self.held_key is not None):
            raise ValueError("held_key is carried exactly by format 3 (keyless) manifests")

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
        if self.held_key is not None:
            doc["held_key"] = self.held_key.to_doc()
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
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: manifest.json is not valid JSON: {exc}") from exc
    doc = load_json(
        text,
        what=f"{source}: manifest.json",
        max_bytes=len(data),  # the caller already capped it (Limits.max_manifest_size)
        error=InvalidInput,
        detail=True,
        object_pairs_hook=_no_duplicates,
        parse_float=_no_float,
        parse_constant=_no_constant,
    )
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
    version = _check_version_and_keys(doc, bad)
    _check_header(doc, bad, source=source)
    recips = _check_recipients(doc["recipients"], bad)
    members = _check_members(doc["members"], bad, limits)
    held = _check_key_members(version, doc, [m.path for m in members], recips, bad)
    return Manifest(
        format_version=version,
        bundle_id=doc["bundle_id"],
        cluster=doc["cluster"],
        sequence=doc["sequence"],
        created=doc["created"],
        expires=doc["expires"],
        signer=doc["signer"],
        recipients=tuple(recips),
        members=members,
        ceremony_head=doc.get("ceremony_head"),
        held_key=held,
    )


def _check_version_and_keys(doc: dict[str, Any], bad: Callable[[str], InvalidInput]) -> int:
    """A supported ``format_version``, and exactly that version's top-level fields."""
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
    return int(version)


def _check_header(doc: dict[str, Any], bad: Callable[[str], InvalidInput], *, source: str) -> None:
    """The scalar fields: ceremony head, bundle id, cluster, sequence, validity window, signer."""
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


def _check_recipients(recips: Any, bad: Callable[[str], InvalidInput]) -> list[str]:
    """At most MAX_RECIPIENTS distinct age X25519 recipients."""
    if not isinstance(recips, list) or len(recips) > MAX_RECIPIENTS:
        raise bad(f"recipients must be a list of at most {MAX_RECIPIENTS} age recipients")
    for r in recips:
        if not isinstance(r, str) or not _RECIPIENT.match(r):
            raise bad("recipients must be age X25519 recipients (age1…)")
    if len(set(recips)) != len(recips):
        raise bad("recipients are not unique")
    return recips


def _check_members(members_doc: Any, bad: Callable[[str], InvalidInput], limits: Limits) -> tuple[MemberEntry, ...]:
    """A non-empty, capped list of valid members with unique paths, holding the required certs."""
    if not isinstance(members_doc, list) or not members_doc:
        raise bad("members must be a non-empty list")
    if len(members_doc) > limits.max_members:
        raise bad(f"more than {limits.max_members} members")
    members = tuple(_check_member(f"members[{i}]", m, bad, limits) for i, m in enumerate(members_doc))
    paths = [m.path for m in members]
    if len(set(paths)) != len(paths):
        raise bad("member paths are not unique")
    for required in (CA_CERT, CERT_CHAIN, ROOT_CERT):
        if required not in paths:
            raise bad(f"missing the {required} member")
    return members


def _check_member(where: str, m: Any, bad: Callable[[str], InvalidInput], limits: Limits) -> MemberEntry:
    """One member entry: exactly its fields, an allowed path, a capped size, a digest, the encryption flag."""
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
    return MemberEntry(path, size, digest, enc)


def _check_key_members(
    version: int, doc: dict[str, Any], paths: list[str], recips: list[str], bad: Callable[[str], InvalidInput]
) -> HeldKey | None:
    """Keyless (format 3): a held key, no CA key member, no recipients. Otherwise exactly one CA key
    member, encrypted exactly when there are recipients."""
    if version != KEYLESS_FORMAT_VERSION:
        if (CA_KEY in paths) == (CA_KEY_AGE in paths):
            raise bad(f"needs exactly one of {CA_KEY} and {CA_KEY_AGE}")
        if (CA_KEY_AGE in paths) != bool(recips):
            raise bad("recipients must be listed exactly when a member is encrypted")
        return None
    hk = doc["held_key"]
    if not isinstance(hk, dict) or set(hk) != _HELD_KEY_KEYS:
        raise bad("held_key must be an object with exactly key_id and request_id")
    if not isinstance(hk["key_id"], str) or not _HEX64.match(hk["key_id"]):
        raise bad("held_key.key_id must be 64 lowercase hex digits (SHA-256 of the DER public key)")
    rid = hk["request_id"]
    if rid is not None and (not isinstance(rid, str) or not _BUNDLE_ID.match(rid)):
        raise bad("held_key.request_id must be null or 32 lowercase hex digits")
    if CA_KEY in paths or CA_KEY_AGE in paths:
        raise bad("a format 3 (keyless) bundle carries no CA key member")
    if recips:
        raise bad("a format 3 (keyless) bundle has no recipients")
    return HeldKey(hk["key_id"], rid)


def check_bundled_crl(crl_pem: bytes, material: CAMaterial, *, source: str, cluster: str = "CLUSTER") -> None:
    """``ca-crl.pem`` must be a PEM CRL issued and signed by the bundle's CA, its root, or (during a
    root rotation, when the folder's CRL is still the old root's) a root its ``root-cert.pem``
    trusts (exit 1), and must not list the bundle's own CA: a revoked CA never ships or installs (exit 4)."""
    from cryptography import x509

    from airgap.core.x509 import load_certs_pem, revocation_entry

    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as exc:
        raise VerificationError(f"{source}: ca-crl.pem is not a valid PEM CRL") from exc
    if not any(
        crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
        for issuer in (material.ca_cert, material.root_cert, *load_certs_pem(material.root_cert_pem, source=source))
    ):
        raise VerificationError(f"{source}: ca-crl.pem is not signed by the bundled CA or root")
    entry = revocation_entry(crl, material.ca_cert)
    if entry is not None:
        raise Refused(
            f"{source}: the CA is revoked: its ca-crl.pem {entry}; "
            f"run 'airgap ca rotate {cluster}' and make a new bundle from its replacement"
        )


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
