"""The ceremony log's files in a PKI folder: reading, checking, preparing an act and recording it.

The pure part (entries, signatures, the chain, the head) is :mod:`airgap.offline.ceremony.log`;
this module reads and writes ``PKI/ceremony.log``, ``PKI/ceremony-head.json`` and the inventory's
record of the log, and runs the checks on what it read. See :mod:`airgap.offline.ceremony`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.core.atomic import write_replace
from airgap.core.canonical import utc_text
from airgap.core.files import read_capped
from airgap.core.keys import PublicKey, load_private_key, public_pem
from airgap.core.limits import MAX_LOG_BYTES
from airgap.core.x509 import fingerprint, load_cert_pem
from airgap.errors import InvalidInput, LogTampered, NotFound, Refused, VerificationError
from airgap.offline.ceremony.log import (
    Entry,
    Officer,
    VerifiedLog,
    check_certificates,
    check_expect_head,
    check_head,
    check_head_hash,
    check_no_secret,
    current_intermediates,
    current_roots,
    parse_entries,
    parse_entry,
    sign_entries,
    split_lines,
    verify_entries,
)
from airgap.offline.inventory import CeremonyLogRecord, read_inventory, write_inventory
from airgap.offline.layout import CA_CERT, CEREMONY_HEAD, CEREMONY_LOG, INVENTORY, PkiLayout

LOG_NAME = CEREMONY_LOG
HEAD_NAME = CEREMONY_HEAD
ENV_LOG_KEY = "AIRGAP_LOG_KEY"


def load_officer(path: Path, passphrase: bytes | None) -> Officer:
    """Open the officer's log key (PEM, encrypted with ``passphrase`` unless it is plain)."""
    return Officer.from_key(load_private_key(path, passphrase))


def log_path(pki: Path) -> Path:
    return Path(pki) / LOG_NAME


def head_path(pki: Path) -> Path:
    return Path(pki) / HEAD_NAME


def has_log(pki: Path) -> bool:
    """True when the PKI folder keeps a ceremony log (then every act must be recorded)."""
    return log_path(pki).exists()


def log_record(pki: Path) -> CeremonyLogRecord | None:
    """What ``PKI/inventory.json`` records about the log (None: no record, e.g. an older inventory).

    Untrusted: it is a file in the folder like the log. A corrupt inventory is :class:`InvalidInput`.
    """
    return read_inventory(Path(pki) / INVENTORY).ceremony_log


def check_not_removed(pki: Path) -> CeremonyLogRecord | None:
    """Raise :class:`VerificationError` when the folder keeps a log but its log or head file is gone.

    A folder keeps a log when ``inventory.json`` records one (``ceremony_log``) or when either of
    ``ceremony.log`` / ``ceremony-head.json`` exists; then both files must be there. Returns the
    inventory's record (None for a folder with no record: unlogged, or a log older than the record).
    This only catches a removal the rest of the folder still shows: someone who also edits
    ``inventory.json`` can hide the log; only a head kept outside the folder (``--head``) proves it.
    """
    rec = log_record(pki)
    lp, hp = log_path(pki), head_path(pki)
    has_l, has_h = lp.exists(), hp.exists()
    if (has_l and has_h) or (not has_l and not has_h and rec is None):
        return rec
    if rec is not None:
        why = (
            f"{Path(pki) / INVENTORY} records that this PKI keeps a ceremony log "
            f"(started {rec.started} by officer key {rec.officer_key_id})"
        )
    elif has_l:
        why = f"this PKI keeps a ceremony log ({lp} exists)"
    else:
        why = f"this PKI kept a ceremony log (its signed head {hp} is still there)"
    if has_l:
        raise LogTampered(
            f"{hp}: the signed head is missing but {why}: the head was removed; "
            "cannot rule out a truncated log (refusing to go on; restore it from a backup)"
        )
    both = "" if has_h else f" (and so is {hp})"
    raise LogTampered(
        f"{lp} is missing{both} but {why}: the ceremony log was removed "
        "(refusing to go on as an unlogged PKI; restore it from a backup)"
    )


