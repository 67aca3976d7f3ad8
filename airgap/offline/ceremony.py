"""The ceremony log: a hash-chained, signed record of every act on a PKI folder.

Files (both in the PKI folder, both public, neither holds a secret)::

    PKI/ceremony.log        JSON Lines, one entry per act, oldest first
    PKI/ceremony-head.json  the last entry's sequence number and hash, signed by the officer

An entry is one line of canonical JSON (keys sorted, no spaces, ASCII)::

    {"act": "issue", "params": {...}, "prev": "<sha256 of the previous line>", "seq": 2,
     "signature": "<base64 DER ECDSA / RSA PKCS#1 v1.5>", "signer": "<key id>", "time": "...Z"}

* ``seq`` counts from 1; ``prev`` of entry 1 is 64 zeros; an entry's hash is the SHA-256 of its
  line (without the newline), so ``prev`` of entry N is the hash of line N-1.
* ``signature`` covers ``DOMAIN`` followed by the canonical JSON of the entry without
  ``signature``; ``signer`` is the key id (SHA-256 of the DER SubjectPublicKeyInfo) of the key that
  signed it.
* Entry 1 is always ``log-start``: it registers the officer's public key (``params.officer_key``,
  PEM) and lists the certificates that already existed (``params.existing_certificates``).

Trust: the log is *evidence*, not a trust anchor. :func:`verify_log` with ``trust`` keys (the
officer's ``.pub`` files, obtained out of band) is the real check; without them it checks the log
against the key the log registers itself, which proves internal consistency only (anyone who can
rewrite the whole folder can rewrite it with their own key). Truncation of the tail cannot be
seen from a hash chain alone: the signed head file, the certificates on disk (each must have an
entry) and a head hash from elsewhere (a bundle, the jump host's import record: ``expect_head``)
each catch it; all three are checked.

Removal: once a log exists, :func:`record` also writes ``"ceremony_log": {"officer_key_id", "started"}``
into ``PKI/inventory.json``. From then on (and whenever only one of the two files is left) a missing
``ceremony.log`` or ``ceremony-head.json`` is a *removed* log: :func:`prepare` refuses every act and
:func:`verify_log` fails (exit 1), instead of the folder silently becoming "unlogged". This is
evidence in the same folder: whoever can also edit ``inventory.json`` can still hide the log; only
a head hash kept outside the folder (``expect_head``) proves it existed.

Never logged: passphrases, PINs, private keys. :func:`record` refuses parameters that look like one.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.core.atomic import write_replace
from airgap.core.canonical import canonical_json, utc_text
from airgap.core.files import read_capped
from airgap.core.keys import (
    PrivateKey,
    PublicKey,
    load_private_key,
    load_public_key_pem,
    public_pem,
    sign,
    spki_sha256,
)
from airgap.core.limits import MAX_LOG_BYTES
from airgap.core.signatures import verify_bytes
from airgap.core.x509 import fingerprint, load_cert_pem
from airgap.errors import InvalidInput, Refused, VerificationError
from airgap.offline.inventory import CeremonyLogRecord, read_inventory, write_inventory
from airgap.offline.layout import CEREMONY_HEAD, CEREMONY_LOG, INVENTORY, PkiLayout

LOG_NAME = CEREMONY_LOG
HEAD_NAME = CEREMONY_HEAD
DOMAIN = b"airgap-ceremony-log-v1\n"
HEAD_DOMAIN = b"airgap-ceremony-head-v1\n"
GENESIS_PREV = "0" * 64
ENTRY_FIELDS = frozenset({"act", "params", "prev", "seq", "signature", "signer", "time"})
ENV_LOG_KEY = "AIRGAP_LOG_KEY"
# Parameter names that would mean a secret is being logged: refused by record().
_SECRET_WORDS = ("passphrase", "password", "pin", "secret", "private")


canonical = canonical_json  # the one canonical-JSON encoder (airgap.core.canonical)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Officer:
    """The officer's signing key for the log (``keys new --kind signing``, or any EC/RSA key)."""

    key: PrivateKey
    key_id: str

    @classmethod
    def from_key(cls, key: PrivateKey) -> Officer:
        return cls(key, spki_sha256(key))


