"""Split custody of the root key: M of N custodians' SLIP-39 shares, each age-encrypted to one custodian.

The root key (``PKI/root-key.pem``, PKCS#8) is encrypted under a passphrase derived from a random
32-byte secret. That secret is split with ``shamir-mnemonic`` (SLIP-39, the reference library, one
group, threshold M of N members) and each member's mnemonic is age-encrypted to one custodian's
recipient as ``PKI/custody/share-K.age`` (K = 1..N, the SLIP-39 member index + 1). The secret itself
is never written anywhere; it exists in memory only while an act runs.

``PKI/custody/custody.json`` (and a copy in ``inventory.json``) records M, N, the SLIP-39 share set
identifier and, per share, its number, file, custodian recipient and the file's SHA-256.

Re-keying (:func:`rekey`) is atomic: the new set and the root key re-encrypted under the new secret
are staged in ``PKI/custody.next/``; the one commit point is the rename of ``custody.next/root-key.pem``
over ``PKI/root-key.pem``. :func:`finish_interrupted` (run under the PKI lock before every act) rolls a
committed re-key forward and an uncommitted one back, so a crash leaves the old set or the new set
working, never neither.

Trust: share files, identity files and custody.json are in the officer's folder but a share file is
still treated as hostile bytes: its hash must match the record, age authenticates it, the decrypted
text must be a SLIP-39 mnemonic of *this* set (identifier, member index, threshold), and every
failure is one :class:`InvalidInput` (exit 3) or :class:`VerificationError` (exit 1) naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyrage  # shamir_mnemonic is imported by the functions that split or combine: no other act loads it

from airgap.core import age
from airgap.core.atomic import fsync_dir, staged_dir, write_new
from airgap.core.canonical import load_json, state_json
from airgap.core.crashpoint import crash_point
from airgap.core.files import read_capped
from airgap.errors import DigestMismatch, InvalidInput, Malformed, Refused, VerificationError, WouldOverwrite

CUSTODY_DIR = "custody"
NEXT_DIR = "custody.next"
OLD_DIR = "custody.old"
RECORD = "custody.json"
ROOT_KEY = "root-key.pem"
SECRET_BYTES = 32
MAX_SHARES = 16  # SLIP-39: at most 16 members in a group
MAX_SHARE_FILE = 16 * 1024
MAX_RECORD_FILE = 256 * 1024
_SPEC_RE = re.compile(r"^\s*(\d{1,2})\s*-?of-?\s*(\d{1,2})\s*$", re.IGNORECASE)


def share_name(number: int) -> str:
    return f"share-{number}.age"


def parse_spec(spec: str) -> tuple[int, int]:
    """``--custody M-of-N`` → (M, N); 2 ≤ M ≤ N ≤ 16 (SLIP-39 forbids 1-of-N with N > 1)."""
    m = _SPEC_RE.match(spec)
    if not m:
        raise InvalidInput(f"--custody {spec!r}: expected M-of-N, e.g. 2-of-3")
    threshold, count = int(m.group(1)), int(m.group(2))
    if not 1 <= count <= MAX_SHARES:
        raise InvalidInput(f"--custody {spec}: N must be 1 to {MAX_SHARES} (SLIP-39)")
    if not 1 <= threshold <= count:
        raise InvalidInput(f"--custody {spec}: M must be between 1 and N")
    if threshold == 1 and count > 1:
        raise InvalidInput(f"--custody {spec}: 1-of-N is one key copied N times; use M of at least 2")
    return threshold, count


def derive_passphrase(secret: bytes) -> bytes:
    """The PKCS#8 passphrase of the root key under custody: the secret in hex (64 ASCII characters).

    openssl opens the key with it too (``-passin pass:HEX``), should the tool be unavailable.
    """
    return secret.hex().encode("ascii")


@dataclass(frozen=True)
class ShareRecord:
    number: int
    file: str
    recipient: str
    sha256: str


@dataclass(frozen=True)
class CustodyRecord:
    """What the inventory records about the current share set (no secret, no mnemonic)."""

    threshold: int
    count: int
    identifier: int
    created_at: str
    shares: tuple[ShareRecord, ...]

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["shares"] = [asdict(s) for s in self.shares]
        return doc

    def to_json(self) -> bytes:
        return state_json({"format": 1, **self.to_doc()})

    @classmethod
    def from_doc(cls, doc: Any, *, source: str) -> CustodyRecord:
        try:
            shares = tuple(
                ShareRecord(int(s["number"]), str(s["file"]), str(s["recipient"]), str(s["sha256"]))
                for s in doc["shares"]
            )
            rec = cls(int(doc["threshold"]), int(doc["count"]), int(doc["identifier"]), str(doc["created_at"]), shares)
        except (TypeError, KeyError, ValueError) as exc:
            raise Malformed(f"{source}: custody record is corrupt") from exc
        numbers = [s.number for s in rec.shares]
        if (
            not 1 <= rec.threshold <= rec.count <= MAX_SHARES
            or numbers != list(range(1, rec.count + 1))
            or any(s.file != f"{CUSTODY_DIR}/{share_name(s.number)}" for s in rec.shares)
        ):
            raise Malformed(f"{source}: custody record is corrupt")
        return rec

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> CustodyRecord:
        doc = load_json(data, what=f"{source}: custody record", invalid="is corrupt")
        return cls.from_doc(doc, source=source)


@dataclass(frozen=True)
class NewSet:
    """A freshly split secret: the passphrase to encrypt the root key with, and the files to write.

    ``files`` maps a share file name to its age ciphertext. Only :func:`write_set` writes them.
    """

    passphrase: bytes
    record: CustodyRecord
    files: tuple[tuple[str, bytes], ...]

    def __repr__(self) -> str:  # never show the passphrase in a traceback or log
        return f"NewSet({self.record.threshold}-of-{self.record.count})"


@dataclass(frozen=True)
class Opened:
    """The root passphrase recovered from shares, and which share numbers took part."""

    passphrase: bytes
    shares: tuple[int, ...]
    record: CustodyRecord

    def __repr__(self) -> str:
        return f"Opened(shares={self.shares})"

    def log_params(self) -> dict[str, Any]:
        """What the ceremony log records about the opening: share numbers, never words."""
        return {
            "custody": {
                "shares": list(self.shares),
                "threshold": self.record.threshold,
                "count": self.record.count,
                "identifier": self.record.identifier,
            }
        }


def _now() -> str:
    from airgap.core import x509 as cx

    return cx.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def split(threshold: int, recipients: Sequence[str], *, secret: bytes | None = None) -> NewSet:
    """Make a random secret (unless given: tests) and split it into ``len(recipients)`` SLIP-39 shares.

    Share K is age-encrypted to ``recipients[K-1]``. Recipients must be distinct (two shares for one
    person defeat the split).
    """
    import shamir_mnemonic
    from shamir_mnemonic.share import Share

    canon = [str(age.parse_recipient(r, source="--custodian")) for r in recipients]
    count = len(canon)
    if count == 0:
        raise InvalidInput("--custody needs one --custodian per share")
    dupes = sorted({r for r in canon if canon.count(r) > 1})
    if dupes:
        raise InvalidInput(f"--custodian {dupes[0]} is given twice: every share needs its own custodian")
    parse_spec(f"{threshold}-of-{count}")
    secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
    groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, count)], secret)
    mnemonics = groups[0]
    identifier = Share.from_mnemonic(mnemonics[0]).identifier
    files: list[tuple[str, bytes]] = []
    shares: list[ShareRecord] = []
    for k, (mnemonic, recipient) in enumerate(zip(mnemonics, canon, strict=True), start=1):
        blob = age.encrypt((mnemonic + "\n").encode("ascii"), [recipient])
        files.append((share_name(k), blob))
        shares.append(ShareRecord(k, f"{CUSTODY_DIR}/{share_name(k)}", recipient, hashlib.sha256(blob).hexdigest()))
    record = CustodyRecord(threshold, count, identifier, _now(), tuple(shares))
    return NewSet(derive_passphrase(secret), record, tuple(files))


def created_params(record: CustodyRecord) -> dict[str, Any]:
    """What the ceremony log records about a new share set: M, N, and who holds which share."""
    return {
        "threshold": record.threshold,
        "count": record.count,
        "identifier": record.identifier,
        "shares": [{"number": s.number, "recipient": s.recipient, "sha256": s.sha256} for s in record.shares],
    }


def _write_into(folder: Path, new: NewSet) -> None:
    for name, blob in new.files:
        write_new(folder / name, blob, mode=0o600)
    write_new(folder / RECORD, new.record.to_json(), mode=0o644)


def write_set(pki: Path, new: NewSet) -> Path:
    """Write ``PKI/custody/`` (shares and record) as one staged folder; refuse if it exists (exit 4)."""
    final = Path(pki) / CUSTODY_DIR
    with staged_dir(final, mode=0o700) as tmp:
        _write_into(tmp, new)
    return final


def has_custody(pki: Path) -> bool:
    return (Path(pki) / CUSTODY_DIR / RECORD).exists() or (Path(pki) / NEXT_DIR).exists()


def folder_in_force(pki: Path) -> Path:
    """The folder whose shares open ``root-key.pem`` now, read only (recovery has not run yet).

    A committed re-key not yet moved into place (``custody.next/`` without ``root-key.pem``) is in
    force from its staged folder; otherwise ``custody/``.
    """
    nxt = Path(pki) / NEXT_DIR
    if nxt.is_dir() and not (nxt / ROOT_KEY).exists() and (nxt / RECORD).exists():
        return nxt
    return Path(pki) / CUSTODY_DIR


def read_record(pki: Path) -> CustodyRecord:
    p = folder_in_force(pki) / RECORD
    if not p.exists():
        raise Refused(f"{p}: this root is not under split custody (ca init --custody M-of-N)")
    return CustodyRecord.from_json(read_capped(p, MAX_RECORD_FILE, "custody record", regular=True), source=str(p))


@dataclass(frozen=True)
class ShareIdentity:
    """One ``--share IDENTITY`` as given: the file and the age identities it holds."""

    path: Path
    identities: tuple[pyrage.x25519.Identity, ...]


def load_share_identity(path: Path, passphrase: bytes | None) -> ShareIdentity:
    """Open a custodian's identity file (``keys new --kind recipient``; maybe passphrase-protected)."""
    return ShareIdentity(Path(path), tuple(age.load_identities(Path(path), passphrase)))


