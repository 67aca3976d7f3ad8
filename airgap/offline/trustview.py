"""Read a PKI folder's trust facts (:class:`airgap.core.pkitrust.PkiTrust`) for ``mesh trust --plan``.

Reads certificates only (root, next root, each cluster's ``cert-chain.pem`` and ``root-cert.pem``):
no key is opened, no passphrase asked, no lock taken, nothing written.

Trust: the PKI folder is the officer's own.
"""

from __future__ import annotations

from pathlib import Path

from airgap.core import x509 as cx
from airgap.core.pkitrust import PkiCluster, PkiTrust
from airgap.errors import InvalidInput
from airgap.offline.layout import CERT_CHAIN, ROOT_CERT, layout_of


def _certs(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from exc
    return [cx.fingerprint(c) for c in cx.load_certs_pem(data, source=str(path))]


def read_pki_trust(pki: Path) -> PkiTrust:
    """The root, the next root (during ``ca rotate-root``) and each cluster's issuing and trusted roots."""
    layout = layout_of(pki)
    if not layout.path.is_dir():
        raise InvalidInput(f"{pki}: not a PKI folder")
    root = cx.fingerprint(layout.load_root_cert())
    nxt = layout.load_next_root_cert()
    clusters = tuple(
        PkiCluster(
            name,
            _certs(layout.cluster_file(name, CERT_CHAIN))[-1],
            tuple(_certs(layout.cluster_file(name, ROOT_CERT))),
        )
        for name in layout.clusters()
    )
    return PkiTrust(layout.path, root, cx.fingerprint(nxt) if nxt is not None else None, clusters)


__all__ = ["read_pki_trust"]
