"""airgap.connected.metrics: a cacerts Secret's certificates as samples, with roles through a root rotation."""

from __future__ import annotations

import base64
from pathlib import Path

from airgap.connected.metrics import cluster_label, secret_metrics
from airgap.core import x509 as cx
from tests.connected.kubehelpers import cacerts_manifest
from tests.helpers import run_cli

EC = ("--key-type", "ecdsa-p256")


def _roles(pki: Path, cluster: str) -> dict[str, str]:
    """fingerprint -> role of the samples of the Secret made from ``PKI/<cluster>``."""
    m = secret_metrics(cacerts_manifest(pki / cluster), None, "ctx")
    return {s.fingerprint: s.role for s in m.certs}


def _fp(path: Path) -> str:
    return cx.fingerprint(cx.load_cert_pem(path.read_bytes(), source=str(path)))


def test_roles_through_a_root_rotation(pki: Path, passfile: Path) -> None:
    pf = ("--passphrase-file", passfile)
    old = _fp(pki / "root-cert.pem")
    assert _roles(pki, "c1") == {old: "root", _fp(pki / "c1" / "ca-cert.pem"): "intermediate"}
    assert run_cli("ca", "rotate-root", "--dir", pki, *EC, *pf).code == 0
    new = _fp(pki / "next-root" / "root-cert.pem")
    # trust {A, B}, issuing A: B is the next root
    assert _roles(pki, "c1") == {old: "root", new: "next-root", _fp(pki / "c1" / "ca-cert.pem"): "intermediate"}
    assert run_cli("ca", "rotate", "c1", "--dir", pki, *pf).code == 0
    # trust {A, B}, issuing B: both are roots the cluster trusts; A is older, never "next"
    assert _roles(pki, "c1") == {old: "root", new: "root", _fp(pki / "c1" / "ca-cert.pem"): "intermediate"}


def test_no_chain_means_no_next_root_and_junk_is_left_out(pki: Path) -> None:
    secret = cacerts_manifest(pki / "c1")
    del secret["data"]["cert-chain.pem"]
    secret["data"]["ca-cert.pem"] = base64.b64encode(b"junk").decode()
    m = secret_metrics(secret, None, "ctx")
    assert [(s.role, s.cluster) for s in m.certs] == [("root", "ctx")]
    secret["data"]["root-cert.pem"] = "%%%"  # not base64
    assert secret_metrics(secret, None, "ctx").certs == ()


def test_cluster_label_order() -> None:
    secret = {"metadata": {"annotations": {"airgap.dev/cluster": "from-bundle"}}}
    ns = {"metadata": {"annotations": {"airgap.dev/cluster-name": "from-install"}}}
    assert cluster_label(secret, ns, "ctx") == "from-bundle"
    assert cluster_label({"metadata": {}}, ns, "ctx") == "from-install"
    assert cluster_label({"metadata": {"annotations": {"airgap.dev/cluster": ""}}}, None, "ctx") == "ctx"