def head_hash(pki: Path) -> str | None:
    """The hash of the last log entry, or None when the folder keeps no log.

    Unverified (it only reads the last line): meant to be carried in a bundle and kept in the jump
    host's import record, so an auditor can later run ``airgap audit verify PKI --head HASH`` to
    prove the log still contains that point. Raises :class:`InvalidInput` on an unreadable log.
    """
    p = log_path(pki)
    if not p.exists():
        return None
    lines = _read_lines(p)
    return hashlib.sha256(lines[-1]).hexdigest() if lines else None


def _read_log(p: Path) -> bytes:
    return read_capped(p, MAX_LOG_BYTES, "ceremony log", regular=True)


def _read_lines(p: Path) -> list[bytes]:
    return split_lines(_read_log(p))


def check_pki_folder(pki: Path) -> None:
    """A folder to read a log from must exist: :class:`InvalidInput` (exit 3) otherwise."""
    path = Path(pki)
    if path.is_file():
        raise InvalidInput(f"{pki}: a file, not a PKI folder (pass the folder that holds it: {path.parent})")
    if not path.is_dir():
        raise NotFound(f"{pki}: no such PKI folder")


def read_entries(pki: Path) -> list[Entry]:
    """Parse every entry WITHOUT verifying anything (for ``audit show``).

    A malformed line is :class:`~airgap.errors.LogTampered` (exit 1): a log airgap wrote is never
    malformed, so one that is was changed or cut short.
    """
    check_pki_folder(pki)
    p = log_path(pki)
    if not p.exists():
        raise NotFound(f"{p}: no ceremony log in {pki}")
    return parse_entries(_read_log(p), source=str(p))


def verify_log(
    pki: Path,
    trust: Sequence[PublicKey] | None = None,
    *,
    expect_head: str | None = None,
    check_files: bool = True,
) -> VerifiedLog:
    """Check the whole log offline; return a :class:`VerifiedLog` or raise naming the first bad entry.

    Trusted: the ``trust`` keys (when given). Untrusted: every byte of the log, the head file,
    ``inventory.json`` and the certificates in the folder. First, when ``inventory.json`` records a log
    (or only one of the two files is left), both files must exist (else: the log was removed) and
    entry 1 must be the one it records (else: the log was replaced). Then, per entry and for the log:

    1. the line is complete JSON with exactly the entry fields (a cut line: truncated);
    2. ``seq`` is the line number (otherwise an entry was removed or the entries reordered);
    3. it is signed (``signer`` and ``signature`` present);
    4. the signer is an officer key: a ``trust`` key, or without ``trust`` the key entry 1 registers;
    5. the signature verifies (otherwise the entry was changed after signing);
    6. ``prev`` is the hash of the entry before (otherwise the one before was changed or replaced);
    7. the signed head file names the last entry (otherwise the log was truncated or extended);
    8. ``expect_head``, when given, is the hash of some entry (otherwise the log was cut or rewritten);
    9. with ``check_files``, every certificate in the folder was recorded (else the log was cut);
    10. with ``check_files``, every cluster's current intermediate the log records is on disk with its
        fingerprint, and so is every certificate ``inventory.json`` records (else a CA was lost or replaced).
    """
    src = str(log_path(pki))
    want_head = check_head_hash(expect_head) if expect_head is not None else None  # bad input: exit 3
    check_pki_folder(pki)
    rec = check_not_removed(pki)  # 0. a folder that keeps a log still has both files
    if not log_path(pki).exists():
        raise LogTampered(f"{src}: no ceremony log in {pki}")
    entries, officer = verify_entries(_read_log(log_path(pki)), source=src, trust=trust, record=rec)  # 1-6
    pinned = bool(trust)
    notes: list[str] = []
    # 7. the signed head
    hp = head_path(pki)
    note = check_head(hp.read_bytes() if hp.exists() else None, entries, officer, head_source=str(hp), log_source=src)
    if note is not None:
        notes.append(note)
    # 8. a head hash from elsewhere
    if want_head is not None:
        check_expect_head(entries, want_head, source=src)
    # 9. every certificate on disk was recorded; 10. every recorded one is on disk
    if check_files:
        _check_files(pki, entries, src)
        pending = check_on_disk(pki, entries, src)
        if pending:
            notes.append(
                f"an interrupted act (PKI/.journal.json) has not published {', '.join(sorted(pending))} yet: "
                "the next act on this folder finishes or undoes it"
            )
    if not pinned:
        notes.append("no --trust key: checked against the officer key the log registers itself")
    return VerifiedLog(tuple(entries), tuple(officer), pinned, tuple(notes))


