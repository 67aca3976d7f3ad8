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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core import x509 as cx
from airgap.core.canonical import parse_utc_text, utc_text
from airgap.core.keys import PrivateKey
from airgap.core.limits import MAX_CRL_DAYS
from airgap.core.names import CA_CERT
from airgap.errors import InvalidInput, Refused
from airgap.offline.act import pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.inventory import RevocationState, Revoked, read_revocations, write_revocations
from airgap.offline.keysource import load_root
from airgap.offline.layout import CRL, REVOCATIONS, PkiLayout, layout_of
from airgap.offline.recovery import write_crl_files

STATE_NAME = REVOCATIONS
CRL_NAME = CRL
DEFAULT_NEXT_UPDATE_DAYS = 30

# The reasons an intermediate can be revoked for (RFC 5280 5.3.1), named as x509.ReasonFlags names
# them; certificateHold / removeFromCRL (not for CAs) and aACompromise (attribute authorities) are not.
REASONS: tuple[x509.ReasonFlags, ...] = (
    x509.ReasonFlags.unspecified,
    x509.ReasonFlags.key_compromise,
    x509.ReasonFlags.ca_compromise,
    x509.ReasonFlags.affiliation_changed,
    x509.ReasonFlags.superseded,
    x509.ReasonFlags.cessation_of_operation,
    x509.ReasonFlags.privilege_withdrawn,
)
REASON_NAMES = tuple(r.value for r in REASONS)


def _fold(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def parse_reason(value: str) -> str:
    """An RFC 5280 reason name (any case, '-'/'_' ignored) → its canonical camelCase name."""
    for r in REASONS:
        if _fold(r.value) == _fold(value):
            return r.value
    raise InvalidInput(f"unknown revocation reason {value!r}; choose one of {', '.join(REASON_NAMES)}")


def read_state(pki: Path) -> RevocationState:
    return read_revocations(Path(pki) / STATE_NAME)


def write_state(pki: Path, state: RevocationState) -> None:
    write_revocations(Path(pki) / STATE_NAME, state)


@dataclass(frozen=True)
class CRLRecord:
    """What a CRL holds, for the ceremony log and the CLI."""

    crl_number: int
    this_update: str
    next_update: str
    revoked_serials: tuple[str, ...]
    sha256: str
    issuer_fingerprint: str

    @classmethod
    def of(cls, crl: x509.CertificateRevocationList, issuer: x509.Certificate, number: int) -> CRLRecord:
        return cls(
            crl_number=number,
            this_update=utc_text(crl.last_update_utc),
            next_update=utc_text(crl.next_update_utc) if crl.next_update_utc else "",
            revoked_serials=tuple(format(r.serial_number, "x") for r in crl),
            sha256=hashlib.sha256(crl.public_bytes(serialization.Encoding.DER)).hexdigest(),
            issuer_fingerprint=cx.fingerprint(issuer),
        )

    def log_params(self) -> dict[str, Any]:
        """The ``crl`` entry of the ceremony log."""
        return {
            "crl_number": self.crl_number,
            "this_update": self.this_update,
            "next_update": self.next_update,
            "revoked_serials": list(self.revoked_serials),
            "crl_sha256": self.sha256,
            "issuer_fingerprint": self.issuer_fingerprint,
        }


def build_crl(
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    state: RevocationState,
    *,
    crl_number: int,
    next_update_days: int,
    at: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """Sign a CRL over the entries of ``state`` issued by ``root_cert`` (file or token key) through the
    lint gate (:func:`airgap.offline.lint.sign_crl`): pkilint before the real key signs, then re-parsed
    and verified against the root's public key (nothing is written here)."""
    if not 1 <= next_update_days <= MAX_CRL_DAYS:
        raise InvalidInput(f"--next-update-days must be between 1 and {MAX_CRL_DAYS}")
    from airgap.core.pathcheck import can_sign_crls

    if not can_sign_crls(root_cert):
        raise Refused(
            f"the root {root_cert.subject.rfc4514_string()} has a keyUsage without cRLSign: a CRL it signs would be "
            "rejected; rotate the root ('airgap ca rotate-root') to revoke under it"
        )
    now = at or cx.now()
    root_fp = cx.fingerprint(root_cert)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root_cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=next_update_days))
        .add_extension(cx.authority_key_id(root_cert), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for r in state.revoked:
        if r.issuer_fingerprint != root_fp:
            continue
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(r.serial, 16))
            .revocation_date(parse_utc_text(r.revoked_at))
        )
        if r.reason != "unspecified":
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(parse_reason(r.reason))), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    from airgap.offline.lint import sign_crl

    return sign_crl(builder, issuer_cert=root_cert, issuer_key=root_key)  # lint gate, sign, re-parse, verify


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def publish_crl(
    pki: Path,
    root_cert: x509.Certificate,
    root_key: PrivateKey,
    state: RevocationState,
    clusters: list[str] | None = None,
    *,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
    at: dt.datetime | None = None,
) -> CRLRecord:
    """Sign the next CRL, write ``PKI/ca-crl.pem`` and every ``PKI/<cluster>/ca-crl.pem``, save state.

    Call inside an act. Each file is replaced atomically; the state (with the new CRL number) is
    written last, so a crash re-uses a number only for a CRL nobody received. ``clusters`` is
    ignored: the CRL goes to every current cluster.
    """
    number = state.crl_number + 1
    crl = build_crl(root_cert, root_key, state, crl_number=number, next_update_days=next_update_days, at=at)
    layout = PkiLayout(Path(pki))
    write_crl_files(layout, crl_pem(crl))
    state.crl_number = number
    write_revocations(layout.revocations, state)
    return CRLRecord.of(crl, root_cert, number)


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
        revoked_at=utc_text(at or cx.now()),
        issuer_fingerprint=cx.fingerprint(root_cert),
    )
    state.revoked.append(r)
    return r


