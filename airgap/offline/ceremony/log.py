"""The ceremony log's entries, pure: parse, sign and verify them from bytes. No file is read here.

The format (see :mod:`airgap.offline.ceremony` for the files and the whole story): one line of
canonical JSON per entry, hash-chained by ``prev``, each signed over ``DOMAIN`` + the entry without
``signature``; the head file is ``HEAD_DOMAIN`` + ``{"hash", "seq", "signer"}`` signed.

Trust: every byte given to these functions is untrusted; they return verified values or raise
:class:`~airgap.errors.VerificationError` naming the first bad entry.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airgap.core.canonical import canonical_json, load_json
from airgap.core.keys import PrivateKey, PublicKey, load_public_key_pem, sign, spki_sha256
from airgap.core.limits import MAX_LOG_BYTES
from airgap.core.signatures import verify_bytes
from airgap.errors import AirgapError, DigestMismatch, InvalidInput, LogTampered, SignatureMismatch, VerificationError
from airgap.offline.inventory import CeremonyLogRecord

DOMAIN = b"airgap-ceremony-log-v1\n"
HEAD_DOMAIN = b"airgap-ceremony-head-v1\n"
GENESIS_PREV = "0" * 64
ENTRY_FIELDS = frozenset({"act", "params", "prev", "seq", "signature", "signer", "time"})
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
    # Facts every entry this officer records names (not ``log-start``): what opened the root for
    # the act, e.g. the custody shares that took part (``offline.root.open_root`` sets them).
    annotations: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_key(cls, key: PrivateKey) -> Officer:
        return cls(key, spki_sha256(key))


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


def check_head_hash(value: str) -> str:
    """A head hash given by a user (``--head``): 64 hex digits, else :class:`InvalidInput` (exit 3)."""
    want = value.strip().lower()
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise InvalidInput(
            f"--head {value!r}: not a head hash (64 hexadecimal digits, as a bundle or import record shows)"
        )
    return want


def parse_entry(line: bytes, lineno: int, source: str) -> Entry:
    doc = load_json(
        line,
        what=f"{source}: entry at line {lineno}",
        max_bytes=MAX_LOG_BYTES,
        error=lambda message: LogTampered(message, entry=lineno),
        invalid="is not valid JSON (changed or cut short)",
    )
    if not isinstance(doc, dict) or set(doc) - ENTRY_FIELDS or {"act", "params", "prev", "seq", "time"} - set(doc):
        raise LogTampered(f"{source}: entry at line {lineno} does not have the entry fields", entry=lineno)
    seq, params = doc["seq"], doc["params"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(params, dict):
        raise LogTampered(f"{source}: entry at line {lineno} has a malformed seq or params", entry=lineno)
    for k in ("act", "prev", "time"):
        if not isinstance(doc[k], str):
            raise LogTampered(f"{source}: entry at line {lineno} has a malformed {k}", entry=lineno)
    signer, signature = doc.get("signer", ""), doc.get("signature", "")
    if not isinstance(signer, str) or not isinstance(signature, str):
        raise SignatureMismatch(f"{source}: entry at line {lineno} has a malformed signature", entry=lineno)
    return Entry(seq, doc["time"], doc["act"], params, doc["prev"], signer, signature, line)


def _keys_from(trust: Sequence[PublicKey]) -> dict[str, PublicKey]:
    return {spki_sha256(k): k for k in trust}


def check_no_secret(params: Mapping[str, Any], where: str = "params") -> None:
    for k, v in params.items():
        lk = k.lower()
        if any(w in lk for w in _SECRET_WORDS) and not lk.endswith(("_key_id", "fingerprint")):
            raise ValueError(f"refusing to log {where}.{k}: it looks like a secret")
        if isinstance(v, str) and "PRIVATE KEY" in v:
            raise ValueError(f"refusing to log {where}.{k}: it holds a private key")
        if isinstance(v, Mapping):
            check_no_secret(v, f"{where}.{k}")


def split_lines(data: bytes) -> list[bytes]:
    """The log's lines without newlines; an incomplete last line is kept so verification can name it."""
    if not data:
        return []
    lines = data.split(b"\n")
    return lines if lines[-1] != b"" else lines[:-1]