def _read_share(folder: Path, share: ShareRecord) -> bytes:
    p = folder / share_name(share.number)
    blob = read_capped(p, MAX_SHARE_FILE, "custody share")
    if hashlib.sha256(blob).hexdigest() != share.sha256:
        raise DigestMismatch(f"{p}: does not match its SHA-256 in the custody record (replaced or tampered)")
    return blob


def _check_mnemonic(text: bytes, share: ShareRecord, record: CustodyRecord, where: str) -> str:
    import shamir_mnemonic
    from shamir_mnemonic.share import Share

    try:
        mnemonic = " ".join(text.decode("ascii").split())
        parsed = Share.from_mnemonic(mnemonic)
    except (UnicodeDecodeError, shamir_mnemonic.MnemonicError) as exc:
        raise VerificationError(f"{where}: does not hold a valid SLIP-39 share") from exc
    if parsed.identifier != record.identifier:
        raise InvalidInput(
            f"{where}: is a share of another set (identifier {parsed.identifier}, expected {record.identifier})"
        )
    if parsed.index + 1 != share.number or parsed.member_threshold != record.threshold or parsed.group_count != 1:
        raise VerificationError(
            f"{where}: its SLIP-39 share is not share {share.number} of this {record.threshold}-of-{record.count} set"
        )
    return mnemonic


