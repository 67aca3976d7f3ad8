"""The CA store on the root host: root, per-cluster intermediates, and the inventory.

Layout (Istio-compatible, see the contract)::

    PKI/root-cert.pem  PKI/root-key.pem (0600)  PKI/inventory.json
    PKI/<cluster>/ca-cert.pem ca-key.pem (0600) cert-chain.pem root-cert.pem

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
)
from airgap.errors import InvalidInput, Refused

ROOT_CERT = "root-cert.pem"
ROOT_KEY = "root-key.pem"
INVENTORY = "inventory.json"
CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")
RESERVED_NAMES = frozenset({"state", "log", "keys", "ceremony", "crl", "root", "backup"})
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


@dataclass
class Inventory:
    root: RootRecord | None = None
    intermediates: list[IntermediateRecord] = field(default_factory=list)

    def to_json(self) -> bytes:
        doc = {
            "format": 1,
            "root": asdict(self.root) if self.root else None,
            "intermediates": [asdict(i) for i in self.intermediates],
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Inventory:
        try:
            doc = json.loads(data)
            root = RootRecord(**doc["root"]) if doc.get("root") else None
            inter = [IntermediateRecord(**i) for i in doc.get("intermediates", [])]
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"{source}: inventory is corrupt") from exc
        return cls(root, inter)


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
    def init_root(
        self,
        *,
        key_type: KeyType,
        days: int,
        org: str,
        cn: str,
        passphrase: bytes | None,
    ) -> RootRecord:
        """Create the root key and self-signed root certificate; refuse if either exists (exit 4)."""
        if days <= 0:
            raise InvalidInput("--days must be positive")
        for p in (self.root_key_path, self.root_cert_path):
            if p.exists():
                raise Refused(f"{p}: already exists; refusing to overwrite the root")
        with self.locked():
            key = generate_private_key(key_type)
            cert = cx.build_root(key, org=org, cn=cn, days=days)
            write_new(self.root_key_path, encode_private_key(key, passphrase), mode=0o600)
            try:
                write_new(self.root_cert_path, cx.cert_pem(cert))
            except BaseException:
                self.root_key_path.unlink(missing_ok=True)
                raise
            record = RootRecord(
                serial=format(cert.serial_number, "x"),
                fingerprint=cx.fingerprint(cert),
                subject=cert.subject.rfc4514_string(),
                not_before=_iso(cert.not_valid_before_utc),
                not_after=_iso(cert.not_valid_after_utc),
                key_type=key_type,
                created_at=_iso(cx.now()),
            )
            inv = self.read_inventory()
            inv.root = record
            self._write_inventory(inv)
        return record

    def load_root_cert(self) -> x509.Certificate:
        if not self.root_cert_path.exists():
            raise Refused(f"{self.root_cert_path}: no root here; run 'airgap ca init --dir {self.path}' first")
        return cx.load_cert_pem(self.root_cert_path.read_bytes(), source=str(self.root_cert_path))

    def load_root(self, passphrase: bytes | None) -> tuple[x509.Certificate, PrivateKey]:
        cert = self.load_root_cert()
        if not self.root_key_path.exists():
            raise Refused(f"{self.root_key_path}: root key is missing")
        key = load_private_key(self.root_key_path, passphrase)
        if not keys_match(key, cert.public_key()):  # type: ignore[arg-type]
            raise InvalidInput(f"{self.root_key_path}: does not match {self.root_cert_path}")
        return cert, key

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
    ) -> list[IntermediateRecord]:
        """Issue one intermediate per cluster, every check done before any key is made.

        ``passphrase`` opens the root key; ``key_passphrase`` encrypts the new keys (None: plain).
        Keys are generated in a process pool (``workers``, default: every core).
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
            root_cert, root_key = self.load_root(passphrase)
            cx.check_within_root(root_cert, days)
            for n in names:
                if (self.path / n).exists():
                    raise Refused(f"{self.path / n}: already exists; refusing to overwrite (rotation: see 'ca rotate')")
            n_workers = max(1, min(len(names), workers or os.cpu_count() or 1))
            if n_workers == 1:
                made = [_make_key(key_type, key_passphrase) for _ in names]
            else:
                with ProcessPoolExecutor(max_workers=n_workers) as pool:
                    made = list(pool.map(_make_key, [key_type] * len(names), [key_passphrase] * len(names)))
            root_pem = cx.cert_pem(root_cert)
            inv = self.read_inventory()
            records: list[IntermediateRecord] = []
            for name, (key_pem, pub_pem) in zip(names, made, strict=True):
                pub = load_public_key_pem(pub_pem, source=name)
                cert = cx.build_intermediate(
                    pub,
                    cluster=name,
                    root_cert=root_cert,
                    root_key=root_key,
                    org=org,
                    cn=cn,
                    days=days,
                    sans=list(sans),
                )
                ca_pem = cx.cert_pem(cert)
                with staged_dir(self.path / name, mode=0o700) as tmp:
                    write_new(tmp / "ca-key.pem", key_pem, mode=0o600)
                    write_new(tmp / "ca-cert.pem", ca_pem)
                    write_new(tmp / "cert-chain.pem", ca_pem + root_pem)
                    write_new(tmp / "root-cert.pem", root_pem)
                record = IntermediateRecord(
                    cluster=name,
                    serial=format(cert.serial_number, "x"),
                    fingerprint=cx.fingerprint(cert),
                    subject=cert.subject.rfc4514_string(),
                    not_before=_iso(cert.not_valid_before_utc),
                    not_after=_iso(cert.not_valid_after_utc),
                    key_type=key_type_of(pub),
                    issued_at=_iso(cx.now()),
                    root_fingerprint=cx.fingerprint(root_cert),
                )
                inv.intermediates.append(record)
                self._write_inventory(inv)  # after each cluster: the record never lags the disk
                records.append(record)
        return records

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
        root_cert = self.load_root_cert()
        out: list[IntermediateStatus] = []
        for name in self.clusters():
            d = self.path / name
            problems: list[str] = []
            cert = cx.load_cert_pem((d / "ca-cert.pem").read_bytes(), source=str(d / "ca-cert.pem"))
            chains = cx.signed_by(cert, root_cert)
            if not chains:
                problems.append("does not chain to the root")
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
                    status=cx.status_of(cert, at=at),
                    chains_to_root=chains,
                    is_ca=ca,
                    key_check=key_check,
                    problems=tuple(problems),
                )
            )
        return out