def load_officer(path: Path, passphrase: bytes | None) -> Officer:
    """Open the officer's log key (PEM, encrypted with ``passphrase`` unless it is plain)."""
    return Officer.from_key(load_private_key(path, passphrase))


@dataclass(frozen=True)
class Entry:
    """One parsed log line. ``line`` is the exact bytes hashed; nothing here is verified yet."""

    seq: int
    time: str
    act: str
    params: Mapping[str, Any]
    prev: str
    signer: str
    signature: str
    line: bytes

    @property
    def hash(self) -> str:
        return _sha256(self.line)

    def signed_bytes(self) -> bytes:
        doc = {
            "act": self.act,
            "params": self.params,
            "prev": self.prev,
            "seq": self.seq,
            "signer": self.signer,
            "time": self.time,
        }
        return DOMAIN + canonical(doc)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "act": self.act,
            "params": dict(self.params),
            "prev": self.prev,
            "signer": self.signer,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifiedLog:
    """A log that passed :func:`verify_log`. ``anchored`` says whether ``--trust`` keys pinned it."""

    entries: tuple[Entry, ...]
    officer_keys: tuple[str, ...]
    anchored: bool
    notes: tuple[str, ...] = field(default=())

    @property
    def head(self) -> str | None:
        return self.entries[-1].hash if self.entries else None


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
        raise VerificationError(
            f"{hp}: the signed head is missing but {why}: the head was removed; "
            "cannot rule out a truncated log (refusing to go on; restore it from a backup)"
        )
    both = "" if has_h else f" (and so is {hp})"
    raise VerificationError(
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
    return _sha256(lines[-1]) if lines else None


def _read_lines(p: Path) -> list[bytes]:
    data = read_capped(p, MAX_LOG_BYTES, "ceremony log")
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] != b"":
        # keep the incomplete tail so verification can name it
        return lines
    return lines[:-1]


def check_pki_folder(pki: Path) -> None:
    """A folder to read a log from must exist: :class:`InvalidInput` (exit 3) otherwise."""
    if not Path(pki).is_dir():
        raise InvalidInput(f"{pki}: no such PKI folder")


def check_head_hash(value: str) -> str:
    """A head hash given by a user (``--head``): 64 hex digits, else :class:`InvalidInput` (exit 3)."""
    want = value.strip().lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise InvalidInput(
            f"--head {value!r}: not a head hash (64 hexadecimal digits, as a bundle or import record shows)"
        )
    return want


def read_entries(pki: Path) -> list[Entry]:
    """Parse every entry WITHOUT verifying anything (for ``audit show``); malformed lines raise."""
    check_pki_folder(pki)
    p = log_path(pki)
    if not p.exists():
        raise InvalidInput(f"{p}: no ceremony log in {pki}")
    try:
        return [_parse_entry(line, i, str(p)) for i, line in enumerate(_read_lines(p), 1)]
    except VerificationError as exc:
        raise InvalidInput(exc.message) from exc