def _mnemonic_of_words(words: str, record: CustodyRecord, source: str) -> tuple[int, str]:
    """A share typed by its custodian: which share number it is, and the normalised mnemonic."""
    import shamir_mnemonic
    from shamir_mnemonic.share import Share

    mnemonic = " ".join(words.lower().split())
    try:
        parsed = Share.from_mnemonic(mnemonic)
    except shamir_mnemonic.MnemonicError as exc:
        raise InvalidInput(f"{source}: not a valid SLIP-39 share (a word or the checksum is wrong)") from exc
    if parsed.identifier != record.identifier or parsed.member_threshold != record.threshold:
        raise InvalidInput(
            f"{source}: is a share of another set, not of this {record.threshold}-of-{record.count} custody"
        )
    number = parsed.index + 1
    if not 1 <= number <= record.count:
        raise InvalidInput(f"{source}: share number {number} is not in this set")
    return number, mnemonic


def collect_shares(
    pki: Path,
    identities: Sequence[ShareIdentity],
    *,
    typed: Sequence[tuple[str, str]] = (),
    record: CustodyRecord | None = None,
) -> dict[int, str]:
    """Decrypt every share the given identities open; return {share number: mnemonic}.

    Each identity is tried against each share file. One that opens none is exit 3 naming the file of
    its own recipient (when it is a custodian of this set) or every share file (when it is not).
    The same share twice counts once. ``typed`` are (source, words) a custodian entered by hand.
    """
    pki = Path(pki)
    record = record or read_record(pki)
    folder = folder_in_force(pki)
    found: dict[int, str] = {}
    for ident in identities:
        opened_any = False
        own = {str(i.to_public()) for i in ident.identities}
        for share in record.shares:
            path = folder / share_name(share.number)
            blob = _read_share(folder, share)
            try:
                text = bytes(pyrage.decrypt(blob, list(ident.identities)))
            except Exception as exc:  # pyrage.DecryptError: not ours, or tampered
                if share.recipient in own:
                    raise VerificationError(
                        f"{path}: cannot be opened with {ident.path} (corrupt or tampered)"
                    ) from exc
                continue
            opened_any = True
            found.setdefault(share.number, _check_mnemonic(text, share, record, str(path)))
        if not opened_any:
            files = ", ".join(str(folder / share_name(s.number)) for s in record.shares)
            raise InvalidInput(
                f"{ident.path}: could not open any custody share ({files}): not a custodian of this root"
            )
    for source, words in typed:
        number, mnemonic = _mnemonic_of_words(words, record, source)
        found.setdefault(number, mnemonic)
    return found