def parse_entries(data: bytes, *, source: str) -> list[Entry]:
    """Every entry of a log, parsed but NOT verified (for ``audit show``); malformed lines raise."""
    return [parse_entry(line, i, source) for i, line in enumerate(split_lines(data), 1)]


def _seqs_present(lines: Sequence[bytes], src: str) -> set[int]:
    """Which seq numbers appear anywhere, to tell "removed" from "reordered" in step 2."""
    seen: set[int] = set()
    for ln in lines:
        try:
            s = load_json(ln, what=src, max_bytes=MAX_LOG_BYTES).get("seq")
        except (AirgapError, AttributeError):
            continue
        if isinstance(s, int):
            seen.add(s)
    return seen


def _registered_officer(
    e: Entry, src: str, pinned: Mapping[str, PublicKey] | None, rec: CeremonyLogRecord | None
) -> tuple[str, PublicKey]:
    """Step 4 for entry 1: the ``log-start`` and the officer key it registers (checked against pins and record)."""
    if e.act != "log-start":
        raise LogTampered(f"{src}: entry 1 is {e.act!r}, not 'log-start': the start of the log is gone", entry=1)
    pem = e.params.get("officer_key")
    if not isinstance(pem, str):
        raise LogTampered(f"{src}: entry 1 does not register an officer key", entry=1)
    try:
        registered = load_public_key_pem(pem.encode(), source=f"{src} entry 1")
    except InvalidInput as exc:
        raise LogTampered(f"{src}: entry 1: the registered officer key is malformed", entry=1) from exc
    reg_id = spki_sha256(registered)
    if pinned is not None and reg_id not in pinned:
        raise LogTampered(f"{src}: entry 1: the log was started by key {reg_id}, which is not a --trust key", entry=1)
    if rec is not None and (rec.officer_key_id != reg_id or rec.started != e.time):
        raise LogTampered(
            f"{src}: entry 1 (started {e.time} by key {reg_id}) is not the log inventory.json records "
            f"(started {rec.started} by key {rec.officer_key_id}): the log was replaced",
            entry=1,
        )
    return reg_id, registered


