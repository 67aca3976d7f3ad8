"""Revocation: the root-signed CRL of revoked intermediates, written where istiod reads it.

State: ``PKI/revocations.json`` (the revoked intermediates and the last CRL number). Output:
``PKI/ca-crl.pem`` (the master copy) and ``PKI/<cluster>/ca-crl.pem`` for every current cluster,
so the optional ``ca-crl.pem`` key of the ``cacerts`` Secret carries it and bundles include it.

The CRL is an RFC 5280 v2 CRL signed by the current root (file or token key): authority key
identifier (the root's subject key identifier), CRL number (grows by one per CRL), thisUpdate now,
nextUpdate ``next_update_days`` later; one entry per revoked intermediate with its revocation date
and reason code (no reason extension for ``unspecified``, as RFC 5280 5.3.1 asks). Intermediates
issued under an earlier root are not listed (that root no longer signs anything).

Trust: the PKI folder is the officer's own; revocations.json is read as trusted state, but every
value is re-checked against the certificate it names before it is signed into a CRL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core import x509 as cx
from airgap.core.atomic import write_replace
from airgap.core.keys import PrivateKey, signature_hash_for
from airgap.core.limits import MAX_CRL_DAYS
from airgap.errors import InvalidInput, Refused
from airgap.offline import ceremony
from airgap.offline.ca import CAStore
from airgap.offline.ceremony import Officer

STATE_NAME = "revocations.json"
CRL_NAME = "ca-crl.pem"
DEFAULT_NEXT_UPDATE_DAYS = 30

_REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keycompromise": x509.ReasonFlags.key_compromise,
    "cacompromise": x509.ReasonFlags.ca_compromise,
    "affiliationchanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationofoperation": x509.ReasonFlags.cessation_of_operation,
    "privilegewithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
REASON_NAMES = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


def parse_reason(value: str) -> str:
    """An RFC 5280 reason name (any case, '-'/'_' ignored) → its canonical camelCase name."""
    key = value.replace("-", "").replace("_", "").lower()
    for name in REASON_NAMES:
        if name.lower() == key:
            return name
    raise InvalidInput(f"unknown revocation reason {value!r}; choose one of {', '.join(REASON_NAMES)}")


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
    crl_number: int = 0
    revoked: list[Revoked] = field(default_factory=list)

    def to_json(self) -> bytes:
        doc = {"format": 1, "crl_number": self.crl_number, "revoked": [asdict(r) for r in self.revoked]}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def is_revoked(self, fingerprint: str) -> Revoked | None:
        return next((r for r in self.revoked if r.fingerprint == fingerprint), None)


def read_state(pki: Path) -> RevocationState:
    p = Path(pki) / STATE_NAME
    if not p.exists():
        return RevocationState()
    try:
        doc = json.loads(p.read_bytes())
        return RevocationState(int(doc["crl_number"]), [Revoked(**r) for r in doc["revoked"]])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{p}: revocation state is corrupt") from exc


def write_state(pki: Path, state: RevocationState) -> None:
    write_replace(Path(pki) / STATE_NAME, state.to_json())


@dataclass(frozen=True)
class CRLRecord:
    """What a CRL holds, for the ceremony log and the CLI."""

    crl_number: int
    this_update: str
    next_update: str
    revoked_serials: tuple[str, ...]
    sha256: str
    issuer_fingerprint: str


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(s: str) -> dt.datetime:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def build_crl(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    state: RevocationState,
    *,
    crl_number: int,
    next_update_days: int,
    at: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Sign a CRL over the entries of ``state`` issued by ``root_cert`` (file or token key)."""
    if not 1 <= next_update_days <= MAX_CRL_DAYS:
        raise InvalidInput(f"--next-update-days must be between 1 and {MAX_CRL_DAYS}")
    now = at or cx.now()
    root_fp = cx.fingerprint(root_cert)
    ski = root_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=next_update_days))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for r in state.revoked:
        if r.issuer_fingerprint != root_fp:
            continue
        entry = (
            x509.RevokedCertificateBuilder().serial_number(int(r.serial, 16)).revocation_date(_parse_iso(r.revoked_at))
        )
        if r.reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(_REASONS[r.reason.lower()]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(root_key, signature_hash_for(root_key))


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def publish_crl(
    pki: Path,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    state: RevocationState,
    clusters: list[str],
    *,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
    at: dt.datetime | None = None,
) -> CRLRecord:
    """Sign the next CRL, write ``PKI/ca-crl.pem`` and every ``PKI/<cluster>/ca-crl.pem``, save state.

    Call with the PKI lock held. Each file is replaced atomically; the state (with the new CRL
    number) is written last, so a crash re-uses a number only for a CRL nobody received.
    """
    number = state.crl_number + 1
    crl = build_crl(root_cert, root_key, state, crl_number=number, next_update_days=next_update_days, at=at)
    pem = crl_pem(crl)
    write_replace(Path(pki) / CRL_NAME, pem)
    for c in clusters:
        write_replace(Path(pki) / c / CRL_NAME, pem)
    state.crl_number = number
    write_state(pki, state)
    return CRLRecord(
        crl_number=number,
        this_update=_iso(crl.last_update_utc),
        next_update=_iso(crl.next_update_utc) if crl.next_update_utc else "",
        revoked_serials=tuple(format(r.serial_number, "x") for r in crl),
        sha256=hashlib.sha256(crl.public_bytes(serialization.Encoding.DER)).hexdigest(),
        issuer_fingerprint=cx.fingerprint(root_cert),
    )


def add_revocation(
    state: RevocationState,
    cert: x509.Certificate,
    *,
    cluster: str,
    reason: str,
    root_cert: x509.Certificate,
    at: dt.datetime | None = None,
) -> Revoked:
    """Add ``cert`` to ``state``; refuse (exit 4) if it is already revoked or not the root's."""
    fp = cx.fingerprint(cert)
    if state.is_revoked(fp):
        raise Refused(f"intermediate {format(cert.serial_number, 'x')} of {cluster} is already revoked")
    if not cx.signed_by(cert, root_cert):
        raise Refused(f"intermediate {format(cert.serial_number, 'x')} of {cluster} was not issued by the current root")
    r = Revoked(
        cluster=cluster,
        serial=format(cert.serial_number, "x"),
        fingerprint=fp,
        reason=parse_reason(reason),
        revoked_at=_iso(at or cx.now()),
        issuer_fingerprint=cx.fingerprint(root_cert),
    )
    state.revoked.append(r)
    return r


def _find_intermediate(store: CAStore, cluster: str, serial: str | None) -> x509.Certificate:
    """The cluster's current intermediate, or with ``serial`` (hex) a current or archived one."""
    from airgap.offline.rotate import archived_certs

    current = store.cluster_dir(cluster) / "ca-cert.pem"
    candidates: list[x509.Certificate] = []
    if current.exists():
        candidates.append(cx.load_cert_pem(current.read_bytes(), source=str(current)))
    if serial is None:
        if not candidates:
            raise Refused(f"{store.cluster_dir(cluster)}: no intermediate for cluster {cluster}")
        return candidates[0]
    try:
        want = int(serial.lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError as exc:
        raise InvalidInput(f"--serial {serial!r}: not a hexadecimal serial number") from exc
    candidates.extend(archived_certs(store, cluster))
    for c in candidates:
        if c.serial_number == want:
            return c
    raise Refused(f"no intermediate of {cluster} has serial {format(want, 'x')}")


def revoke(
    store: CAStore,
    cluster: str,
    *,
    reason: str,
    passphrase: bytes | None,
    serial: str | None = None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
) -> tuple[Revoked, CRLRecord]:
    """Revoke a cluster's intermediate (the current one, or ``serial``) and publish a new CRL.

    Every check (reason, log, root key, the certificate, not already revoked) runs before any
    file changes. The revoked intermediate stays in place: ``ca rotate CLUSTER`` replaces it.
    """
    reason_name = parse_reason(reason)
    if not 1 <= next_update_days <= MAX_CRL_DAYS:
        raise InvalidInput(f"--next-update-days must be between 1 and {MAX_CRL_DAYS}")
    with store.locked():
        prep = ceremony.prepare(store.path, officer)
        root_cert, key = store.load_root(passphrase, root_key)
        cert = _find_intermediate(store, cluster, serial)
        state = read_state(store.path)
        rev = add_revocation(state, cert, cluster=cluster, reason=reason_name, root_cert=root_cert)
        rec = publish_crl(store.path, root_cert, key, state, store.clusters(), next_update_days=next_update_days)
        if officer is not None:
            ceremony.record(
                store.path,
                "revoke",
                {"cluster": cluster, "serial": rev.serial, "fingerprint": rev.fingerprint, "reason": rev.reason},
                officer,
                prepared=prep,
            )
            ceremony.record(store.path, "crl", _crl_params(rec), officer, prepared=prep)
    return rev, rec


def refresh_crl(
    store: CAStore,
    *,
    passphrase: bytes | None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
) -> CRLRecord:
    """``ca crl``: sign a fresh CRL (new number, thisUpdate now) before the last one's nextUpdate."""
    if not 1 <= next_update_days <= MAX_CRL_DAYS:
        raise InvalidInput(f"--next-update-days must be between 1 and {MAX_CRL_DAYS}")
    with store.locked():
        prep = ceremony.prepare(store.path, officer)
        root_cert, key = store.load_root(passphrase, root_key)
        state = read_state(store.path)
        rec = publish_crl(store.path, root_cert, key, state, store.clusters(), next_update_days=next_update_days)
        if officer is not None:
            ceremony.record(store.path, "crl", _crl_params(rec), officer, prepared=prep)
    return rec


def _crl_params(rec: CRLRecord) -> dict[str, object]:
    return {
        "crl_number": rec.crl_number,
        "this_update": rec.this_update,
        "next_update": rec.next_update,
        "revoked_serials": list(rec.revoked_serials),
        "crl_sha256": rec.sha256,
        "issuer_fingerprint": rec.issuer_fingerprint,
    }


__all__ = [
    "CRL_NAME",
    "DEFAULT_NEXT_UPDATE_DAYS",
    "REASON_NAMES",
    "CRLRecord",
    "RevocationState",
    "Revoked",
    "add_revocation",
    "build_crl",
    "crl_pem",
    "parse_reason",
    "publish_crl",
    "read_state",
    "refresh_crl",
    "revoke",
    "write_state",
]
