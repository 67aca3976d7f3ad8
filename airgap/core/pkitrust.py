"""What a PKI folder says about trust, by fingerprint: shared by the root host's reader
(:func:`airgap.offline.trustview.read_pki_trust`) and the jump host's rotation plan
(:mod:`airgap.connected.rotation`). Certificates only: no key, no passphrase.

Trust: the PKI folder is the officer's own; its certificates were made and checked by its acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PkiCluster:
    """One cluster folder: the root its ``cert-chain.pem`` ends at, the roots its ``root-cert.pem`` holds."""

    name: str
    issuing: str
    trusted: tuple[str, ...]


@dataclass(frozen=True)
class PkiTrust:
    """The root, the next root during a rotation (else None), and every cluster folder."""

    path: Path
    root: str
    next_root: str | None
    clusters: tuple[PkiCluster, ...]

    def cluster(self, name: str) -> PkiCluster | None:
        return next((c for c in self.clusters if c.name == name), None)


__all__ = ["PkiCluster", "PkiTrust"]