def _parse_entry(line: bytes, lineno: int, source: str) -> Entry:
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise VerificationError(f"{source}: entry at line {lineno} is not valid JSON (changed or cut short)") from exc
    if not isinstance(doc, dict) or set(doc) - ENTRY_FIELDS or {"act", "params", "prev", "seq", "time"} - set(doc):
        raise VerificationError(f"{source}: entry at line {lineno} does not have the entry fields")
    seq, params = doc["seq"], doc["params"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(params, dict):
        raise VerificationError(f"{source}: entry at line {lineno} has a malformed seq or params")
    for k in ("act", "prev", "time"):
        if not isinstance(doc[k], str):
            raise VerificationError(f"{source}: entry at line {lineno} has a malformed {k}")
    signer, signature = doc.get("signer", ""), doc.get("signature", "")
    if not isinstance(signer, str) or not isinstance(signature, str):
        raise VerificationError(f"{source}: entry at line {lineno} has a malformed signature")
    return Entry(seq, doc["time"], doc["act"], params, doc["prev"], signer, signature, line)


def _keys_from(trust: Sequence[PublicKey]) -> dict[str, PublicKey]:
    return {spki_sha256(k): k for k in trust}


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
    9. with ``check_files``, every certificate in the folder was recorded (else the log was cut).
    """
    src = str(log_path(pki))
    want_head = check_head_hash(expect_head) if expect_head is not None else None  # bad input: exit 3
    check_pki_folder(pki)
    rec = check_not_removed(pki)  # 0. a folder that keeps a log still has both files
    if not log_path(pki).exists():
        raise VerificationError(f"{src}: no ceremony log in {pki}")
    lines = _read_lines(log_path(pki))
    if not lines:
        raise VerificationError(f"{src}: the ceremony log is empty")
    pinned = _keys_from(trust) if trust else None
    officer: dict[str, PublicKey] = dict(pinned or {})
    # Which seq numbers appear where, to tell "removed" from "reordered" in step 2.
    seen_seqs: set[int] = set()
    for ln in lines:
        try:
            s = json.loads(ln).get("seq")
        except (ValueError, AttributeError):
            continue
        if isinstance(s, int):
            seen_seqs.add(s)
    entries: list[Entry] = []
    prev_hash = GENESIS_PREV
    for i, line in enumerate(lines, start=1):
        # 1. complete JSON, the entry fields
        if i == len(lines) and not log_path(pki).read_bytes().endswith(b"\n"):
            raise VerificationError(f"{src}: entry {i} is incomplete: the log was cut short mid-entry")
        e = _parse_entry(line, i, src)
        # 2. sequence
        if e.seq != i:
            if i in seen_seqs:
                raise VerificationError(f"{src}: entry {i}: line {i} holds entry {e.seq}; the entries were reordered")
            raise VerificationError(f"{src}: entry {i} was removed (line {i} holds entry {e.seq})")
        # 3. signed
        if not e.signature or not e.signer:
            raise VerificationError(f"{src}: entry {i} ({e.act}) is not signed")
        # 4. an officer key
        if i == 1:
            if e.act != "log-start":
                raise VerificationError(f"{src}: entry 1 is {e.act!r}, not 'log-start': the start of the log is gone")
            pem = e.params.get("officer_key")
            if not isinstance(pem, str):
                raise VerificationError(f"{src}: entry 1 does not register an officer key")
            try:
                registered = load_public_key_pem(pem.encode(), source=f"{src} entry 1")
            except InvalidInput as exc:
                raise VerificationError(f"{src}: entry 1: the registered officer key is malformed") from exc
            reg_id = spki_sha256(registered)
            if pinned is not None and reg_id not in pinned:
                raise VerificationError(
                    f"{src}: entry 1: the log was started by key {reg_id}, which is not a --trust key"
                )
            if rec is not None and (rec.officer_key_id != reg_id or rec.started != e.time):
                raise VerificationError(
                    f"{src}: entry 1 (started {e.time} by key {reg_id}) is not the log inventory.json records "
                    f"(started {rec.started} by key {rec.officer_key_id}): the log was replaced"
                )
            officer.setdefault(reg_id, registered)
        key = officer.get(e.signer)
        if key is None:
            raise VerificationError(
                f"{src}: entry {i} ({e.act}) is signed by key {e.signer}, which is not "
                + ("a --trust key" if pinned is not None else "the officer key registered in entry 1")
            )
        # 5. signature
        try:
            sig = base64.b64decode(e.signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VerificationError(f"{src}: entry {i} ({e.act}): the signature is not base64") from exc
        try:
            verify_bytes(key, e.signed_bytes(), sig)
        except VerificationError as exc:
            raise VerificationError(
                f"{src}: entry {i} ({e.act}): signature does not verify: the entry was changed after signing"
            ) from exc
        # 6. chain
        if e.prev != prev_hash:
            raise VerificationError(
                f"{src}: entry {i} ({e.act}) does not follow entry {i - 1}: "
                f"entry {i - 1} was changed, replaced or removed"
            )
        prev_hash = e.hash
        entries.append(e)
    notes: list[str] = []
    # 7. the signed head
    _check_head(pki, entries, officer, notes)
    # 8. a head hash from elsewhere
    if want_head is not None:
        want = want_head
        if not any(e.hash == want for e in entries):
            raise VerificationError(
                f"{src}: no entry has hash {want} (the head a bundle or import record carried): "
                "the log was truncated or rewritten"
            )
    # 9. every certificate on disk was recorded
    if check_files:
        _check_files(pki, entries, src)
    if pinned is None:
        notes.append("no --trust key: checked against the officer key the log registers itself")
    return VerifiedLog(tuple(entries), tuple(officer), pinned is not None, tuple(notes))


def _check_head(pki: Path, entries: list[Entry], officer: Mapping[str, PublicKey], notes: list[str]) -> None:
    hp = head_path(pki)
    src = str(hp)
    if not hp.exists():
        raise VerificationError(f"{src}: the signed head is missing: cannot rule out a truncated log")
    try:
        doc = json.loads(hp.read_bytes())
        seq, h, signer, sig = doc["seq"], doc["hash"], doc["signer"], base64.b64decode(doc["signature"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise VerificationError(f"{src}: the signed head is malformed") from exc
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(h, str):
        raise VerificationError(f"{src}: the signed head is malformed")
    key = officer.get(signer) if isinstance(signer, str) else None
    if key is None:
        raise VerificationError(f"{src}: the head is signed by key {signer}, which is not an officer key")
    verify_head = HEAD_DOMAIN + canonical({"hash": h, "seq": seq, "signer": signer})
    try:
        verify_bytes(key, verify_head, sig)
    except VerificationError as exc:
        raise VerificationError(f"{src}: the head's signature does not verify") from exc
    n = len(entries)
    if seq > n:
        raise VerificationError(
            f"{log_path(pki)}: entry {n + 1} is missing: the log ends at entry {n} but its signed head "
            f"names entry {seq}; the log was truncated"
        )
    if entries[seq - 1].hash != h:
        raise VerificationError(f"{src}: entry {seq} does not match the signed head: the log was rewritten")
    if seq < n:  # a crash between writing the log and its head; every entry is still signed
        notes.append(f"the signed head names entry {seq} of {n}: entries after it were written but not headed")


def check_recorded(pki: Path) -> None:
    """Every CA certificate in the folder has its log entry, else :class:`VerificationError` (exit 1).

    Run by every act (after the chain was verified and recovery ran): a CA the log never recorded
    refuses the act until ``audit verify`` passes again.
    """
    src = str(log_path(pki))
    try:
        _check_files(pki, read_entries(pki), src)
    except VerificationError as exc:
        raise VerificationError(f"{exc.message} (refusing every act until 'airgap audit verify' passes)") from exc


def _check_files(pki: Path, entries: list[Entry], src: str) -> None:
    recorded: set[str] = set()
    for e in entries:
        for k, v in e.params.items():
            if k == "existing_certificates" and isinstance(v, list):
                recorded.update(str(x) for x in v)
            elif k.endswith("fingerprint") and isinstance(v, str):
                recorded.add(v)
    for cert_path in _certificates_in(pki):
        fp = fingerprint(load_cert_pem(cert_path.read_bytes(), source=str(cert_path)))
        if fp not in recorded:
            raise VerificationError(
                f"{src}: {cert_path} (sha256 {fp}) has no entry in the log: "
                "the log was truncated or the act was not recorded"
            )


def _certificates_in(pki: Path) -> list[Path]:
    """The CA certificates an act made: the root, the next root, each cluster's ca-cert.pem."""
    return PkiLayout(Path(pki)).issued_certificate_paths()


def existing_certificates(pki: Path) -> list[str]:
    """Fingerprints of the CA certificates already in ``pki`` (for the log-start entry)."""
    if not Path(pki).is_dir():
        return []
    return [fingerprint(load_cert_pem(p.read_bytes(), source=str(p))) for p in _certificates_in(Path(pki))]


def _check_no_secret(params: Mapping[str, Any], where: str = "params") -> None:
    for k, v in params.items():
        lk = k.lower()
        if any(w in lk for w in _SECRET_WORDS) and not lk.endswith(("_key_id", "fingerprint")):
            raise ValueError(f"refusing to log {where}.{k}: it looks like a secret")
        if isinstance(v, str) and "PRIVATE KEY" in v:
            raise ValueError(f"refusing to log {where}.{k}: it holds a private key")
        if isinstance(v, Mapping):
            _check_no_secret(v, f"{where}.{k}")


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
        raise VerificationError(f"{exc.message} (refusing to extend a broken log; see 'airgap audit verify')") from exc
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
    """Append one signed entry for ``act`` and re-sign the head; start the log if there is none.

    Call with the PKI lock held, after :func:`prepare` (pass its result as ``prepared``) and after
    the act succeeded; external callers on a folder that already keeps a log may skip both. ``params`` must
    be JSON values with no secret (refused: ValueError, a programming error). The whole log is
    rewritten atomically, so a crash leaves the old log or the new one, never half a line.
    """
    _check_no_secret(params)
    pki = Path(pki)
    lines = _read_lines(log_path(pki)) if has_log(pki) else []
    todo: list[tuple[str, Mapping[str, Any]]] = []
    if not lines:
        genesis = prepared.genesis if prepared is not None and prepared.genesis is not None else None
        todo.append(("log-start", dict(genesis) if genesis is not None else _genesis_params(pki, officer)))
    todo.append((act, dict(params)))
    last = _append(pki, lines, todo, officer, at)
    # After the log and its head, never before: a crash in between leaves a log without the record
    # (as before the record existed; the next act adds it), never a record without a log.
    if not lines:
        _mark_kept(pki, officer.key_id, last.time)
    else:
        try:
            first = _parse_entry(lines[0], 1, str(log_path(pki)))
        except VerificationError:
            return last  # a broken log (an external caller skipped prepare): nothing to record it by
        key_id = first.params.get("officer_key_id")
        if first.act == "log-start" and isinstance(key_id, str):
            _mark_kept(pki, key_id, first.time)  # a log older than the record: add it now
    return last


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
) -> Entry:
    when = utc_text(at or dt.datetime.now(dt.UTC))
    new: list[bytes] = []
    prev = _sha256(lines[-1]) if lines else GENESIS_PREV
    seq = len(lines) + 1
    last: Entry | None = None
    for a, p in todo:
        body = {"act": a, "params": p, "prev": prev, "seq": seq, "signer": officer.key_id, "time": when}
        sig = base64.b64encode(sign(officer.key, DOMAIN + canonical(body))).decode()
        line = canonical({**body, "signature": sig})
        last = Entry(seq, when, a, p, prev, officer.key_id, sig, line)
        new.append(line)
        prev, seq = last.hash, seq + 1
    assert last is not None
    write_replace(log_path(pki), b"".join(x + b"\n" for x in [*lines, *new]))
    head_body = {"hash": last.hash, "seq": last.seq, "signer": officer.key_id}
    head_sig = base64.b64encode(sign(officer.key, HEAD_DOMAIN + canonical(head_body))).decode()
    write_replace(head_path(pki), canonical({**head_body, "signature": head_sig}) + b"\n")
    return last


__all__ = [
    "ENV_LOG_KEY",
    "Entry",
    "Officer",
    "Prepared",
    "VerifiedLog",
    "canonical",
    "check_not_removed",
    "check_recorded",
    "existing_certificates",
    "has_log",
    "head_hash",
    "load_officer",
    "log_record",
    "prepare",
    "read_entries",
    "record",
    "verify_log",
]