def combine(found: dict[int, str], record: CustodyRecord) -> Opened:
    """Recover the root passphrase from at least M distinct shares (the M lowest numbers are used)."""
    import shamir_mnemonic

    if len(found) < record.threshold:
        have = ", ".join(str(n) for n in sorted(found)) or "none"
        raise InvalidInput(
            f"custody: {len(found)} distinct share(s) given (shares: {have}), {record.threshold} of "
            f"{record.count} needed: {record.threshold - len(found)} more (--share IDENTITY)"
        )
    used = tuple(sorted(found)[: record.threshold])
    try:
        secret = shamir_mnemonic.combine_mnemonics([found[n] for n in used])
    except shamir_mnemonic.MnemonicError as exc:
        raise VerificationError(f"custody: the shares do not combine ({exc})") from exc
    return Opened(derive_passphrase(secret), used, record)


def open_root_passphrase(
    pki: Path, identities: Sequence[ShareIdentity], *, typed: Sequence[tuple[str, str]] = ()
) -> Opened:
    """The root key's passphrase from M custodians' shares (see :func:`collect_shares`)."""
    record = read_record(pki)
    return combine(collect_shares(pki, identities, typed=typed, record=record), record)


# -- re-key --------------------------------------------------------------------------------------


def stage_rekey(pki: Path, new: NewSet, root_key_pem: bytes) -> Path:
    """Stage the new set and the re-encrypted root key in ``PKI/custody.next/`` (not yet in force)."""
    final = Path(pki) / NEXT_DIR
    with staged_dir(final, mode=0o700) as tmp:
        _write_into(tmp, new)
        write_new(tmp / ROOT_KEY, root_key_pem, mode=0o600)
    return final


