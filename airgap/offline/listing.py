"""``ca list``: what the PKI folder holds and whether istiod would accept it. Read only: no lock.

:func:`pki_report` checks each current intermediate as istiod would (chain to a root it trusts,
CA flag, key match when the passphrase is given, expiry, revocation) and returns a
:class:`PkiReport`; :attr:`PkiReport.broken` names what makes ``ca list`` exit 1.

Trust: nothing here is trusted; every certificate is parsed and checked, nothing is written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.canonical import parse_utc_text, utc_text
from airgap.core.keys import is_encrypted_pem, key_type_of, keys_match, load_private_key_pem
from airgap.core.limits import MAX_WINDOW_DAYS
from airgap.errors import InvalidInput
from airgap.offline.inventory import read_inventory, read_revocations
from airgap.offline.layout import CA_CERT, CA_KEY, PkiLayout
from airgap.offline.recovery import pending_publication

WARN_DAYS = 30  # ``ca list`` warns (exit 0) when a root or intermediate expires within this many days

if TYPE_CHECKING:
    from airgap.core.expiry_metrics import Metrics


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
    recorded: bool = True  # ca-cert.pem is the certificate inventory.json records for the cluster

    @property
    def broken(self) -> bool:
        """True when a check failed: istiod would not accept this CA (no chain, not a CA, its key does not
        match, expired, not yet valid), it is revoked, or it is not the certificate the inventory records."""
        return (
            not self.chains_to_root
            or not self.is_ca
            or self.key_check in ("failed", "missing")
            or not self.recorded
            or self.status in ("expired", "not-yet-valid", "revoked")
        )

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
            "recorded": self.recorded,
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


def _validates(
    cert: x509.Certificate, roots: list[x509.Certificate], problems: list[str], at: dt.datetime | None
) -> bool:
    """Whether root → ``cert`` passes the path validator istiod's chains must pass (its reason into ``problems``)."""
    from airgap.core.pathcheck import chain_problem

    problem = chain_problem(cert, roots, at=at)
    if problem is not None:
        problems.append(f"the chain does not validate: {problem}")
    return problem is None


def _on_disk(path: Path) -> str | None:
    """The fingerprint of the certificate at ``path`` (None: missing; "unreadable" when it does not parse)."""
    if not path.is_file():
        return None
    try:
        return cx.fingerprint(cx.load_cert_pem(path.read_bytes(), source=str(path)))
    except InvalidInput:
        return "unreadable"


def recorded_problems(
    layout: PkiLayout, *, skip_present: bool = False, skip: frozenset[str] = frozenset()
) -> list[str]:
    """Every certificate ``inventory.json`` records that is missing or different on disk: the root,
    each cluster's current intermediate, each archived one (``archive/<cluster>/<serial>/``).
    Fingerprints only: no passphrase needed. ``skip_present``: a current intermediate that is on disk
    but different is left out (``ca list`` reports it on the cluster's own row). ``skip``: clusters
    (and ``"root"``) an interrupted act is publishing (:func:`airgap.offline.recovery.pending_publication`)."""
    inv = read_inventory(layout.inventory)
    recorded: list[tuple[Path, str, str]] = []
    if inv.root is not None and "root" not in skip:
        recorded.append((layout.root_cert, inv.root.fingerprint, "the root"))
    for r in inv.intermediates:
        if r.cluster in skip:
            continue
        if inv.current(r.cluster) is r:
            recorded.append(
                (layout.cluster_file(r.cluster, CA_CERT), r.fingerprint, f"cluster {r.cluster}'s intermediate")
            )
        else:
            what = f"cluster {r.cluster}'s archived intermediate (serial {r.serial})"
            recorded.append((layout.archived_cluster_dir(r.cluster) / r.serial / CA_CERT, r.fingerprint, what))
    out: list[str] = []
    for path, fp, what in recorded:
        found = _on_disk(path)
        if found is None:
            out.append(f"{what} (sha256 {fp}) is recorded in inventory.json, but {path} is missing")
        elif found != fp and not (skip_present and what.endswith("'s intermediate")):
            out.append(f"{path} is not {what} inventory.json records (sha256 {fp}); on disk: {found}")
    return out


