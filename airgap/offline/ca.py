"""``CAStore``: one PKI folder, the library entry point tests, benches and callers use.

A thin facade: the layout is :mod:`airgap.offline.layout`, state files :mod:`airgap.offline.inventory`,
the act lifecycle :mod:`airgap.offline.act`, making certificates :mod:`airgap.offline.issue`,
``ca list`` :mod:`airgap.offline.listing`, revocation :mod:`airgap.offline.crl`, rotation
:mod:`airgap.offline.rotate`, root keys :mod:`airgap.offline.keysource`.

Layout (Istio-compatible, see the contract)::

    PKI/root-cert.pem  PKI/root-key.pem (0600)  PKI/inventory.json
    PKI/<cluster>/ca-cert.pem ca-key.pem (0600) cert-chain.pem root-cert.pem

Trust: the PKI folder is the officer's own and trusted; the passphrase protects the keys at rest.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509

from airgap.core.keys import KeyType, PrivateKey
from airgap.core.progress import NO_PROGRESS, Progress
from airgap.offline.act import pki_act
from airgap.offline.ceremony import Officer
from airgap.offline.custody import NewSet
from airgap.offline.inventory import CeremonyLogRecord, IntermediateRecord, Inventory, RootRecord, read_inventory
from airgap.offline.issue import init_root, issue_intermediates, write_cluster
from airgap.offline.keysource import load_root
from airgap.offline.layout import (
    CLUSTER_FILES,
    INVENTORY,
    RESERVED_NAMES,
    ROOT_CERT,
    ROOT_KEY,
    PkiLayout,
    check_cluster_name,
)
from airgap.offline.listing import Expiring, IntermediateStatus, intermediate_status
from airgap.offline.listing import expiring_within as _expiring_within

CACERTS_FILES = CLUSTER_FILES


class CAStore:
    """One PKI folder. Methods take the passphrase explicitly; nothing is cached on the object."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.layout = PkiLayout(self.path)

    @property
    def root_cert_path(self) -> Path:
        return self.layout.root_cert

    @property
    def root_key_path(self) -> Path:
        return self.layout.root_key

    @property
    def root_key_ref_path(self) -> Path:
        return self.layout.root_key_ref

    @property
    def inventory_path(self) -> Path:
        return self.layout.inventory

    @property
    def next_root_dir(self) -> Path:
        return self.layout.next_root_dir

    def cluster_dir(self, cluster: str) -> Path:
        return self.layout.cluster_dir(cluster)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the act lock (with recovery) for a block that changes nothing the log must record."""
        with pki_act(self.layout, "lock", None):
            yield

    def read_inventory(self) -> Inventory:
        return read_inventory(self.layout.inventory)

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
        """See :func:`airgap.offline.issue.init_root`."""
        return init_root(
            self.path,
            key_type=key_type,
            days=days,
            org=org,
            cn=cn,
            passphrase=passphrase,
            officer=officer,
            root_key=root_key,
            key_record=key_record,
            key_params=key_params,
            custody_set=custody_set,
        )

    def load_root_cert(self) -> x509.Certificate:
        return self.layout.load_root_cert()

    def load_root(
        self, passphrase: bytes | None, root_key: PrivateKey | None = None
    ) -> tuple[x509.Certificate, PrivateKey]:
        return load_root(self.layout, passphrase, root_key)

    def root_in_token(self) -> bool:
        """True when the root key is held in a PKCS#11 token (``root-key.pkcs11.json``)."""
        return self.layout.root_key_ref.exists() and not self.layout.root_key.exists()

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
        """See :func:`airgap.offline.issue.issue_intermediates` (this returns only the records)."""
        return issue_intermediates(
            self.path,
            clusters,
            key_type=key_type,
            days=days,
            org=org,
            cn=cn,
            sans=sans,
            passphrase=passphrase,
            key_passphrase=key_passphrase,
            workers=workers,
            officer=officer,
            root_key=root_key,
            progress=progress,
        ).records

    def trust_pem(self) -> bytes:
        return self.layout.trust_pem()

    def write_cluster(self, final: Path, key_pem: bytes, cert: x509.Certificate, issuer: x509.Certificate) -> None:
        write_cluster(self.layout, final, key_pem, cert, issuer)

    def clusters(self) -> list[str]:
        return self.layout.clusters()

    def status(self, passphrase: bytes | None, *, at: dt.datetime | None = None) -> list[IntermediateStatus]:
        return intermediate_status(self.layout, passphrase, at=at)


def expiring_within(store: CAStore, days: int, *, at: dt.datetime | None = None) -> list[Expiring]:
    return _expiring_within(store.layout, days, at=at)


__all__ = [
    "CACERTS_FILES",
    "INVENTORY",
    "RESERVED_NAMES",
    "ROOT_CERT",
    "ROOT_KEY",
    "CAStore",
    "CeremonyLogRecord",
    "Expiring",
    "IntermediateRecord",
    "IntermediateStatus",
    "Inventory",
    "RootRecord",
    "check_cluster_name",
    "expiring_within",
]