def check_recorded(pki: Path) -> None:
    """Every CA certificate in the folder has its log entry, else :class:`VerificationError` (exit 1).

    Run by every act (after the chain was verified and recovery ran): a CA the log never recorded
    refuses the act until ``audit verify`` passes again.
    """
    src = str(log_path(pki))
    try:
        _check_files(pki, read_entries(pki), src)
    except VerificationError as exc:
        raise LogTampered(f"{exc.message} (refusing every act until 'airgap audit verify' passes)") from exc


def _check_files(pki: Path, entries: list[Entry], src: str) -> None:
    certs = [(str(p), fingerprint(load_cert_pem(p.read_bytes(), source=str(p)))) for p in _certificates_in(pki)]
    check_certificates(entries, certs, source=src)


def check_on_disk(pki: Path, entries: list[Entry], src: str) -> frozenset[str]:
    """Step 10: what the log and the inventory record as current is on disk, unchanged (exit 1 otherwise).
    Returns what an interrupted act's journal names (left to the next act's recovery)."""
    from airgap.offline.listing import recorded_problems
    from airgap.offline.recovery import pending_publication

    layout = PkiLayout(Path(pki))
    pending = pending_publication(layout)  # an interrupted act: the next one finishes or undoes it
    root, nxt = current_roots(entries)
    for what, fp, path in (("root", root, layout.root_cert), ("next root", nxt, layout.next_root_cert)):
        if fp is None or "root" in pending:
            continue
        found = fingerprint(load_cert_pem(path.read_bytes(), source=str(path))) if path.is_file() else None
        if found != fp:
            shown = f"is sha256 {found}" if found is not None else "is missing"
            raise VerificationError(f"{src}: records sha256 {fp} as the {what}, but {path} {shown}")
    for cluster, fp in sorted(current_intermediates(entries).items()):
        if cluster in pending:
            continue
        path = layout.cluster_file(cluster, CA_CERT)  # a name the rule refuses: exit 3, never a path outside
        if not path.is_file():
            raise VerificationError(
                f"{src}: records {path} (sha256 {fp}) as cluster {cluster}'s current intermediate, but it is missing"
            )
        found = fingerprint(load_cert_pem(path.read_bytes(), source=str(path)))
        if found != fp:
            raise VerificationError(
                f"{src}: records sha256 {fp} as cluster {cluster}'s current intermediate, but {path} is sha256 {found}"
            )
    problems = recorded_problems(PkiLayout(Path(pki)), skip=pending)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerificationError(f"{problems[0]}{more}")
    return pending


def _certificates_in(pki: Path) -> list[Path]:
    """The CA certificates an act made: the root, the next root, each cluster's ca-cert.pem."""
    return PkiLayout(Path(pki)).issued_certificate_paths()