def intermediate_status(
    layout: PkiLayout, passphrase: bytes | None, *, at: dt.datetime | None = None
) -> list[IntermediateStatus]:
    """Check each intermediate as istiod would: chain, CA flag, key match, expiry, revocation."""
    roots = layout.trust_roots()
    revoked = read_revocations(layout.revocations)
    inv = read_inventory(layout.inventory)
    out: list[IntermediateStatus] = []
    for name in layout.clusters():
        cert = layout.load_cluster_cert(name)
        problems: list[str] = []
        chains = any(cx.signed_by(cert, r) for r in roots)
        if not chains:
            problems.append("does not chain to the root")
        else:
            chains = _validates(cert, roots, problems, at)
        rev = revoked.is_revoked(cx.fingerprint(cert))
        if rev is not None:
            problems.append(f"revoked ({rev.reason}) on {rev.revoked_at}; run 'airgap ca rotate {name}'")
        ca = cx.is_ca(cert)
        if not ca:
            problems.append("not a CA certificate")
        key_check, problem = _key_check(layout, name, cert, passphrase)
        if problem is not None:
            problems.append(problem)
        rec = inv.current(name)
        recorded = rec is not None and rec.fingerprint == cx.fingerprint(cert)
        if rec is None:
            problems.append("not recorded in inventory.json (made outside airgap, or the inventory was replaced)")
        elif not recorded and key_check != "held-elsewhere":  # held elsewhere: _key_check said so
            problems.append(f"ca-cert.pem is not the certificate inventory.json records (sha256 {rec.fingerprint})")
        status = "revoked" if rev is not None else cx.status_of(cert, at=at)
        if status in ("expired", "not-yet-valid"):
            problems.append(
                f"expired on {cert.not_valid_after_utc:%Y-%m-%d}; run 'airgap ca rotate {name}'"
                if status == "expired"
                else f"not valid until {cert.not_valid_before_utc:%Y-%m-%d}"
            )
        out.append(
            IntermediateStatus(
                cluster=name,
                serial=format(cert.serial_number, "x"),
                fingerprint=cx.fingerprint(cert),
                not_after=utc_text(cert.not_valid_after_utc),
                key_type=key_type_of(cert.public_key()),  # type: ignore[arg-type]
                status=status,
                chains_to_root=chains,
                is_ca=ca,
                key_check=key_check,
                problems=tuple(problems),
                recorded=recorded,
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
    recorded_problems: list[str] = field(default_factory=list)  # recorded certificates missing/different on disk
    root_problems: list[str] = field(default_factory=list)  # the root (or next root) expired or not yet valid
    warnings: list[str] = field(default_factory=list)  # expires within WARN_DAYS: exit 0

    @property
    def broken(self) -> list[IntermediateStatus]:
        return [r for r in self.intermediates if r.broken]

    @property
    def failed(self) -> bool:
        """Whether any check failed (``ca list`` exits 1)."""
        return bool(self.broken or self.recorded_problems or self.root_problems)

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
            "recorded_problems": list(self.recorded_problems),
            "root_problems": list(self.root_problems),
            "warnings": list(self.warnings),
        }


def _root_checks(layout: PkiLayout, at: dt.datetime) -> tuple[list[str], list[str]]:
    """(failures, warnings) of the root and next root: expired or not yet valid fails; expiring
    within :data:`WARN_DAYS` days warns, with the days left and that the root must be rotated."""
    failures: list[str] = []
    warnings: list[str] = []
    roots = [("the root", layout.load_root_cert())]
    nxt = layout.load_next_root_cert()
    if nxt is not None:
        roots.append(("the next root", nxt))
    for what, cert in roots:
        end = cert.not_valid_after_utc
        if end <= at:
            failures.append(f"{what} expired on {end:%Y-%m-%d}; it must be rotated ('airgap ca rotate-root')")
        elif cert.not_valid_before_utc > at:
            failures.append(f"{what} is not valid until {cert.not_valid_before_utc:%Y-%m-%d}")
        elif end - at < dt.timedelta(days=WARN_DAYS):
            warnings.append(
                f"{what} expires on {end:%Y-%m-%d} ({days_left(end, at)}); it must be rotated ('airgap ca rotate-root')"
            )
    from airgap.core.pathcheck import can_sign_crls

    if not can_sign_crls(roots[0][1]):  # an adopted root made by Istio's Makefile
        warnings.append(
            "the root's keyUsage lacks cRLSign: it cannot sign a CRL, so no intermediate can be revoked under it; "
            "rotate the root ('airgap ca rotate-root') before you need to"
        )
    return failures, warnings


def _foreign_roots(layout: PkiLayout) -> list[str]:
    """Cluster folders whose root-cert.pem trusts a root this PKI does not hold (a lost next-root/),
    one line per such root, naming its clusters."""
    trusted = {cx.fingerprint(c) for c in layout.trust_roots()}  # read once, not once per cluster
    holders: dict[str, list[str]] = {}
    for name in layout.clusters():
        try:
            foreign = layout.foreign_roots(name, trusted=trusted)
        except (OSError, InvalidInput):
            continue  # a missing or unreadable file: the intermediate's own row says so
        for fp in foreign:
            holders.setdefault(fp, []).append(name)
    return [
        f"root-cert.pem of {', '.join(names)} trusts root sha256 {fp}, which is neither the root nor a next root "
        "here (a lost or moved next-root/ folder?): 'airgap audit verify' names it"
        for fp, names in holders.items()
    ]


def days_left(end: dt.datetime, at: dt.datetime) -> str:
    """How long is left, in words: "0 days left: it expires today", "1 day left", "12 days left"."""
    days = (end - at).days
    if days <= 0 and end.date() == at.date():
        return "0 days left: it expires today"
    return f"{days} day{'s' if days != 1 else ''} left"


def _intermediate_warnings(rows: list[IntermediateStatus], at: dt.datetime) -> list[str]:
    out = []
    for r in rows:
        end = parse_utc_text(r.not_after)
        if r.status not in ("expired", "revoked", "not-yet-valid") and end - at < dt.timedelta(days=WARN_DAYS):
            out.append(f"cluster {r.cluster}'s intermediate expires on {end:%Y-%m-%d} ({days_left(end, at)}); "
                       f"run 'airgap ca rotate {r.cluster}'")  # fmt: skip
    return out


def pki_report(layout: PkiLayout, passphrase: bytes | None, *, expiring_days: int | None = None) -> PkiReport:
    root = layout.load_root_cert()
    at = cx.now()
    soon = expiring_within(layout, expiring_days, at=at) if expiring_days is not None else []
    nxt = layout.load_next_root_cert()
    in_token = layout.root_key_ref.exists() and not layout.root_key.exists()
    rows = intermediate_status(layout, passphrase, at=at)
    root_failures, root_warnings = _root_checks(layout, at)
    root_failures += _foreign_roots(layout)
    pending = pending_publication(layout)
    if pending:
        root_warnings.append(
            f"an interrupted act ({layout.path}/.journal.json) has not published {', '.join(sorted(pending))} yet: "
            "the next act on this folder finishes or undoes it"
        )
    return PkiReport(
        root=root_summary(root),
        next_root=root_summary(nxt) if nxt is not None else None,
        root_key="pkcs11" if in_token else "file",
        intermediates=rows,
        expiring_days=expiring_days,
        expiring=soon,
        recorded_problems=recorded_problems(layout, skip_present=True, skip=pending),
        root_problems=root_failures,
        warnings=root_warnings + _intermediate_warnings(rows, at),
    )


def pki_metrics(layout: PkiLayout) -> Metrics:
    """``ca list --prometheus``: the root, the next root (during a root rotation), every current
    intermediate (cluster = its folder) and the CRL ``PKI/ca-crl.pem`` when one of the roots signed it.

    Reads certificates only (no key, no passphrase); nothing here reads the clock, so the same
    folder gives the same metrics. The roots carry ``cluster=""`` (they belong to no one cluster).
    """
    from airgap.core.expiry_metrics import CertSample, Metrics, crl_sample, load_crl_pem

    roots = [CertSample.of(layout.load_root_cert(), cluster="", role="root")]
    nxt = layout.load_next_root_cert()
    if nxt is not None:
        roots.append(CertSample.of(nxt, cluster="", role="next-root"))
    certs = roots + [
        CertSample.of(layout.load_cluster_cert(name), cluster=name, role="intermediate") for name in layout.clusters()
    ]
    crls = []
    if layout.crl.exists():
        crl = load_crl_pem(layout.crl.read_bytes(), source=str(layout.crl))
        sample = crl_sample(crl, layout.trust_roots(), cluster="")
        if sample is not None:
            crls.append(sample)
    return Metrics(tuple(certs), tuple(crls))


__all__ = [
    "WARN_DAYS",
    "Expiring",
    "IntermediateStatus",
    "PkiReport",
    "days_left",
    "expiring_within",
    "intermediate_status",
    "pki_metrics",
    "pki_report",
    "recorded_problems",
]
