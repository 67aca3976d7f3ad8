"""Shared bits of the cluster tests: a quick retry policy and cacerts manifests from a test PKI."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from airgap.connected.kube import RetryPolicy

FAST = RetryPolicy(
    attempts=5, backoff=0.01, max_backoff=0.05, max_retry_after=0.05, connect_timeout=2.0, read_timeout=5.0
)
# The CLI reads these (see airgap.connected.kube.policy_from_env) so CLI tests stay quick.
FAST_ENV = {"AIRGAP_KUBE_BACKOFF": "0.01", "AIRGAP_KUBE_ATTEMPTS": "5", "AIRGAP_KUBE_MAX_RETRY_AFTER": "0.05"}

KEYS = ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem")


def cacerts_manifest(cluster_dir: Path, *, sequence: int = 1, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The cacerts Secret for one cluster folder of a PKI, shaped like the bundle importer's."""
    data = {k: base64.b64encode((cluster_dir / k).read_bytes()).decode() for k in KEYS}
    annotations = {
        "airgap.dev/bundle-id": f"test-{cluster_dir.name}-{sequence}",
        "airgap.dev/sequence": str(sequence),
        "airgap.dev/signer": "ab" * 32,
        "airgap.dev/ca-fingerprint": "cd" * 32,
    }
    annotations.update(extra or {})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system", "annotations": annotations},
        "type": "Opaque",
        "data": data,
    }


def namespace_manifest() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}


class Prepared:
    """A stand-in for bundle_import.PreparedImport built from plain manifests."""

    def __init__(self, secret: dict[str, Any], sequence: int) -> None:
        self.secret = secret
        self.sequence = sequence
        self.recorded = 0

    def namespace_manifest(self) -> dict[str, Any]:
        return namespace_manifest()

    def cacerts_secret_manifest(self) -> dict[str, Any]:
        return self.secret

    def record(self, _prepared: object) -> None:
        self.recorded += 1


def seed_cacerts(emu: Any) -> None:
    """A ``cacerts`` Secret with Istio's four keys (placeholder bytes) in an emulated cluster, the
    precondition of ``mesh install`` for tests about the install itself, not the bundle import."""
    if emu.get("namespaces", None, "istio-system") is None:
        emu.create("namespaces", None, namespace_manifest())
    data = {k: base64.b64encode(f"placeholder {k}".encode()).decode() for k in KEYS}
    emu.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "type": "Opaque", "data": data})
