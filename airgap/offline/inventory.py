"""The PKI folder's state files, read and written one way: ``inventory.json`` and its records.

Every state file (the inventory, ``revocations.json``, ``state/sequence.json``, the token key
record) is parsed by :func:`parse_state` and its records by :func:`strict_record`: a document
with unknown or missing fields, or a field of the wrong type, is corrupt (exit 3), never half-read.
They are written with :func:`airgap.core.canonical.state_json`.

Trust: state files are the officer's own, but a corrupt one must stop an act, not steer it.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import write_replace
from airgap.core.canonical import load_json, state_json, utc_text
from airgap.core.keys import key_type_of, spki_sha256
from airgap.errors import InvalidInput, Malformed
from airgap.offline.custody import CustodyRecord

T = TypeVar("T")
_KEY_ID_RE = re.compile(r"[0-9a-f]{64}")


def parse_state(data: bytes, *, source: str, what: str) -> dict[str, Any]:
    """A state file's JSON object (duplicate keys, NaN, over-deep and non-objects refused): exit 3 otherwise."""
    doc = load_json(data, what=f"{source}: {what}", invalid="is corrupt")
    if not isinstance(doc, dict):
        raise Malformed(f"{source}: {what} is corrupt")
    return doc


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    return True  # nested values are checked by the caller


