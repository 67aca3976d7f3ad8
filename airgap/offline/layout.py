"""The PKI folder's layout: every file and folder name in it, in one place.

::

    PKI/root-cert.pem          the root certificate
    PKI/root-key.pem           its key (0600, encrypted), or
    PKI/root-key.pkcs11.json   where the key is in a PKCS#11 token (no secret)
    PKI/inventory.json         the inventory (:mod:`airgap.offline.inventory`)
    PKI/ceremony.log           the ceremony log and its signed head (:mod:`airgap.offline.ceremony`)
    PKI/ceremony-head.json
    PKI/revocations.json       revocation state; PKI/ca-crl.pem the current CRL (:mod:`airgap.offline.crl`)
    PKI/state/sequence.json    bundle sequence numbers (:mod:`airgap.offline.bundle`)
    PKI/next-root/             the next root during a root rotation (same names as the root)
    PKI/archive/<cluster>/<serial>/   intermediates a rotation replaced
    PKI/archive/root/<serial>/        roots a root rotation retired
    PKI/<cluster>/             ca-cert.pem ca-key.pem (0600) cert-chain.pem root-cert.pem [ca-crl.pem]
    PKI/.lock                  the act lock (:mod:`airgap.offline.act`)
    PKI/.rotate-<cluster>/     an intermediate rotation under way (finished or undone by recovery)

Trust: the folder is the officer's own; the loaders here parse what they read (a malformed PEM
is :class:`~airgap.errors.InvalidInput`), they do not verify chains.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509

from airgap.core import x509 as cx
from airgap.core.atomic import write_replace
from airgap.core.names import CA_CERT, CA_CRL, CA_KEY, CACERTS_REQUIRED, CERT_CHAIN, CLUSTER_NAME_RE, ROOT_CERT
from airgap.errors import InvalidInput, Refused

ROOT_KEY = "root-key.pem"
ROOT_KEY_REF = "root-key.pkcs11.json"
INVENTORY = "inventory.json"
CEREMONY_LOG = "ceremony.log"
CEREMONY_HEAD = "ceremony-head.json"
REVOCATIONS = "revocations.json"
CRL = CA_CRL
LOCK = ".lock"
NEXT_ROOT = "next-root"
ARCHIVE = "archive"
STATE = "state"
SEQUENCE = "sequence.json"
ROTATE_PREFIX = ".rotate-"
CLUSTER_FILES = CACERTS_REQUIRED
# Names a cluster may not take: folders the PKI uses or may use (case-insensitive).
RESERVED_NAMES = frozenset({"state", "log", "keys", "ceremony", "crl", "root", "backup", "archive", "next-root"})


def check_cluster_name(name: str) -> str:
    """A cluster name must be a Kubernetes label value (≤ 63 chars, alphanumerics, ``-_.``), and
    not a name the PKI folder uses itself; exit 3 with the rule it breaks."""
    if name.lower() in RESERVED_NAMES:
        raise InvalidInput(
            f"cluster name {name!r} is not valid: it is reserved for the PKI folder's own use "
            f"(reserved: {', '.join(sorted(RESERVED_NAMES))}); choose another name"
        )
    if name.endswith((".pem", ".json")):
        raise InvalidInput(f"cluster name {name!r} is not valid: it may not end in .pem or .json (PKI file names)")
    if not CLUSTER_NAME_RE.match(name):
        shown = repr(name) if len(name) <= 80 else f"{name[:64]!r}… ({len(name)} characters)"  # one readable line
        raise InvalidInput(
            f"cluster name {shown} is not valid: use 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (a Kubernetes label value)"
        )
    return name


def _load(path: Path) -> x509.Certificate:
    return cx.load_cert_pem(path.read_bytes(), source=str(path))


@dataclass(frozen=True)
class PkiLayout:
    """Where everything in one PKI folder lives. Nothing here writes."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- the root ---------------------------------------------------------------------------------
    @property
    def root_cert(self) -> Path:
        return self.path / ROOT_CERT

    @property
    def root_key(self) -> Path:
        return self.path / ROOT_KEY

    @property
    def root_key_ref(self) -> Path:
        return self.path / ROOT_KEY_REF

    @property
    def next_root_dir(self) -> Path:
        return self.path / NEXT_ROOT

    @property
    def next_root_cert(self) -> Path:
        return self.next_root_dir / ROOT_CERT

    @property
    def next_root_key(self) -> Path:
        return self.next_root_dir / ROOT_KEY

    @property
    def next_root_key_ref(self) -> Path:
        return self.next_root_dir / ROOT_KEY_REF

    # -- state ------------------------------------------------------------------------------------
    @property
    def inventory(self) -> Path:
        return self.path / INVENTORY

    @property
    def log(self) -> Path:
        return self.path / CEREMONY_LOG

    @property
    def head(self) -> Path:
        return self.path / CEREMONY_HEAD

    @property
    def revocations(self) -> Path:
        return self.path / REVOCATIONS

    @property
    def crl(self) -> Path:
        return self.path / CRL

    @property
    def sequence_file(self) -> Path:
        return self.path / STATE / SEQUENCE

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    @property
    def archive_dir(self) -> Path:
        return self.path / ARCHIVE

    # -- clusters ---------------------------------------------------------------------------------
    def cluster_dir(self, cluster: str) -> Path:
        """``PKI/<cluster>/`` (the name is checked first)."""
        return self.path / check_cluster_name(cluster)

    def cluster_file(self, cluster: str, name: str) -> Path:
        return self.cluster_dir(cluster) / name

    def rotation_staging(self, cluster: str) -> Path:
        return self.path / f"{ROTATE_PREFIX}{check_cluster_name(cluster)}"

    def archived_cluster_dir(self, cluster: str) -> Path:
        return self.archive_dir / check_cluster_name(cluster)

    def archived_root_dir(self, serial_hex: str) -> Path:
        return self.archive_dir / "root" / serial_hex

    def clusters(self) -> list[str]:
        """Cluster folders that hold a ``ca-cert.pem``, sorted."""
        if not self.path.is_dir():
            return []
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name not in RESERVED_NAMES and (p / CA_CERT).exists()
        )

    def rotations_under_way(self) -> list[Path]:
        """``PKI/.rotate-<cluster>/`` folders a crash left (recovery finishes or removes them)."""
        if not self.path.is_dir():
            return []
        return sorted(d for d in self.path.iterdir() if d.is_dir() and d.name.startswith(ROTATE_PREFIX))

    # -- certificate loaders ---------------------------------------------------------------------
    def has_root(self) -> bool:
        return self.root_cert.exists()

    def load_root_cert(self) -> x509.Certificate:
        if not self.root_cert.exists():
            raise Refused(f"{self.root_cert}: no root here; run 'airgap ca init --dir {self.path}' first")
        return _load(self.root_cert)

    def load_next_root_cert(self) -> x509.Certificate | None:
        """The next root during a root rotation, else None."""
        return _load(self.next_root_cert) if self.next_root_cert.exists() else None

    def load_cluster_cert(self, cluster: str) -> x509.Certificate:
        return _load(self.cluster_file(cluster, CA_CERT))

    def trust_roots(self) -> list[x509.Certificate]:
        """The roots a cluster must trust now: the root, then the next root during a rotation."""
        roots = [self.load_root_cert()]
        nxt = self.load_next_root_cert()
        if nxt is not None:
            roots.append(nxt)
        return roots

    def foreign_roots(
        self, cluster: str, root_pem: bytes | None = None, trusted: Collection[str] | None = None
    ) -> list[str]:
        """Fingerprints of the certificates in ``CLUSTER/root-cert.pem`` (or ``root_pem``, its bytes)
        that are neither the root nor the next root (``trusted``: their fingerprints, when the caller
        already has them): a lost or moved ``next-root/`` (whose key someone else may hold now) or a
        changed file. A bundle must never carry them."""
        known = trusted if trusted is not None else {cx.fingerprint(c) for c in self.trust_roots()}
        path = self.cluster_file(cluster, ROOT_CERT)
        pem = path.read_bytes() if root_pem is None else root_pem
        return [fp for fp in (cx.fingerprint(c) for c in cx.load_certs_pem(pem, source=str(path))) if fp not in known]

    def trust_pem(self) -> bytes:
        """:meth:`trust_roots` as the PEM a cluster's ``root-cert.pem`` holds."""
        return b"".join(cx.cert_pem(c) for c in self.trust_roots())

    def issued_certificate_paths(self) -> list[Path]:
        """The CA certificates acts made and the log must record: root, next root, each cluster's."""
        out = [p for p in (self.root_cert, self.next_root_cert) if p.exists()]
        out += [self.path / c / CA_CERT for c in self.clusters()]
        return out

    def archived_certs(self, cluster: str) -> list[x509.Certificate]:
        """Intermediates a cluster had before (``PKI/archive/<cluster>/<serial>/ca-cert.pem``)."""
        d = self.archived_cluster_dir(cluster)
        if not d.is_dir():
            return []
        return [_load(sub / CA_CERT) for sub in sorted(d.iterdir()) if (sub / CA_CERT).is_file()]

    def archived_roots(self) -> list[x509.Certificate]:
        """Roots retired by a root rotation (``PKI/archive/root/<serial>/root-cert.pem``)."""
        d = self.archive_dir / "root"
        if not d.is_dir():
            return []
        return [_load(sub / ROOT_CERT) for sub in sorted(d.iterdir()) if (sub / ROOT_CERT).is_file()]


