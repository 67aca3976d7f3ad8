"""``ca list``: what the PKI folder holds and whether istiod would accept it. Read only: no lock.

:func:`pki_report` checks each current intermediate as istiod would (chain to a root it trusts,
CA flag, key match when the passphrase is given, expiry, revocation) and returns a
:class:`PkiReport`; :attr:`PkiReport.broken` names what makes ``ca list`` exit 1.

Trust: nothing here is trusted; every certificate is parsed and checked, nothing is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.canonical import utc_text
from airgap.core.keys import is_encrypted_pem, key_type_of, keys_match, load_private_key_pem
from airgap.core.limits import MAX_WINDOW_DAYS
from airgap.errors import InvalidInput
from airgap.offline.inventory import read_inventory, read_revocations
from airgap.offline.layout import CA_KEY, PkiLayout


@dataclass(frozen=True)
class IntermediateStatus:
    """What ``ca list`` reports for one intermediate; key_check is passed/failed/skipped/missing/held-elsewhere."""

    cluster: str
    serial: str
    fingerprint: str
    not_after: str
    key_type: str
    status: str
    chains_to_root: bool
    is_ca: bool
    key_check: str
    problems: tuple[str, ...]

    @property
    def broken(self) -> bool:
        """True when istiod would not accept this CA: no chain, not a CA, or its key does not match."""
        return not self.chains_to_root or not self.is_ca or self.key_check in ("failed", "missing")

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "serial": self.serial,
            "fingerprint": self.fingerprint,
            "not_after": self.not_after,
            "key_type": self.key_type,
            "status": self.status,
            "chains_to_root": self.chains_to_root,
            "is_ca": self.is_ca,
            "key_check": self.key_check,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class Expiring:
    """A root or intermediate that expires within the window ``ca list --expiring-within`` asks about."""

    what: str
    fingerprint: str
    not_after: str
    days_left: int


def _key_check(
    layout: PkiLayout, name: str, cert: x509.Certificate, passphrase: bytes | None
) -> tuple[str, str | None]:
    key_path = layout.path / name / CA_KEY
    if not key_path.exists():
        held = read_inventory(layout.inventory).current(name)
        if held is not None and held.held_elsewhere:
            if held.fingerprint != cx.fingerprint(cert):
                return "held-elsewhere", "ca-cert.pem is not the certificate the inventory records"
            return "held-elsewhere", None  # made and kept on the other side of the gap (ca sign)
        return "missing", "ca-key.pem is missing"
    data = key_path.read_bytes()
    if passphrase is None and is_encrypted_pem(data):
        return "skipped", None
    try:
        key = load_private_key_pem(data, passphrase, source=str(key_path))
    except InvalidInput:
        return "failed", "ca-key.pem does not open with this passphrase"
    if keys_match(key, cert.public_key()):  # type: ignore[arg-type]
        return "passed", None
    return "failed", "ca-key.pem does not match ca-cert.pem"


def intermediate_status(
    layout: PkiLayout, passphrase: bytes | None, *, at: dt.datetime | None = None
) -> list[IntermediateStatus]:
    """Check each intermediate as istiod would: chain, CA flag, key match, expiry, revocation."""
    roots = layout.trust_roots()
    revoked = read_revocations(layout.revocations)
    out: list[IntermediateStatus] = []
    for name in layout.clusters():
        cert = layout.load_cluster_cert(name)
        problems: list[str] = []
        chains = any(cx.signed_by(cert, r) for r in roots)
        if not chains:
            problems.append("does not chain to the root")
        rev = revoked.is_revoked(cx.fingerprint(cert))
        if rev is not None:
            problems.append(f"revoked ({rev.reason}) on {rev.revoked_at}; run 'airgap ca rotate {name}'")
        ca = cx.is_ca(cert)
        if not ca:
            problems.append("not a CA certificate")
        key_check, problem = _key_check(layout, name, cert, passphrase)
        if problem is not None:
            problems.append(problem)
        out.append(
            IntermediateStatus(
                cluster=name,
                serial=format(cert.serial_number, "x"),
                fingerprint=cx.fingerprint(cert),
                not_after=utc_text(cert.not_valid_after_utc),
                key_type=key_type_of(cert.public_key()),  # type: ignore[arg-type]
                status="revoked" if rev is not None else cx.status_of(cert, at=at),
                chains_to_root=chains,
                is_ca=ca,
                key_check=key_check,
                problems=tuple(problems),
            )
        )
    return out


def expiring_within(layout: PkiLayout, days: int, *, at: dt.datetime | None = None) -> list[Expiring]:
    """Roots (current and next) and current intermediates whose notAfter falls within ``days``."""
    if not 0 <= days <= MAX_WINDOW_DAYS:
        raise InvalidInput(f"--expiring-within must be between 0 and {MAX_WINDOW_DAYS} days")
    t = at or cx.now()
    limit = t + dt.timedelta(days=days)
    certs: list[tuple[str, x509.Certificate]] = [("root", layout.load_root_cert())]
    nxt = layout.load_next_root_cert()
    if nxt is not None:
        certs.append(("next root", nxt))
    certs += [(name, layout.load_cluster_cert(name)) for name in layout.clusters()]
    out = []
    for what, cert in certs:
        end = cert.not_valid_after_utc
        if end <= limit:
            out.append(Expiring(what, cx.fingerprint(cert), utc_text(end), (end - t).days))
    return out


def root_summary(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "fingerprint": cx.fingerprint(cert),
        "not_after": utc_text(cert.not_valid_after_utc),
        "status": cx.status_of(cert),
    }


@dataclass(frozen=True)
class PkiReport:
    """Everything ``ca list`` shows."""

    root: dict[str, str]
    next_root: dict[str, str] | None
    root_key: str
    intermediates: list[IntermediateStatus]
    expiring_days: int | None
    expiring: list[Expiring]

    @property
    def broken(self) -> list[IntermediateStatus]:
        return [r for r in self.intermediates if r.broken]

    def to_json(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "next_root": self.next_root,
            "root_key": self.root_key,
            "expiring_within": (
                None
                if self.expiring_days is None
                else {
                    "days": self.expiring_days,
                    "certificates": [
                        {"what": e.what, "fingerprint": e.fingerprint, "not_after": e.not_after} for e in self.expiring
                    ],
                }
            ),
            "intermediates": [r.to_json() for r in self.intermediates],
        }


def pki_report(layout: PkiLayout, passphrase: bytes | None, *, expiring_days: int | None = None) -> PkiReport:
    root = layout.load_root_cert()
    soon = expiring_within(layout, expiring_days) if expiring_days is not None else []
    nxt = layout.load_next_root_cert()
    in_token = layout.root_key_ref.exists() and not layout.root_key.exists()
    return PkiReport(
        root=root_summary(root),
        next_root=root_summary(nxt) if nxt is not None else None,
        root_key="pkcs11" if in_token else "file",
        intermediates=intermediate_status(layout, passphrase),
        expiring_days=expiring_days,
        expiring=soon,
    )


__all__ = ["Expiring", "IntermediateStatus", "PkiReport", "expiring_within", "intermediate_status", "pki_report"]
