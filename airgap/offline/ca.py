"""The CA store on the root host: root, per-cluster intermediates, and the inventory.

Layout (Istio-compatible, see the contract)::

    PKI/root-cert.pem  PKI/root-key.pem (0600)  PKI/inventory.json
    PKI/<cluster>/ca-cert.pem ca-key.pem (0600) cert-chain.pem root-cert.pem

The root key is ``root-key.pem`` or, for a key held in a PKCS#11 token, the reference
``root-key.pkcs11.json`` (see :mod:`airgap.offline.pkcs11`). When the folder keeps a ceremony log
(``ceremony.log``, see :mod:`airgap.offline.ceremony`) every act must be given the officer's log key
and is recorded; an act on a logged folder without it is refused before anything changes.

Trust: the PKI folder is the officer's own and trusted; the passphrase protects the keys at rest.
Every write is atomic and never replaces a key or certificate; a cluster folder is built beside its
final name and renamed into place only when complete, so a killed run leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from airgap.core import x509 as cx
from airgap.core.atomic import ensure_dir, remove_stale_temps, staged_dir, write_new, write_replace
from airgap.core.keys import (
    KeyType,
    PrivateKey,
    encode_private_key,
    generate_private_key,
    key_type_of,
    keys_match,
    load_private_key,
    load_public_key_pem,
    spki_sha256,
)
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.errors import InvalidInput, Refused
from airgap.offline import ceremony, custody
from airgap.offline.ceremony import Officer
from airgap.offline.custody import CustodyRecord, NewSet

ROOT_CERT = "root-cert.pem"
ROOT_KEY = "root-key.pem"
INVENTORY = "inventory.json"
CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")
RESERVED_NAMES = frozenset({"state", "log", "keys", "ceremony", "crl", "root", "backup", "archive", "next-root"})
# A Kubernetes label value (it is also a folder name and the L= of the intermediate).
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def check_cluster_name(name: str) -> str:
    """A cluster name must be a Kubernetes label value (≤ 63 chars, alphanumerics, ``-_.``)."""
    if not _CLUSTER_RE.match(name) or name.lower() in RESERVED_NAMES or name.endswith((".pem", ".json")):
        raise InvalidInput(
            f"cluster name {name!r} is not valid: use 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (a Kubernetes label value)"
        )
    return name


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
        return cls(
            serial=format(cert.serial_number, "x"),
            fingerprint=cx.fingerprint(cert),
            subject=cert.subject.rfc4514_string(),
            not_before=_iso(cert.not_valid_before_utc),
            not_after=_iso(cert.not_valid_after_utc),
            key_type=key_type_of(cert.public_key()),  # type: ignore[arg-type]
            created_at=_iso(cx.now()),
        )


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

    def to_json(self) -> bytes:
        doc: dict[str, object] = {
            "format": 1,
            "root": asdict(self.root) if self.root else None,
            "intermediates": [asdict(i) for i in self.intermediates],
        }
        if self.ceremony_log is not None:  # absent (not null) in a folder without a log, as before
            doc["ceremony_log"] = asdict(self.ceremony_log)
        if self.custody is not None:  # absent in a folder whose root is not under split custody
            doc["custody"] = self.custody.to_doc()
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Inventory:
        """Parse ``inventory.json``; an inventory written before ``ceremony_log`` existed reads as None."""
        try:
            doc = json.loads(data)
            root = RootRecord(**doc["root"]) if doc.get("root") else None
            inter = [IntermediateRecord(**i) for i in doc.get("intermediates", [])]
            log = CeremonyLogRecord(**doc["ceremony_log"]) if doc.get("ceremony_log") is not None else None
            if log is not None and not (isinstance(log.officer_key_id, str) and isinstance(log.started, str)):
                raise TypeError("ceremony_log")
            held = CustodyRecord.from_doc(doc["custody"], source=source) if doc.get("custody") is not None else None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidInput(f"{source}: inventory is corrupt") from exc
        return cls(root, inter, log, held)


@dataclass(frozen=True)
class IntermediateStatus:
    """What ``ca list`` reports for one intermediate; key_check is passed/failed/skipped."""

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


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cert_params(cert: x509.Certificate, **extra: str) -> dict[str, str]:
    """What the ceremony log records about a certificate: public facts only."""
    return {
        **extra,
        "serial": format(cert.serial_number, "x"),
        "fingerprint": cx.fingerprint(cert),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": _iso(cert.not_valid_before_utc),
        "not_after": _iso(cert.not_valid_after_utc),
        "key_id": spki_sha256(cert.public_key()),  # type: ignore[arg-type]
        "key_type": key_type_of(cert.public_key()),  # type: ignore[arg-type]
    }


def _make_key(key_type: KeyType, passphrase: bytes | None) -> tuple[bytes, bytes]:
    """Worker: generate and encrypt one key; returns (encrypted PKCS#8 PEM, SPKI PEM).

    Runs in a pool process: RSA generation and the PBKDF2 work dominate, so they use every core.
    """
    key = generate_private_key(key_type)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return encode_private_key(key, passphrase), pub


class CAStore:
    """One PKI folder. Methods take the passphrase explicitly; nothing is cached on the object."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def root_cert_path(self) -> Path:
        return self.path / ROOT_CERT

    @property
    def root_key_path(self) -> Path:
        return self.path / ROOT_KEY

    @property
    def inventory_path(self) -> Path:
        return self.path / INVENTORY

    def cluster_dir(self, cluster: str) -> Path:
        return self.path / check_cluster_name(cluster)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the PKI folder, so two runs never interleave their writes."""
        ensure_dir(self.path, mode=0o700)
        try:
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError as exc:
            raise InvalidInput(f"{self.path}: folder is not writable") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            remove_stale_temps(self.path)
            from airgap.offline.rotate import finish_interrupted

            finish_interrupted(self)
            held = custody.finish_interrupted(self.path)  # an interrupted 'ca custody rekey'
            if held is not None and self.read_inventory().custody != held:
                inv = self.read_inventory()
                inv.custody = held
                self._write_inventory(inv)
            yield
        finally:
            os.close(fd)

    # -- inventory ------------------------------------------------------------------------------
    def read_inventory(self) -> Inventory:
        if not self.inventory_path.exists():
            return Inventory()
        return Inventory.from_json(self.inventory_path.read_bytes(), source=str(self.inventory_path))

    def _write_inventory(self, inv: Inventory) -> None:
        write_replace(self.inventory_path, inv.to_json())

    # -- root -----------------------------------------------------------------------------------
    @property
    def root_key_ref_path(self) -> Path:
        from airgap.offline.pkcs11 import REF_NAME

        return self.path / REF_NAME

    def init_root(
        self,
        *,
        key_type: KeyType,
        days: int,
        org: str,
        cn: str,
        passphrase: bytes | None,
        officer: Officer | None = None,
        root_key: PrivateKey | None = None,
        key_record: bytes | None = None,
        key_params: dict[str, str] | None = None,
        custody_set: NewSet | None = None,
    ) -> RootRecord:
        """Create the root key and self-signed root certificate; refuse if either exists (exit 4).

        With ``custody_set`` (split custody, :mod:`airgap.offline.custody`) the root key is encrypted
        under the set's secret instead of ``passphrase`` (which must be None) and ``PKI/custody/`` is
        written first; if the root cannot be written the shares are removed again.

        With ``root_key`` (a key already in a PKCS#11 token) no key file is written: ``key_record``
        (the token reference, no secret) is written as ``root-key.pkcs11.json`` instead, and
        ``key_params`` describe the key in the log. With ``officer`` the acts are logged.
        """
        if days <= 0:
            raise InvalidInput("--days must be positive")
        for p in (self.root_key_path, self.root_cert_path, self.root_key_ref_path):
            if p.exists():
                raise Refused(f"{p}: already exists; refusing to overwrite the root")
        if custody_set is not None and (passphrase is not None or root_key is not None):
            raise InvalidInput("split custody protects a file-held root key; it takes no PKI passphrase")
        with self.locked():
            prep = ceremony.prepare(self.path, officer)
            key = root_key if root_key is not None else generate_private_key(key_type)
            cert = cx.build_root(key, org=org, cn=cn, days=days)
            if custody_set is not None:
                custody.check_no_leftover(self.path)
                custody.write_set(self.path, custody_set)
                passphrase = custody_set.passphrase
            try:
                if root_key is None:
                    write_new(self.root_key_path, encode_private_key(key, passphrase), mode=0o600)
                    key_file = self.root_key_path
                else:
                    write_new(self.root_key_ref_path, key_record or b"{}\n")
                    key_file = self.root_key_ref_path
                try:
                    write_new(self.root_cert_path, cx.cert_pem(cert))
                except BaseException:
                    key_file.unlink(missing_ok=True)
                    raise
            except BaseException:
                if custody_set is not None:
                    custody.remove_set(self.path)
                raise
            record = RootRecord.of(cert)
            inv = self.read_inventory()
            inv.root = record
            inv.custody = custody_set.record if custody_set is not None else None
            self._write_inventory(inv)
            if officer is not None:
                storage: dict[str, object] = dict(key_params or {"storage": "file", "file": ROOT_KEY})
                if custody_set is not None:
                    storage["custody_set"] = custody.created_params(custody_set.record)
                ceremony.record(
                    self.path,
                    "key-create",
                    {"purpose": "root", "key_type": record.key_type, "key_id": spki_sha256(key), **storage},
                    officer,
                    prepared=prep,
                )
                ceremony.record(self.path, "init", _cert_params(cert, role="root"), officer, prepared=prep)
        return record

    def load_root_cert(self) -> x509.Certificate:
        if not self.root_cert_path.exists():
            raise Refused(f"{self.root_cert_path}: no root here; run 'airgap ca init --dir {self.path}' first")
        return cx.load_cert_pem(self.root_cert_path.read_bytes(), source=str(self.root_cert_path))

    def load_root(
        self, passphrase: bytes | None, root_key: PrivateKey | None = None
    ) -> tuple[x509.Certificate, PrivateKey]:
        """The root certificate and its key: ``root_key`` (a token key) when given, else root-key.pem."""
        cert = self.load_root_cert()
        if root_key is not None:
            if not keys_match(root_key, cert.public_key()):  # type: ignore[arg-type]
                raise InvalidInput(f"the token key {spki_sha256(root_key)} does not match {self.root_cert_path}")
            return cert, root_key
        if not self.root_key_path.exists():
            if self.root_key_ref_path.exists():
                raise InvalidInput(
                    f"{self.root_key_ref_path}: the root key is in a PKCS#11 token; "
                    "give the token PIN (--pin-file or $AIRGAP_PKCS11_PIN)"
                )
            raise Refused(f"{self.root_key_path}: root key is missing")
        key = load_private_key(self.root_key_path, passphrase)
        if not keys_match(key, cert.public_key()):  # type: ignore[arg-type]
            raise InvalidInput(f"{self.root_key_path}: does not match {self.root_cert_path}")
        return cert, key

    def root_in_token(self) -> bool:
        """True when the root key is held in a PKCS#11 token (``root-key.pkcs11.json``)."""
        return self.root_key_ref_path.exists() and not self.root_key_path.exists()

    # -- intermediates --------------------------------------------------------------------------
    def issue(
        self,
        clusters: Sequence[str],
        *,
        key_type: KeyType,
        days: int,
        org: str,
        cn: str,
        sans: Sequence[str],
        passphrase: bytes | None,
        key_passphrase: bytes | None,
        workers: int | None = None,
        officer: Officer | None = None,
        root_key: PrivateKey | None = None,
        progress: Progress = NO_PROGRESS,
    ) -> list[IntermediateRecord]:
        """Issue one intermediate per cluster, every check done before any key is made.

        ``passphrase`` opens the root key (or ``root_key``, a token key, signs); ``key_passphrase``
        encrypts the new keys (None: plain). Keys are generated in a process pool (``workers``,
        default: every core). With ``officer`` each cluster's issue is logged.
        """
        if not clusters:
            raise InvalidInput("name at least one cluster")
        if days <= 0:
            raise InvalidInput("--days must be positive")
        names = [check_cluster_name(c) for c in clusters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidInput(f"cluster named twice: {', '.join(dupes)}")
        cx.validate_sans(list(sans))
        with self.locked():
            prep = ceremony.prepare(self.path, officer)
            root_cert, signing_key = self.load_root(passphrase, root_key)
            cx.check_within_root(root_cert, days)
            for n in names:
                if (self.path / n).exists():
                    raise Refused(f"{self.path / n}: already exists; refusing to overwrite (rotation: see 'ca rotate')")
            n_workers = max(1, min(len(names), workers or os.cpu_count() or 1))
            made: list[tuple[bytes, bytes]] = []
            progress.start(f"generating {len(names)} {key_type} keys", len(names))
            try:
                if n_workers == 1:
                    for _ in names:
                        made.append(_make_key(key_type, key_passphrase))
                        progress.advance(1)
                else:
                    with ProcessPoolExecutor(max_workers=n_workers) as pool:
                        for m in pool.map(_make_key, [key_type] * len(names), [key_passphrase] * len(names)):
                            made.append(m)
                            progress.advance(1)
            finally:
                progress.finish()
            inv = self.read_inventory()
            records: list[IntermediateRecord] = []
            for name, (key_pem, pub_pem) in zip(names, made, strict=True):
                pub = load_public_key_pem(pub_pem, source=name)
                cert = cx.build_intermediate(
                    pub,
                    cluster=name,
                    root_cert=root_cert,
                    root_key=signing_key,
                    org=org,
                    cn=cn,
                    days=days,
                    sans=list(sans),
                )
                self.write_cluster(self.path / name, key_pem, cert, root_cert)
                record = self._record_of(name, cert, root_cert)
                inv.intermediates.append(record)
                self._write_inventory(inv)  # after each cluster: the record never lags the disk
                if officer is not None:
                    ceremony.record(self.path, "issue", _cert_params(cert, cluster=name), officer, prepared=prep)
                records.append(record)
        return records

    @property
    def next_root_dir(self) -> Path:
        return self.path / "next-root"

    def trust_pem(self) -> bytes:
        """The roots a cluster must trust now: the root, plus the next root during a root rotation."""
        pem = cx.cert_pem(self.load_root_cert())
        nxt = self.next_root_dir / ROOT_CERT
        if nxt.exists():
            pem += cx.cert_pem(cx.load_cert_pem(nxt.read_bytes(), source=str(nxt)))
        return pem

    def write_cluster(self, final: Path, key_pem: bytes, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        """Build a cluster folder beside ``final`` and rename it into place when complete.

        ``cert-chain.pem`` is the intermediate then its issuing root; ``root-cert.pem`` is
        :meth:`trust_pem` (both roots during a root rotation); ``ca-crl.pem`` is the current CRL.
        """
        ca_pem = cx.cert_pem(cert)
        crl = self.path / "ca-crl.pem"
        with staged_dir(final, mode=0o700) as tmp:
            write_new(tmp / "ca-key.pem", key_pem, mode=0o600)
            write_new(tmp / "ca-cert.pem", ca_pem)
            write_new(tmp / "cert-chain.pem", ca_pem + cx.cert_pem(issuer))
            write_new(tmp / "root-cert.pem", self.trust_pem())
            if crl.exists():
                write_new(tmp / "ca-crl.pem", crl.read_bytes())

    def _record_of(self, name: str, cert: x509.Certificate, root_cert: x509.Certificate) -> IntermediateRecord:
        return IntermediateRecord(
            cluster=name,
            serial=format(cert.serial_number, "x"),
            fingerprint=cx.fingerprint(cert),
            subject=cert.subject.rfc4514_string(),
            not_before=_iso(cert.not_valid_before_utc),
            not_after=_iso(cert.not_valid_after_utc),
            key_type=key_type_of(cert.public_key()),  # type: ignore[arg-type]
            issued_at=_iso(cx.now()),
            root_fingerprint=cx.fingerprint(root_cert),
        )

    def clusters(self) -> list[str]:
        """Cluster folders that hold a ``ca-cert.pem``, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "ca-cert.pem").exists()
        )

    def status(self, passphrase: bytes | None, *, at: dt.datetime | None = None) -> list[IntermediateStatus]:
        """Check each intermediate as istiod would: chain, CA flag, key match, expiry."""
        from airgap.offline.crl import read_state

        root_cert = self.load_root_cert()
        roots = [root_cert]
        nxt = self.next_root_dir / ROOT_CERT
        if nxt.exists():
            roots.append(cx.load_cert_pem(nxt.read_bytes(), source=str(nxt)))
        revoked = read_state(self.path)
        out: list[IntermediateStatus] = []
        for name in self.clusters():
            d = self.path / name
            problems: list[str] = []
            cert = cx.load_cert_pem((d / "ca-cert.pem").read_bytes(), source=str(d / "ca-cert.pem"))
            chains = any(cx.signed_by(cert, r) for r in roots)
            if not chains:
                problems.append("does not chain to the root")
            rev = revoked.is_revoked(cx.fingerprint(cert))
            if rev is not None:
                problems.append(f"revoked ({rev.reason}) on {rev.revoked_at}; run 'airgap ca rotate {name}'")
            ca = cx.is_ca(cert)
            if not ca:
                problems.append("not a CA certificate")
            key_check = "skipped"
            key_path = d / "ca-key.pem"
            if not key_path.exists():
                key_check = "missing"
                problems.append("ca-key.pem is missing")
            else:
                data = key_path.read_bytes()
                from airgap.core.keys import is_encrypted_pem, load_private_key_pem

                if passphrase is not None or not is_encrypted_pem(data):
                    try:
                        key = load_private_key_pem(data, passphrase, source=str(key_path))
                    except InvalidInput:
                        key_check = "failed"
                        problems.append("ca-key.pem does not open with this passphrase")
                    else:
                        key_check = "passed" if keys_match(key, cert.public_key()) else "failed"  # type: ignore[arg-type]
                        if key_check == "failed":
                            problems.append("ca-key.pem does not match ca-cert.pem")
            out.append(
                IntermediateStatus(
                    cluster=name,
                    serial=format(cert.serial_number, "x"),
                    fingerprint=cx.fingerprint(cert),
                    not_after=_iso(cert.not_valid_after_utc),
                    key_type=key_type_of(cert.public_key()),  # type: ignore[arg-type]
                    status="revoked" if rev is not None else cx.status_of(cert, at=at),
                    chains_to_root=chains,
                    is_ca=ca,
                    key_check=key_check,
                    problems=tuple(problems),
                )
            )
        return out


@dataclass(frozen=True)
class Expiring:
    """A root or intermediate that expires within the window ``ca list --expiring-within`` asks about."""

    what: str
    fingerprint: str
    not_after: str
    days_left: int


def expiring_within(store: CAStore, days: int, *, at: dt.datetime | None = None) -> list[Expiring]:
    """Roots (current and next) and current intermediates whose notAfter falls within ``days``."""
    if days < 0:
        raise InvalidInput("--expiring-within must be zero or more days")
    t = at or cx.now()
    limit = t + dt.timedelta(days=days)
    certs: list[tuple[str, x509.Certificate]] = [("root", store.load_root_cert())]
    nxt = store.next_root_dir / ROOT_CERT
    if nxt.exists():
        certs.append(("next root", cx.load_cert_pem(nxt.read_bytes(), source=str(nxt))))
    for name in store.clusters():
        p = store.path / name / "ca-cert.pem"
        certs.append((name, cx.load_cert_pem(p.read_bytes(), source=str(p))))
    out = []
    for what, cert in certs:
        end = cert.not_valid_after_utc
        if end <= limit:
            out.append(Expiring(what, cx.fingerprint(cert), _iso(end), (end - t).days))
    return out