def _check_signature(e: Entry, i: int, src: str, key: PublicKey) -> None:
    """Step 5: the entry's signature, by ``key``, over its signed bytes."""
    try:
        sig = base64.b64decode(e.signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureMismatch(f"{src}: entry {i} ({e.act}): the signature is not base64", entry=i) from exc
    try:
        verify_bytes(key, e.signed_bytes(), sig)
    except VerificationError as exc:
        raise SignatureMismatch(
            f"{src}: entry {i} ({e.act}): signature does not verify: the entry was changed after signing", entry=i
        ) from exc


def _check_place(e: Entry, i: int, src: str, seen_seqs: set[int]) -> None:
    """Steps 2 and 3: the entry sits at its own line, and is signed."""
    if e.seq != i:
        if i in seen_seqs:
            raise LogTampered(f"{src}: entry {i}: line {i} holds entry {e.seq}; the entries were reordered", entry=i)
        raise LogTampered(f"{src}: entry {i} was removed (line {i} holds entry {e.seq})", entry=i)
    if not e.signature or not e.signer:
        raise LogTampered(f"{src}: entry {i} ({e.act}) is not signed", entry=i)


def verify_entries(
    data: bytes,
    *,
    source: str,
    trust: Sequence[PublicKey] | None,
    record: CeremonyLogRecord | None,
) -> tuple[list[Entry], dict[str, PublicKey]]:
    """Steps 1-6 of :func:`airgap.offline.ceremony.verify_log` over the log's bytes.

    Returns the entries and the officer keys (key id → key): the ``trust`` keys, or without them the
    key entry 1 registers. ``record`` is what ``inventory.json`` says started the log (or None).
    """
    src = source
    lines = split_lines(data)
    if not lines:
        raise LogTampered(f"{src}: the ceremony log is empty")
    pinned = _keys_from(trust) if trust else None
    officer: dict[str, PublicKey] = dict(pinned or {})
    seen_seqs = _seqs_present(lines, src)
    entries: list[Entry] = []
    prev_hash = GENESIS_PREV
    for i, line in enumerate(lines, start=1):
        if i == len(lines) and not data.endswith(b"\n"):  # 1. complete JSON, the entry fields
            raise LogTampered(f"{src}: entry {i} is incomplete: the log was cut short mid-entry", entry=i)
        e = parse_entry(line, i, src)
        _check_place(e, i, src, seen_seqs)  # 2. sequence, 3. signed
        if i == 1:  # 4. an officer key
            reg_id, registered = _registered_officer(e, src, pinned, record)
            officer.setdefault(reg_id, registered)
        key = officer.get(e.signer)
        if key is None:
            raise LogTampered(
                f"{src}: entry {i} ({e.act}) is signed by key {e.signer}, which is not "
                + ("a --trust key" if pinned is not None else "the officer key registered in entry 1"),
                entry=i,
            )
        _check_signature(e, i, src, key)  # 5. signature
        if e.prev != prev_hash:  # 6. chain
            raise LogTampered(
                f"{src}: entry {i} ({e.act}) does not follow entry {i - 1}: "
                f"entry {i - 1} was changed, replaced or removed",
                entry=i,
            )
        prev_hash = e.hash
        entries.append(e)
    return entries, officer


def check_head(
    head: bytes | None,
    entries: Sequence[Entry],
    officer: Mapping[str, PublicKey],
    *,
    head_source: str,
    log_source: str,
) -> str | None:
    """Step 7: the signed head (the head file's bytes, None when it is missing) names the last entry.

    Returns a note when the head names an earlier entry (a crash between writing the log and its head).
    """
    src = head_source
    if head is None:
        raise LogTampered(f"{src}: the signed head is missing: cannot rule out a truncated log")
    doc = load_json(head, what=f"{src}: the signed head", error=LogTampered, invalid="is malformed")
    try:
        seq, h, signer, sig = doc["seq"], doc["hash"], doc["signer"], base64.b64decode(doc["signature"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise LogTampered(f"{src}: the signed head is malformed") from exc
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(h, str):
        raise LogTampered(f"{src}: the signed head is malformed")
    key = officer.get(signer) if isinstance(signer, str) else None
    if key is None:
        raise LogTampered(f"{src}: the head is signed by key {signer}, which is not an officer key")
    try:
        verify_bytes(key, head_signed_bytes(h, seq, signer), sig)
    except VerificationError as exc:
        raise SignatureMismatch(f"{src}: the head's signature does not verify") from exc
    n = len(entries)
    if seq > n:
        raise LogTampered(
            f"{log_source}: entry {n + 1} is missing: the log ends at entry {n} but its signed head "
            f"names entry {seq}; the log was truncated",
            entry=n + 1,
        )
    if entries[seq - 1].hash != h:
        raise LogTampered(f"{src}: entry {seq} does not match the signed head: the log was rewritten", entry=seq)
    if seq < n:  # a crash between writing the log and its head; every entry is still signed
        return f"the signed head names entry {seq} of {n}: entries after it were written but not headed"
    return None


def check_expect_head(entries: Sequence[Entry], want: str, *, source: str) -> None:
    """Step 8: a head hash kept elsewhere is the hash of some entry."""
    if not any(e.hash == want for e in entries):
        raise LogTampered(
            f"{source}: no entry has hash {want} (the head a bundle or import record carried): "
            "the log was truncated or rewritten"
        )


def recorded_fingerprints(entries: Iterable[Entry]) -> set[str]:
    """Every certificate fingerprint the log records (existing at its start, or made by an act)."""
    recorded: set[str] = set()
    for e in entries:
        for k, v in e.params.items():
            if k == "existing_certificates" and isinstance(v, list):
                recorded.update(str(x) for x in v)
            elif k.endswith("fingerprint") and isinstance(v, str):
                recorded.add(v)
    return recorded


INTERMEDIATE_ACTS = ("issue", "sign", "rotate")


def current_intermediates(entries: Iterable[Entry]) -> dict[str, str]:
    """Cluster → fingerprint of its current intermediate as the log records it: the last ``issue``,
    ``sign`` or ``rotate`` entry for the cluster, unless a later ``recover`` entry says that
    intermediate was never published (its act was undone)."""
    current: dict[str, str] = {}
    for e in entries:
        p = e.params
        cluster, fp = p.get("cluster"), p.get("fingerprint")
        if not isinstance(cluster, str) or not isinstance(fp, str):
            continue
        if e.act in INTERMEDIATE_ACTS:
            current[cluster] = fp
        elif e.act == "recover" and "never published" in str(p.get("outcome")) and current.get(cluster) == fp:
            del current[cluster]
    return current


def current_roots(entries: Iterable[Entry]) -> tuple[str | None, str | None]:
    """(root, next root) fingerprints as the log records them (None: the log does not say): ``init``
    or ``adopt`` makes the root; ``root-rotation-begin`` the next root, unless a ``recover`` entry
    says it was never published; ``root-rotation-finish`` (or the recovery that finished one) makes
    the next root the root."""
    root: str | None = None
    nxt: str | None = None
    for e in entries:
        fp = e.params.get("fingerprint")
        if not isinstance(fp, str):
            continue
        if e.act in ("init", "adopt") and e.params.get("role") == "root":
            root, nxt = fp, None
        elif e.act == "root-rotation-begin":
            nxt = fp
        elif e.act == "root-rotation-finish" or (
            e.act == "recover" and e.params.get("interrupted") == "rotate-root --finish"  # recovery finished it
        ):
            root, nxt = fp, None
        elif e.act == "recover" and "never published" in str(e.params.get("outcome")) and fp == nxt:
            nxt = None
    return root, nxt


def check_certificates(entries: Iterable[Entry], certificates: Iterable[tuple[str, str]], *, source: str) -> None:
    """Step 9: every (path, fingerprint) of a CA certificate in the folder was recorded."""
    recorded = recorded_fingerprints(entries)
    for where, fp in certificates:
        if fp not in recorded:
            raise DigestMismatch(
                f"{source}: {where} (sha256 {fp}) has no entry in the log: "
                "the log was truncated or the act was not recorded"
            )


def head_signed_bytes(hash_: str, seq: int, signer: str) -> bytes:
    return HEAD_DOMAIN + canonical({"hash": hash_, "seq": seq, "signer": signer})


def sign_entries(
    last_line: bytes | None, seq: int, todo: Sequence[tuple[str, Mapping[str, Any]]], officer: Officer, when: str
) -> tuple[list[Entry], bytes]:
    """Sign the entries ``todo`` following ``last_line`` (None: the log starts); returns the new
    entries (their ``line`` is what the log gets) and the signed head's bytes (with its newline)."""
    new: list[Entry] = []
    prev = _sha256(last_line) if last_line is not None else GENESIS_PREV
    for a, p in todo:
        body = {"act": a, "params": p, "prev": prev, "seq": seq, "signer": officer.key_id, "time": when}
        sig = base64.b64encode(sign(officer.key, DOMAIN + canonical(body))).decode()
        entry = Entry(seq, when, a, p, prev, officer.key_id, sig, canonical({**body, "signature": sig}))
        new.append(entry)
        prev, seq = entry.hash, seq + 1
    last = new[-1]
    head_body = {"hash": last.hash, "seq": last.seq, "signer": officer.key_id}
    head_sig = base64.b64encode(sign(officer.key, head_signed_bytes(last.hash, last.seq, officer.key_id))).decode()
    return new, canonical({**head_body, "signature": head_sig}) + b"\n"


__all__ = [
    "DOMAIN",
    "GENESIS_PREV",
    "HEAD_DOMAIN",
    "Entry",
    "Officer",
    "VerifiedLog",
    "canonical",
    "check_certificates",
    "check_expect_head",
    "check_head",
    "check_head_hash",
    "check_no_secret",
    "current_intermediates",
    "current_roots",
    "parse_entries",
    "parse_entry",
    "recorded_fingerprints",
    "sign_entries",
    "split_lines",
    "verify_entries",
]