def existing_certificates(pki: Path) -> list[str]:
    """Fingerprints of the CA certificates already in ``pki`` (for the log-start entry)."""
    if not Path(pki).is_dir():
        return []
    return [fingerprint(load_cert_pem(p.read_bytes(), source=str(p))) for p in _certificates_in(Path(pki))]


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` found: ``genesis`` holds the log-start parameters when the act starts the log."""

    genesis: Mapping[str, Any] | None = None


def prepare(pki: Path, officer: Officer | None) -> Prepared | None:
    """Before an act: check the log is intact and ``officer`` may extend it.

    Call it with the PKI lock held, before changing anything, so a refused act leaves nothing.
    No log and no officer: None (the folder keeps no log). A log but no officer: :class:`Refused`
    (every act on a logged PKI must be recorded). A broken log: :class:`VerificationError`, and so
    is a removed one: ``inventory.json`` records a log (or one of the two files is left) but
    ``ceremony.log`` or ``ceremony-head.json`` is missing — with or without an officer, so the act
    neither goes unlogged nor starts a fresh log over the removed one.
    """
    check_not_removed(pki)
    if not has_log(pki):
        # The log starts with this act: entry 1 lists what existed *before* it (written by record).
        return Prepared(_genesis_params(pki, officer)) if officer is not None else None
    if officer is None:
        raise Refused(
            f"{log_path(pki)}: this PKI keeps a ceremony log; give the officer's log key "
            f"(--log-key KEY or ${ENV_LOG_KEY}) so this act is recorded"
        )
    try:
        log = verify_log(pki, check_files=False)
    except VerificationError as exc:
        raise LogTampered(f"{exc.message} (refusing to extend a broken log; see 'airgap audit verify')") from exc
    if officer.key_id not in log.officer_keys:
        raise Refused(
            f"the log key {officer.key_id} is not the officer key registered in {log_path(pki)} "
            f"({', '.join(log.officer_keys)})"
        )
    return Prepared()


def record(
    pki: Path,
    act: str,
    params: Mapping[str, Any],
    officer: Officer,
    *,
    at: dt.datetime | None = None,
    prepared: Prepared | None = None,
) -> Entry:
    """Append one signed entry for ``act`` and re-sign the head (:func:`record_all` of one)."""
    return record_all(pki, [(act, params)], officer, at=at, prepared=prepared)[-1]


def record_all(
    pki: Path,
    acts: Sequence[tuple[str, Mapping[str, Any]]],
    officer: Officer,
    *,
    at: dt.datetime | None = None,
    prepared: Prepared | None = None,
) -> list[Entry]:
    """Append one signed entry per (act, params), in order, and re-sign the head once; start the log
    if there is none. Returns the entries written (a ``log-start`` first when the log started).

    Call with the PKI lock held, after :func:`prepare` (pass its result as ``prepared``) and after
    the act succeeded; external callers on a folder that already keeps a log may skip both. ``params`` must
    be JSON values with no secret (refused: ValueError, a programming error). The whole log is
    rewritten atomically, so a crash leaves the old log or the new one with every entry of the
    batch, never half a line or half a batch: ``ca sign`` of 200 requests writes the log once.
    """
    if not acts:
        raise ValueError("record_all needs at least one act")
    for _, params in acts:
        check_no_secret(params)
    pki = Path(pki)
    lines = _read_lines(log_path(pki)) if has_log(pki) else []
    todo: list[tuple[str, Mapping[str, Any]]] = []
    if not lines:
        genesis = prepared.genesis if prepared is not None and prepared.genesis is not None else None
        todo.append(("log-start", dict(genesis) if genesis is not None else _genesis_params(pki, officer)))
    notes = officer.annotations  # what opened the root (custody shares), passed in explicitly
    check_no_secret(notes)
    todo.extend((act, {**notes, **params}) for act, params in acts)
    written = _append(pki, lines, todo, officer, at)
    # After the log and its head, never before: a crash in between leaves a log without the record
    # (as before the record existed; the next act adds it), never a record without a log.
    if not lines:
        _mark_kept(pki, officer.key_id, written[-1].time)
    else:
        try:
            first = parse_entry(lines[0], 1, str(log_path(pki)))
        except VerificationError:
            return written  # a broken log (an external caller skipped prepare): nothing to record it by
        key_id = first.params.get("officer_key_id")
        if first.act == "log-start" and isinstance(key_id, str):
            _mark_kept(pki, key_id, first.time)  # a log older than the record: add it now
    return written


def _mark_kept(pki: Path, officer_key_id: str, started: str) -> None:
    """Record in ``inventory.json`` that the folder keeps a log (unless it already says so)."""
    p = Path(pki) / INVENTORY
    inv = read_inventory(p)
    if inv.ceremony_log is not None:
        return
    inv.ceremony_log = CeremonyLogRecord(officer_key_id=officer_key_id, started=started)
    write_inventory(p, inv)


def _genesis_params(pki: Path, officer: Officer) -> dict[str, Any]:
    return {
        "format": 1,
        "officer_key": public_pem(officer.key).decode(),
        "officer_key_id": officer.key_id,
        "existing_certificates": existing_certificates(pki),
    }


def _append(
    pki: Path,
    lines: list[bytes],
    todo: list[tuple[str, Mapping[str, Any]]],
    officer: Officer,
    at: dt.datetime | None,
) -> list[Entry]:
    when = utc_text(at or dt.datetime.now(dt.UTC))
    new, head = sign_entries(lines[-1] if lines else None, len(lines) + 1, todo, officer, when)
    write_replace(log_path(pki), b"".join(x + b"\n" for x in [*lines, *(e.line for e in new)]))
    write_replace(head_path(pki), head)
    return new
