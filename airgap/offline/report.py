"""``airgap audit report``: what the root host's verified log and folder say, and what the jump host recorded.

:func:`build_report` verifies the ceremony log first, with the code ``audit verify`` runs
(:func:`airgap.offline.ceremony.verify_log`), then gathers, as pure data (an :class:`AuditReport`):
every act of the log, every certificate in the folder (root, next root, retired roots, current and
archived intermediates) with where its key is held, the revocations and the CRL, the custody of
the root key, and with ``state`` the jump host's history (:mod:`airgap.core.history`) matched
against the log. :mod:`airgap.offline.report_html` renders it; ``--json`` prints
:meth:`AuditReport.to_json`.

Trust: the ``trust`` keys only. The log is accepted only when it verifies against them; the
certificates, the CRL and ``inventory.json`` are files in the folder, shown with where the verified
log records them (a certificate the log does not record is a warning). The jump host's history is
unsigned: each bundle import must name a bundle and a ceremony head the verified log records, or
the report fails; a forged line can make it fail, never pass. Nothing here writes a file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core import x509 as cx
from airgap.core.canonical import utc_text
from airgap.core.files import read_capped
from airgap.core.history import BUNDLE_IMPORT, IMAGES_PUSH, RELEASE_EXTRACT, History, read_events
from airgap.core.keys import PublicKey, is_encrypted_pem, key_type_of, spki_sha256
from airgap.core.limits import DEFAULT_LIMITS, MAX_KEY_FILE
from airgap.errors import InvalidInput, LogTampered, Malformed, NotFound, VerificationError
from airgap.offline.ceremony import Entry, VerifiedLog, verify_log
from airgap.offline.inventory import Inventory, read_inventory
from airgap.offline.layout import CA_CERT, CA_KEY, ROOT_CERT, ROOT_KEY, ROOT_KEY_REF, PkiLayout

REPORT_FORMAT = 1
# The order certificates are listed (and drawn) in.
ROLES = ("root", "next root", "retired root", "intermediate", "archived intermediate")


@dataclass(frozen=True)
class Verdict:
    """The verification result, shown first. ``failures`` make the command exit 1."""

    log_verified: bool
    error: str | None  # why the log did not verify (names the entry), else None
    failed_entry: int | None
    trusted_keys: tuple[str, ...]  # key ids of the --trust keys
    signers: tuple[str, ...]  # the officer keys that signed the log's entries
    head: str | None
    entries: int
    first_time: str | None
    last_time: str | None
    notes: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()  # the jump host's records that the log contradicts
    warnings: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return self.log_verified and not self.failures

    @property
    def summary(self) -> str:
        """One line: what an auditor reads first (the page's title and first heading)."""
        if not self.log_verified:
            at = f" at entry {self.failed_entry}" if self.failed_entry is not None else ""
            return f"Verification FAILED{at}: the ceremony log does not verify"
        if self.failures:
            n = len(self.failures)
            return f"Verification FAILED: {n} jump-host record{'s' if n > 1 else ''} the ceremony log contradicts"
        return f"Verified: {self.entries} ceremony log entries, signed by the trusted officer key"


@dataclass(frozen=True)
class ActRow:
    seq: int
    time: str
    act: str
    signer: str
    shares: tuple[int, ...]  # custody share numbers that opened the root for this act
    produced: str
    hash: str
    params: Mapping[str, Any] = field(repr=False)
    imported_at: tuple[int, ...] = ()  # a bundle: the jump-host history lines that import it (with --state)


@dataclass(frozen=True)
class CertificateRow:
    role: str  # one of ROLES
    cluster: str | None
    subject: str
    issuer: str
    fingerprint: str  # SHA-256 of the DER certificate
    serial: str
    not_before: str
    not_after: str
    key_type: str
    key_held: str
    status: str  # valid / expiring / expired / not-yet-valid / revoked
    logged_in: int | None  # the first log entry that records it
    path: str  # relative to the PKI folder


@dataclass(frozen=True)
class RevocationRow:
    seq: int
    time: str
    cluster: str
    serial: str
    fingerprint: str
    reason: str
    crl_number: int | None  # the first CRL that lists it


@dataclass(frozen=True)
class CrlInfo:
    number: int | None
    this_update: str
    next_update: str | None
    sha256: str
    revoked_serials: tuple[str, ...]
    logged_in: int | None
    status: str  # current / overdue


@dataclass(frozen=True)
class CustodyInfo:
    threshold: int
    count: int
    identifier: int
    created_at: str
    custodians: tuple[tuple[int, str], ...]  # (share number, age recipient)


@dataclass(frozen=True)
class JumpEvent:
    line: int
    time: str
    kind: str
    summary: str
    outcome: str  # matched / failure / warning / recorded
    detail: str
    fields: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class JumpSide:
    state: str
    events: tuple[JumpEvent, ...]
    damaged_lines: tuple[int, ...]


@dataclass(frozen=True)
class AuditReport:
    """Everything the page shows, as data. Only :func:`build_report` makes one."""

    pki: str
    generated: str  # --now, or the time the report was made
    verdict: Verdict
    acts: tuple[ActRow, ...] = ()
    certificates: tuple[CertificateRow, ...] = ()
    revocations: tuple[RevocationRow, ...] = ()
    crl: CrlInfo | None = None
    custody: CustodyInfo | None = None
    jump_host: JumpSide | None = None

    def require_verified(self) -> None:
        """Raise :class:`VerificationError` (exit 1) unless the log verified and no record failed."""
        v = self.verdict
        if not v.log_verified:
            raise LogTampered(v.error or v.summary)
        if v.failures:
            raise VerificationError(f"{v.summary}: {v.failures[0]}")

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON document with stable keys (``--json``)."""
        doc = dataclasses.asdict(self)
        doc["format"] = REPORT_FORMAT
        doc["verdict"].update({"verified": self.verdict.verified, "summary": self.verdict.summary})
        doc["acts"] = [{**a, "params": dict(a["params"])} for a in doc["acts"]]
        if self.custody is not None:
            doc["custody"]["custodians"] = [{"share": n, "recipient": r} for n, r in self.custody.custodians]
        out: dict[str, Any] = _jsonable(doc)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# -- 1. the log -----------------------------------------------------------------------------------


def _failed_verdict(exc: VerificationError, trust_ids: tuple[str, ...]) -> Verdict:
    return Verdict(
        log_verified=False,
        error=exc.message,
        failed_entry=getattr(exc, "entry", None),  # LogTampered and SignatureMismatch name it
        trusted_keys=trust_ids,
        signers=(),
        head=None,
        entries=0,
        first_time=None,
        last_time=None,
    )


def _log_verdict(log: VerifiedLog, trust_ids: tuple[str, ...]) -> Verdict:
    entries = log.entries
    return Verdict(
        log_verified=True,
        error=None,
        failed_entry=None,
        trusted_keys=trust_ids,
        signers=tuple(sorted({e.signer for e in entries})),
        head=log.head,
        entries=len(entries),
        first_time=entries[0].time if entries else None,
        last_time=entries[-1].time if entries else None,
        notes=log.notes,
    )


def build_report(pki: Path, trust: Sequence[PublicKey], *, now: dt.datetime, state: Path | None = None) -> AuditReport:
    """Verify ``pki``'s ceremony log against ``trust``, then gather the report (see the module).

    A log that does not verify gives a report with only its failing verdict (nothing the log
    would vouch for is shown); call :meth:`AuditReport.require_verified` to turn a failing verdict
    into :class:`VerificationError`. Unreadable input (no folder, a corrupt inventory, a state
    folder that does not exist) raises :class:`InvalidInput` (exit 3).
    """
    if not trust:
        raise InvalidInput("give the officer's public key (--trust PUB): a report proves nothing without it")
    if state is not None and not Path(state).is_dir():
        raise NotFound(f"{state}: no such jump host state folder")
    trust_ids = tuple(sorted({spki_sha256(k) for k in trust}))
    generated = utc_text(now)
    try:
        log = verify_log(Path(pki), list(trust))  # the same checks as 'airgap audit verify'
    except VerificationError as exc:
        return AuditReport(str(pki), generated, _failed_verdict(exc, trust_ids))
    layout = PkiLayout(Path(pki))
    inv = read_inventory(layout.inventory)
    certs, cert_warnings = gather_certificates(layout, log.entries, inv, now)
    crl, crl_warnings = gather_crl(layout, log.entries, now)
    jump = gather_jump_side(Path(state), log, trust_ids) if state is not None else None
    failures = tuple(e.detail for e in jump.events if e.outcome == "failure") if jump else ()
    if jump is not None and jump.damaged_lines:
        lines = ", ".join(str(n) for n in jump.damaged_lines)
        failures += (f"the jump host's history has damaged lines ({lines}): it cannot be read whole",)
    jump_warnings = tuple(e.detail for e in jump.events if e.outcome == "warning") if jump else ()
    verdict = dataclasses.replace(
        _log_verdict(log, trust_ids),
        failures=failures,
        warnings=(*cert_warnings, *crl_warnings, *jump_warnings),
    )
    return AuditReport(
        pki=str(pki),
        generated=generated,
        verdict=verdict,
        acts=tuple(act_row(e, _imports_by_bundle(jump)) for e in log.entries),
        certificates=certs,
        revocations=gather_revocations(log.entries),
        crl=crl,
        custody=gather_custody(inv),
        jump_host=jump,
    )


# -- 2. the acts ----------------------------------------------------------------------------------


def _shares(params: Mapping[str, Any]) -> tuple[int, ...]:
    held = params.get("custody")
    shares = held.get("shares") if isinstance(held, Mapping) else None
    if not isinstance(shares, list):
        return ()
    return tuple(sorted(s for s in shares if isinstance(s, int) and not isinstance(s, bool)))


def _cert_words(p: Mapping[str, Any]) -> str:
    return f"serial {p.get('serial', '?')}, sha256 {p.get('fingerprint', '?')}, valid to {p.get('not_after', '?')}"


def _storage_words(p: Mapping[str, Any]) -> str:
    storage = p.get("storage", "file")
    where = "a PKCS#11 token" if storage == "pkcs11" else "a key file"
    held = p.get("custody_set")
    if isinstance(held, Mapping):
        where += f" under split custody {held.get('threshold')}-of-{held.get('count')}"
    return where


def produced(act: str, p: Mapping[str, Any]) -> str:
    """What one log entry says its act made, in a sentence (every value from the verified entry)."""
    cluster = p.get("cluster")
    words: dict[str, Any] = {
        "log-start": lambda: (
            f"the log, officer key {p.get('officer_key_id')}; "
            f"{len(p.get('existing_certificates') or [])} certificate(s) existed before it"
        ),
        "key-create": lambda: f"{p.get('purpose')} key {p.get('key_id')} ({p.get('key_type')}) in {_storage_words(p)}",
        "init": lambda: f"root certificate {p.get('subject')}: {_cert_words(p)}",
        "adopt": lambda: f"adopted root certificate {p.get('subject')}: {_cert_words(p)}",
        "issue": lambda: f"intermediate for cluster {cluster}: {_cert_words(p)}",
        "sign": lambda: (
            f"intermediate for cluster {cluster} (key held elsewhere, key id {p.get('key_id')}): {_cert_words(p)}"
        ),
        "rotate": lambda: (
            f"new intermediate for cluster {cluster}, replacing serial {p.get('old_serial')}: {_cert_words(p)}"
        ),
        "revoke": lambda: (
            f"revoked the intermediate of cluster {cluster}, serial {p.get('serial')} ({p.get('reason')})"
        ),
        "crl": lambda: (
            f"CRL number {p.get('crl_number')}, next update {p.get('next_update')}, "
            f"{len(p.get('revoked_serials') or [])} revoked, sha256 {p.get('crl_sha256')}"
        ),
        "bundle": lambda: (
            f"bundle {p.get('bundle_id')} for cluster {cluster}, sequence {p.get('sequence')}, "
            f"signed by key {p.get('signer_key_id')}, at ceremony head {p.get('ceremony_head')}"
        ),
        "root-rotation-begin": lambda: f"next root {p.get('subject')}: {_cert_words(p)}",
        "root-rotation-finish": lambda: f"the next root became the root (retired {p.get('retired_root_fingerprint')})",
        "custody-rekey": lambda: (
            "a new custody share set "
            f"{(p.get('new_custody') or {}).get('threshold')}-of-{(p.get('new_custody') or {}).get('count')}"
        ),
    }
    make = words.get(act)
    if make is not None:
        return str(make())
    scalars = [f"{k}={v}" for k, v in sorted(p.items()) if isinstance(v, (str, int, float, bool)) and k != "custody"]
    return ", ".join(scalars)


def act_row(e: Entry, imports: Mapping[str, tuple[int, ...]] | None = None) -> ActRow:
    """One log entry as a row; ``imports`` (bundle id → history lines) marks where a bundle arrived."""
    params = dict(e.params)
    lines = (imports or {}).get(str(params.get("bundle_id")), ()) if e.act == "bundle" else ()
    return ActRow(e.seq, e.time, e.act, e.signer, _shares(params), produced(e.act, params), e.hash, params, lines)


def _imports_by_bundle(jump: JumpSide | None) -> dict[str, tuple[int, ...]]:
    """Bundle id → the history lines of its imports that the log does not contradict."""
    found: dict[str, list[int]] = {}
    for ev in jump.events if jump is not None else ():
        if ev.kind == BUNDLE_IMPORT and ev.outcome != "failure":
            found.setdefault(str(ev.fields.get("bundle_id")), []).append(ev.line)
    return {k: tuple(sorted(v)) for k, v in found.items()}


# -- 3. certificates ------------------------------------------------------------------------------


def _first_recorded(entries: Sequence[Entry]) -> dict[str, int]:
    """Fingerprint → the first entry that records it (as a made certificate or an existing one)."""
    first: dict[str, int] = {}
    for e in entries:
        for k, v in e.params.items():
            if k == "existing_certificates" and isinstance(v, list):
                for fp in v:
                    first.setdefault(str(fp), e.seq)
            elif k == "fingerprint" and isinstance(v, str):
                first.setdefault(v, e.seq)
    return first


def _revoked_fingerprints(entries: Sequence[Entry]) -> set[str]:
    return {str(e.params.get("fingerprint")) for e in entries if e.act == "revoke"}


def _key_file_words(path: Path) -> str:
    """ "file (encrypted)" or "file (NOT encrypted)", read from the PEM itself, never assumed."""
    pem = read_capped(path, MAX_KEY_FILE, "private key")
    return "file (encrypted)" if is_encrypted_pem(pem) else "file (NOT encrypted)"


def _root_key_held(folder: Path, inv: Inventory, current: bool) -> str:
    if (folder / ROOT_KEY).exists():
        if current and inv.custody is not None:
            return f"file, split custody {inv.custody.threshold}-of-{inv.custody.count}"
        return _key_file_words(folder / ROOT_KEY)
    if (folder / ROOT_KEY_REF).exists():
        return "token (PKCS#11)"
    return "missing"


def _cluster_key_held(folder: Path, fingerprint: str, inv: Inventory) -> str:
    if (folder / CA_KEY).exists():
        return _key_file_words(folder / CA_KEY)
    rec = next((r for r in inv.intermediates if r.fingerprint == fingerprint), None)
    if rec is not None and rec.held_elsewhere:
        return "elsewhere (ca sign)"
    return "missing"


def _cert_places(layout: PkiLayout, inv: Inventory) -> list[tuple[str, str | None, Path, str]]:
    """(role, cluster, certificate file, key holding) of every CA certificate in the folder."""
    places: list[tuple[str, str | None, Path, str]] = []
    if layout.root_cert.exists():
        places.append(("root", None, layout.root_cert, _root_key_held(layout.path, inv, True)))
    if layout.next_root_cert.exists():
        places.append(("next root", None, layout.next_root_cert, _root_key_held(layout.next_root_dir, inv, False)))
    retired = layout.archive_dir / "root"
    for d in sorted(retired.iterdir()) if retired.is_dir() else []:
        if (d / ROOT_CERT).is_file():
            places.append(("retired root", None, d / ROOT_CERT, _root_key_held(d, inv, False)))
    for name in layout.clusters():
        places.append(("intermediate", name, layout.path / name / CA_CERT, ""))
    archive = layout.archive_dir
    for cdir in sorted(archive.iterdir()) if archive.is_dir() else []:
        if cdir.name == "root" or not cdir.is_dir():
            continue
        for d in sorted(cdir.iterdir()):
            if (d / CA_CERT).is_file():
                places.append(("archived intermediate", cdir.name, d / CA_CERT, ""))
    return places


def gather_certificates(
    layout: PkiLayout, entries: Sequence[Entry], inv: Inventory, now: dt.datetime
) -> tuple[tuple[CertificateRow, ...], tuple[str, ...]]:
    """Every CA certificate in the folder, sorted by role, cluster and validity; and the warnings."""
    recorded = _first_recorded(entries)
    revoked = _revoked_fingerprints(entries)
    rows: list[CertificateRow] = []
    warnings: list[str] = []
    for role, cluster, path, held in _cert_places(layout, inv):
        cert = cx.load_cert_pem(read_capped(path, DEFAULT_LIMITS.max_pem_size, "certificate"), source=str(path))
        fp = cx.fingerprint(cert)
        if cluster is not None:
            held = _cluster_key_held(path.parent, fp, inv)
        rel = str(path.relative_to(layout.path))
        if fp not in recorded:
            warnings.append(f"{rel} (sha256 {fp}) is in the folder but no log entry records it")
        rows.append(
            _cert_row(cert, role, cluster, held, "revoked" if fp in revoked else None, recorded.get(fp), rel, now)
        )
    rows.sort(key=lambda r: (ROLES.index(r.role), r.cluster or "", r.not_before, r.fingerprint))
    return tuple(rows), tuple(warnings)


def _cert_row(
    cert: x509.Certificate,
    role: str,
    cluster: str | None,
    held: str,
    status: str | None,
    logged_in: int | None,
    rel: str,
    now: dt.datetime,
) -> CertificateRow:
    return CertificateRow(
        role=role,
        cluster=cluster,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        fingerprint=cx.fingerprint(cert),
        serial=format(cert.serial_number, "x"),
        not_before=utc_text(cert.not_valid_before_utc),
        not_after=utc_text(cert.not_valid_after_utc),
        key_type=key_type_of(cert.public_key()),  # type: ignore[arg-type]
        key_held=held,
        status=status or cx.status_of(cert, at=now),
        logged_in=logged_in,
        path=rel,
    )


# -- 4. revocations, the CRL, custody -------------------------------------------------------------


def gather_revocations(entries: Sequence[Entry]) -> tuple[RevocationRow, ...]:
    """Each ``revoke`` entry, with the number of the first CRL after it that lists its serial."""
    rows: list[RevocationRow] = []
    for i, e in enumerate(entries):
        if e.act != "revoke":
            continue
        p = e.params
        serial = str(p.get("serial", ""))
        number = next(
            (
                c.params.get("crl_number")
                for c in entries[i + 1 :]
                if c.act == "crl" and serial in (c.params.get("revoked_serials") or [])
            ),
            None,
        )
        rows.append(
            RevocationRow(
                seq=e.seq,
                time=e.time,
                cluster=str(p.get("cluster", "")),
                serial=serial,
                fingerprint=str(p.get("fingerprint", "")),
                reason=str(p.get("reason", "")),
                crl_number=number if isinstance(number, int) else None,
            )
        )
    return tuple(rows)


def gather_crl(layout: PkiLayout, entries: Sequence[Entry], now: dt.datetime) -> tuple[CrlInfo | None, tuple[str, ...]]:
    """The folder's current CRL (``PKI/ca-crl.pem``), and the log entry that records it by hash."""
    if not layout.crl.exists():
        return None, ()
    data = read_capped(layout.crl, DEFAULT_LIMITS.max_pem_size, "CRL")
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError as exc:
        raise Malformed(f"{layout.crl}: not a PEM CRL") from exc
    sha = hashlib.sha256(crl.public_bytes(serialization.Encoding.DER)).hexdigest()
    logged = next((e.seq for e in entries if e.act == "crl" and e.params.get("crl_sha256") == sha), None)
    try:
        number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = None
    nxt = crl.next_update_utc
    warnings = () if logged is not None else (f"{layout.crl.name} (sha256 {sha}) is not the CRL any log entry records",)
    info = CrlInfo(
        number=number,
        this_update=utc_text(crl.last_update_utc),
        next_update=utc_text(nxt) if nxt is not None else None,
        sha256=sha,
        revoked_serials=tuple(sorted(format(r.serial_number, "x") for r in crl)),
        logged_in=logged,
        status="overdue" if nxt is not None and nxt <= now else "current",
    )
    return info, warnings


def gather_custody(inv: Inventory) -> CustodyInfo | None:
    held = inv.custody
    if held is None:
        return None
    return CustodyInfo(
        threshold=held.threshold,
        count=held.count,
        identifier=held.identifier,
        created_at=held.created_at,
        custodians=tuple((s.number, s.recipient) for s in sorted(held.shares, key=lambda s: s.number)),
    )


# -- 5. the jump host -----------------------------------------------------------------------------


def _event_lines(history: History) -> list[int]:
    """The line number of each event (damaged lines are skipped by read_events, in order)."""
    damaged = set(history.damaged)
    numbers: list[int] = []
    n = 0
    while len(numbers) < len(history.events):
        n += 1
        if n not in damaged:
            numbers.append(n)
    return numbers


def gather_jump_side(state: Path, log: VerifiedLog, trust_ids: Sequence[str]) -> JumpSide:
    """Every event of the jump host's history, each matched against the verified log."""
    history = read_events(state)
    bundles = {str(e.params.get("bundle_id")): e for e in log.entries if e.act == "bundle"}
    hashes = {e.hash: e.seq for e in log.entries}
    recorded = _first_recorded(log.entries)
    events: list[JumpEvent] = []
    for line, ev in zip(_event_lines(history), history.events, strict=True):
        kind = str(ev.get("kind"))
        if kind == BUNDLE_IMPORT:
            summary, outcome, detail = match_import(ev, bundles, hashes, recorded)
        elif kind == IMAGES_PUSH:
            summary, outcome, detail = match_push(ev, trust_ids)
        elif kind == RELEASE_EXTRACT:
            summary, outcome, detail = describe_extract(ev)
        else:  # read_events keeps only the known kinds
            summary, outcome, detail = kind, "warning", f"unknown event kind {kind}"

        events.append(JumpEvent(line, str(ev.get("time")), kind, summary, outcome, f"line {line}: {detail}", ev))
    events.sort(key=lambda e: (e.time, e.line))
    return JumpSide(str(state), tuple(events), tuple(history.damaged))


def match_import(
    ev: Mapping[str, Any], bundles: Mapping[str, Entry], hashes: Mapping[str, int], recorded: Mapping[str, int]
) -> tuple[str, str, str]:
    """A ``bundle-import`` against the log's ``bundle`` entries: (summary, outcome, detail)."""
    bid, cluster, head = ev.get("bundle_id"), ev.get("cluster"), ev.get("ceremony_head")
    ctx = ev.get("context")
    where = f"imported into context {ctx}" if ctx else "imported without a cluster (rendered to files)"
    summary = f"bundle {bid} for cluster {cluster} (sequence {ev.get('sequence')}) {where}"
    entry = bundles.get(str(bid))
    if entry is None:
        return summary, "failure", f"bundle {bid} imported into cluster {cluster}: the log records no such bundle"
    want = {"cluster": "cluster", "sequence": "sequence", "signer_key_id": "signer", "ceremony_head": "ceremony_head"}
    for log_key, ev_key in want.items():
        if entry.params.get(log_key) != ev.get(ev_key):
            return (
                summary,
                "failure",
                f"bundle {bid}: the import record's {ev_key} {ev.get(ev_key)!r} is not the log's "
                f"{entry.params.get(log_key)!r} (entry {entry.seq})",
            )
    if head is None or str(head) not in hashes:
        return summary, "failure", f"bundle {bid}: ceremony head {head} is not the hash of any log entry"
    fp = ev.get("ca_fingerprint")
    if fp is not None and str(fp) not in recorded:
        return summary, "failure", f"bundle {bid}: CA certificate sha256 {fp} is not one the log records"
    detail = f"matches log entry {entry.seq} (ceremony head = entry {hashes[str(head)]})"
    forced = ev.get("forced_split")
    if forced:
        return summary, "warning", f"{detail}; imported past the split-mesh gate with --force-split ({forced})"
    return summary, "matched", detail


def match_push(ev: Mapping[str, Any], trust_ids: Sequence[str]) -> tuple[str, str, str]:
    listed = ev.get("images")
    images = listed if isinstance(listed, list) else []
    summary = f"{len(images)} image(s) of bundle {ev.get('bundle_id')} pushed to {ev.get('registry')}"
    signer = ev.get("signer")
    if signer not in trust_ids:
        return summary, "warning", f"image bundle signed by key {signer}, which is not a --trust (officer) key"
    return summary, "matched", f"image bundle signed by the officer key {signer}"


def describe_extract(ev: Mapping[str, Any]) -> tuple[str, str, str]:
    summary = f"release {ev.get('version')} ({ev.get('file')}, sha256 {ev.get('sha256')}) extracted to {ev.get('out')}"
    return summary, "recorded", f"verified by release key {ev.get('key_id')} (not in the ceremony log: no match)"


def parse_now(value: str | None) -> dt.datetime:
    """``--now``: an ISO 8601 time (UTC when it has no offset); the current time when None."""
    if value is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Malformed(f"--now {value!r}: not an ISO 8601 time (e.g. 2026-01-31T12:00:00Z)") from exc
    return (t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


__all__ = [
    "REPORT_FORMAT",
    "ActRow",
    "AuditReport",
    "CertificateRow",
    "CrlInfo",
    "CustodyInfo",
    "JumpEvent",
    "JumpSide",
    "RevocationRow",
    "Verdict",
    "build_report",
    "parse_now",
]