class HasPath(Protocol):
    """Anything naming a PKI folder by its ``path`` (a :class:`PkiLayout`, the ``CAStore`` facade)."""

    @property
    def path(self) -> Path: ...


def layout_of(pki: HasPath | Path | str) -> PkiLayout:
    """The :class:`PkiLayout` of a folder given as a path, a layout or anything with a ``path``."""
    if isinstance(pki, PkiLayout):
        return pki
    if isinstance(pki, (str, Path)):
        return PkiLayout(Path(pki))
    return PkiLayout(pki.path)


__all__ = [
    "ARCHIVE",
    "CA_CERT",
    "CA_CRL",
    "CA_KEY",
    "CEREMONY_HEAD",
    "CEREMONY_LOG",
    "CERT_CHAIN",
    "CLUSTER_FILES",
    "CRL",
    "INVENTORY",
    "NEXT_ROOT",
    "RESERVED_NAMES",
    "REVOCATIONS",
    "ROOT_CERT",
    "ROOT_KEY",
    "ROOT_KEY_REF",
    "ROTATE_PREFIX",
    "HasPath",
    "PkiLayout",
    "check_cluster_name",
    "layout_of",
    "write_crl_files",
]


def write_crl_files(layout: PkiLayout, pem: bytes) -> None:
    """``PKI/ca-crl.pem`` and every current cluster's copy."""
    write_replace(layout.crl, pem)
    for c in layout.clusters():
        write_replace(layout.path / c / CRL, pem)