def strict_record(cls: type[T], doc: Any, *, source: str, what: str) -> T:
    """Build the dataclass ``cls`` from ``doc``: exactly its fields, each of its declared type."""
    if not dataclasses.is_dataclass(cls) or not isinstance(doc, dict):
        raise Malformed(f"{source}: {what} is corrupt")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    # Fields with a default may be absent (added later, written only when not the default).
    required = {f.name for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if not required <= set(doc) <= names or not all(_type_ok(doc[n], hints[n]) for n in doc):
        raise Malformed(f"{source}: {what} is corrupt")
    return cls(**doc)


def _record_facts(cert: x509.Certificate) -> dict[str, str]:
    """The facts the inventory keeps about every CA certificate."""
    return {
        "serial": format(cert.serial_number, "x"),
        "fingerprint": cx.fingerprint(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_before": utc_text(cert.not_valid_before_utc),
        "not_after": utc_text(cert.not_valid_after_utc),
        "key_type": key_type_of(cert.public_key()),  # type: ignore[arg-type]
    }


def cert_facts(cert: x509.Certificate, **extra: Any) -> dict[str, Any]:
    """What the ceremony log records about a certificate: public facts only."""
    return {
        **extra,
        **_record_facts(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "key_id": spki_sha256(cert.public_key()),  # type: ignore[arg-type]
    }


def where_seen(cert: x509.Certificate, what: str) -> str:
    """``what`` (which opens a parenthesis: "the root (", "cluster c1 (intermediate") closed with
    the certificate's serial: "the root (serial 1f)", "cluster c1 (intermediate serial 1f)"."""
    return f"{what}{'' if what.endswith('(') else ' '}serial {format(cert.serial_number, 'x')})"


@dataclass(frozen=True)
class RootRecord:
    serial: str
    fingerprint: str
    subject: str
    not_before: str
    not_after: str
    key_type: str
    created_at: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> RootRecord:
        """The inventory record of a root certificate made now."""
        return cls(**_record_facts(cert), created_at=utc_text(cx.now()))


@dataclass(frozen=True)
class IntermediateRecord:
    cluster: str
    serial: str
    fingerprint: str
    subject: str
    not_before: str
    not_after: str
    key_type: str
    issued_at: str
    root_fingerprint: str
    # A key held elsewhere (``ca sign``): PKI/<cluster>/ has no ca-key.pem. These fields are absent
    # from the JSON when the PKI holds the key, so inventories of ``ca issue`` read and write as before.
    key_held: str = "pki"  # "pki" | "elsewhere"
    key_id: str | None = None  # SHA-256 of the held-elsewhere key's SubjectPublicKeyInfo
    csr_sha256: str | None = None  # SHA-256 of the DER request that was signed
    request_id: str | None = None  # the signed request file's id (``ca request``), if any

    def __post_init__(self) -> None:
        if self.key_held not in ("pki", "elsewhere"):
            raise InvalidInput(f"inventory: key_held {self.key_held!r} is neither 'pki' nor 'elsewhere'")

    @property
    def held_elsewhere(self) -> bool:
        return self.key_held == "elsewhere"

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        for f in dataclasses.fields(self):
            if f.default is not dataclasses.MISSING and doc[f.name] == f.default:
                del doc[f.name]
        return doc

    @classmethod
    def of(cls, cluster: str, cert: x509.Certificate, issuer: x509.Certificate) -> IntermediateRecord:
        """The inventory record of an intermediate issued now by ``issuer``."""
        return cls(
            cluster=cluster,
            **_record_facts(cert),
            issued_at=utc_text(cx.now()),
            root_fingerprint=cx.fingerprint(issuer),
        )


@dataclass(frozen=True)
class CeremonyLogRecord:
    """That the folder keeps a ceremony log: the officer key that started it and when (entry 1).

    Written by :mod:`airgap.offline.ceremony` once the log exists; from then on a missing
    ``ceremony.log`` or ``ceremony-head.json`` is a removed log, never an unlogged PKI.
    """

    officer_key_id: str
    started: str


@dataclass
class Inventory:
    root: RootRecord | None = None
    intermediates: list[IntermediateRecord] = field(default_factory=list)
    ceremony_log: CeremonyLogRecord | None = None
    custody: CustodyRecord | None = None
    # Every key airgap has certified or holds: SPKI SHA-256 → where it was seen ("cluster c1's
    # intermediate 1f…", "the root", ...). None: an inventory written before the field existed
    # (:func:`airgap.offline.act.Act.inventory` fills it from the certificates on disk).
    key_ids: dict[str, str] | None = None

    def remember_key(self, key_id: str, where: str) -> None:
        """Record that ``key_id`` was certified or is held (the first place it was seen is kept)."""
        if self.key_ids is None:
            self.key_ids = {}
        self.key_ids.setdefault(key_id, where)

    def remember_cert(self, cert: x509.Certificate, what: str) -> None:
        """:meth:`remember_key` for the key ``cert`` certifies: "<what> serial <hex>)" (``what`` opens
        the parenthesis: "cluster c1 (intermediate", "the root (")."""
        key_id = spki_sha256(cert.public_key())  # type: ignore[arg-type]
        self.remember_key(key_id, where_seen(cert, what))

    def seen_key(self, key_id: str) -> str | None:
        """Where ``key_id`` was seen (None: airgap never certified nor holds it): one lookup."""
        return (self.key_ids or {}).get(key_id)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": 1,
            "root": asdict(self.root) if self.root else None,
            "intermediates": [i.to_doc() for i in self.intermediates],
        }
        if self.ceremony_log is not None:  # absent (not null) in a folder without a log, as before
            doc["ceremony_log"] = asdict(self.ceremony_log)
        if self.custody is not None:  # absent in a folder whose root is not under split custody
            doc["custody"] = self.custody.to_doc()
        if self.key_ids is not None:
            doc["key_ids"] = dict(sorted(self.key_ids.items()))
        return doc

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Inventory:
        """Parse ``inventory.json``; an inventory written before ``ceremony_log`` existed reads as None."""
        what = "inventory"
        doc = parse_state(data, source=source, what=what)
        known = {"format", "root", "intermediates", "ceremony_log", "custody", "key_ids"}
        if set(doc) - known or doc.get("format", 1) != 1:
            raise Malformed(f"{source}: {what} is corrupt")
        key_ids = doc.get("key_ids")
        if key_ids is not None and not (
            isinstance(key_ids, dict)
            and all(_KEY_ID_RE.fullmatch(k) and isinstance(v, str) for k, v in key_ids.items())
        ):
            raise Malformed(f"{source}: {what} is corrupt")
        inter = doc.get("intermediates", [])
        if not isinstance(inter, list):
            raise Malformed(f"{source}: {what} is corrupt")
        root = strict_record(RootRecord, doc["root"], source=source, what=what) if doc.get("root") else None
        log = doc.get("ceremony_log")
        held = doc.get("custody")
        return cls(
            root,
            [strict_record(IntermediateRecord, i, source=source, what=what) for i in inter],
            strict_record(CeremonyLogRecord, log, source=source, what=what) if log is not None else None,
            CustodyRecord.from_doc(held, source=source) if held is not None else None,
            dict(key_ids) if key_ids is not None else None,
        )

    def forget_keys_of(self, records: list[IntermediateRecord]) -> None:
        """Drop the key ids of records an undone act removed (a request's key may then be signed again)."""
        for r in records:
            if r.key_id is not None and self.key_ids is not None:
                self.key_ids.pop(r.key_id, None)

    def current(self, cluster: str) -> IntermediateRecord | None:
        """The last intermediate recorded for ``cluster`` (its current one), or None."""
        return next((r for r in reversed(self.intermediates) if r.cluster == cluster), None)

    def knows(self, fingerprint: str) -> bool:
        """True when the root or an intermediate with this fingerprint is recorded."""
        if self.root is not None and self.root.fingerprint == fingerprint:
            return True
        return any(r.fingerprint == fingerprint for r in self.intermediates)


@dataclass(frozen=True)
class Revoked:
    cluster: str
    serial: str
    fingerprint: str
    reason: str
    revoked_at: str
    issuer_fingerprint: str


@dataclass
class RevocationState:
    """``revocations.json``: the revoked intermediates and the number of the last CRL."""

    crl_number: int = 0
    revoked: list[Revoked] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, "crl_number": self.crl_number, "revoked": [asdict(r) for r in self.revoked]}

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> RevocationState:
        what = "revocation state"
        doc = parse_state(data, source=source, what=what)
        number, revoked = doc.get("crl_number"), doc.get("revoked")
        if (
            set(doc) - {"format", "crl_number", "revoked"}
            or not isinstance(number, int)
            or isinstance(number, bool)
            or number < 0
            or not isinstance(revoked, list)
        ):
            raise Malformed(f"{source}: {what} is corrupt")
        return cls(number, [strict_record(Revoked, r, source=source, what=what) for r in revoked])

    def is_revoked(self, fingerprint: str) -> Revoked | None:
        return next((r for r in self.revoked if r.fingerprint == fingerprint), None)


class StateDoc(Protocol):
    """A state file's object: ``to_json()`` is its JSON value (the one convention for ``to_json``)."""

    def to_json(self) -> dict[str, Any]: ...


S = TypeVar("S")


def _read(path: Path, parse: Callable[[bytes, str], S], empty: Callable[[], S]) -> S:
    p = Path(path)
    if not p.exists():
        return empty()
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{p}: cannot read: {exc.strerror}") from exc
    return parse(data, str(p))


def write_state(path: Path, doc: StateDoc) -> None:
    """Replace the state file at ``path`` atomically with ``doc`` (:func:`state_json`)."""
    write_replace(Path(path), state_json(doc.to_json()))


def read_revocations(path: Path) -> RevocationState:
    """``revocations.json`` at ``path`` (nothing revoked, CRL number 0, when there is none)."""
    return _read(path, lambda d, s: RevocationState.from_json(d, source=s), RevocationState)


def write_revocations(path: Path, state: RevocationState) -> None:
    write_state(path, state)


def read_inventory(path: Path) -> Inventory:
    """``inventory.json`` at ``path`` (an empty inventory when there is none)."""
    return _read(path, lambda d, s: Inventory.from_json(d, source=s), Inventory)


def write_inventory(path: Path, inv: Inventory) -> None:
    write_state(path, inv)


__all__ = [
    "CeremonyLogRecord",
    "IntermediateRecord",
    "Inventory",
    "RevocationState",
    "Revoked",
    "RootRecord",
    "cert_facts",
    "parse_state",
    "read_inventory",
    "read_revocations",
    "strict_record",
    "where_seen",
    "write_inventory",
    "write_revocations",
    "write_state",
]