def _find_intermediate(layout: PkiLayout, cluster: str, serial: str | None) -> x509.Certificate:
    """The cluster's current intermediate, or with ``serial`` (hex) a current or archived one."""
    current = layout.cluster_dir(cluster) / CA_CERT
    candidates: list[x509.Certificate] = []
    if current.exists():
        candidates.append(layout.load_cluster_cert(cluster))
    if serial is None:
        if not candidates:
            raise Refused(f"{layout.cluster_dir(cluster)}: no intermediate for cluster {cluster}")
        return candidates[0]
    try:
        want = int(serial.lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError as exc:
        raise InvalidInput(f"--serial {serial!r}: not a hexadecimal serial number") from exc
    candidates.extend(layout.archived_certs(cluster))
    for c in candidates:
        if c.serial_number == want:
            return c
    raise Refused(f"no intermediate of {cluster} has serial {format(want, 'x')}")


def revoke(
    pki: Path,
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
    layout = layout_of(pki)
    with pki_act(layout, "revoke", officer) as act:
        root_cert, key = load_root(layout, passphrase, root_key)
        cert = _find_intermediate(layout, cluster, serial)
        state = read_revocations(layout.revocations)
        rev = add_revocation(state, cert, cluster=cluster, reason=reason_name, root_cert=root_cert)
        rec = publish_crl(layout.path, root_cert, key, state, next_update_days=next_update_days)
        act.record(
            "revoke", {"cluster": cluster, "serial": rev.serial, "fingerprint": rev.fingerprint, "reason": rev.reason}
        )
        act.record("crl", rec.log_params())
    return rev, rec


def refresh_crl(
    pki: Path,
    *,
    passphrase: bytes | None,
    root_key: PrivateKey | None = None,
    officer: Officer | None = None,
    next_update_days: int = DEFAULT_NEXT_UPDATE_DAYS,
) -> CRLRecord:
    """``ca crl``: sign a fresh CRL (new number, thisUpdate now) before the last one's nextUpdate."""
    if not 1 <= next_update_days <= MAX_CRL_DAYS:
        raise InvalidInput(f"--next-update-days must be between 1 and {MAX_CRL_DAYS}")
    layout = layout_of(pki)
    with pki_act(layout, "crl", officer) as act:
        root_cert, key = load_root(layout, passphrase, root_key)
        state = read_revocations(layout.revocations)
        rec = publish_crl(layout.path, root_cert, key, state, next_update_days=next_update_days)
        act.record("crl", rec.log_params())
    return rec


__all__ = [
    "CRL_NAME",
    "DEFAULT_NEXT_UPDATE_DAYS",
    "REASONS",
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