def commit_rekey(pki: Path) -> None:
    """The commit point: the re-encrypted root key replaces ``PKI/root-key.pem`` (one rename)."""
    pki = Path(pki)
    crash_point()
    os.replace(pki / NEXT_DIR / ROOT_KEY, pki / ROOT_KEY)
    fsync_dir(pki)
    fsync_dir(pki / NEXT_DIR)


def staged_record(pki: Path) -> CustodyRecord | None:
    """The record of a staged re-key (``custody.next/``), or None."""
    p = Path(pki) / NEXT_DIR / RECORD
    if not p.exists():
        return None
    return CustodyRecord.from_json(read_capped(p, MAX_RECORD_FILE, "custody record", regular=True), source=str(p))


def finish_interrupted(pki: Path, recorded: Callable[[CustodyRecord], bool] | None = None) -> str | None:
    """Roll an interrupted re-key forward or back; say what was done (None: nothing to do).

    Committed (the re-encrypted key is in place): forward. Not committed: forward when ``recorded``
    says the ceremony log already has the re-key (the log is the record), else back. Idempotent
    at every step; called with the PKI lock held (by :func:`airgap.offline.recovery.recover`).
    """
    pki = Path(pki)
    nxt, cur, old = pki / NEXT_DIR, pki / CUSTODY_DIR, pki / OLD_DIR
    outcome = None
    if nxt.is_dir() and (nxt / ROOT_KEY).exists():
        staged = staged_record(pki)
        if staged is not None and recorded is not None and recorded(staged):
            commit_rekey(pki)
            outcome = "recorded in the log but not committed: finished, the new share set is in force"
        else:
            shutil.rmtree(nxt)  # never committed nor recorded: the old set still opens root-key.pem
            fsync_dir(pki)
            return "never recorded: undone, the previous share set stays in force"
    if nxt.is_dir():
        if cur.is_dir():
            if old.exists():
                shutil.rmtree(old)
            crash_point()
            os.rename(cur, old)
        crash_point()
        os.rename(nxt, cur)
        fsync_dir(pki)
        outcome = outcome or "committed: finished, the new share set is in force"
    if old.exists():
        shutil.rmtree(old)
        fsync_dir(pki)
        outcome = outcome or "committed: the previous share set was removed"
    return outcome


def check_no_leftover(pki: Path) -> None:
    """Before ``ca init --custody``: refuse a folder that already has custody files (exit 4)."""
    for name in (CUSTODY_DIR, NEXT_DIR, OLD_DIR):
        p = Path(pki) / name
        if p.exists() or p.is_symlink():
            raise WouldOverwrite(f"{p}: already exists; refusing to overwrite custody shares")


def remove_set(pki: Path) -> None:
    """Undo :func:`write_set` when the root it was made for could not be written."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(Path(pki) / CUSTODY_DIR)


__all__ = [
    "CustodyRecord",
    "NewSet",
    "Opened",
    "ShareIdentity",
    "ShareRecord",
    "collect_shares",
    "combine",
    "commit_rekey",
    "derive_passphrase",
    "finish_interrupted",
    "load_share_identity",
    "open_root_passphrase",
    "parse_spec",
    "split",
    "stage_rekey",
    "write_set",
]
