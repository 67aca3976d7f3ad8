"""mesh status: what it reads and which problems it reports."""

from __future__ import annotations

import base64
import datetime as dt

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.connected.kube import connect
from airgap.connected.status import mesh_status
from airgap.core.x509 import build_root, fingerprint
from tests.connected.kubehelpers import FAST
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster


def _status(c: Cluster):  # type: ignore[no-untyped-def]
    with connect(c.context, kubeconfig=c.kubeconfig, policy=FAST) as kube:
        return mesh_status(kube)


def test_expired_ca_and_unknown_revision_are_problems(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    emu.wait_idle()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_root(key, org="Istio", cn="Old CA", days=1, not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    data = {k: base64.b64encode(pem).decode() for k in ("ca-cert.pem", "cert-chain.pem", "root-cert.pem")}
    emu.create(
        "secrets",
        "istio-system",
        {"metadata": {"name": "cacerts", "annotations": {"airgap.dev/sequence": "4"}}, "data": data},
    )
    emu.create("namespaces", None, {"metadata": {"name": "shop", "labels": {"istio.io/rev": "asm-999"}}})
    st = _status(kube_cluster)
    assert st.control_plane == {"asm-186-8": {"pods": 1, "ready": 1}}
    assert st.ingress == {"pods": 1, "ready": 1}
    assert st.cacerts is not None and st.cacerts["fingerprint"] == fingerprint(cert)
    assert st.cacerts["status"] == "expired" and st.cacerts["sequence"] == "4"
    assert st.problems == [
        "secret istio-system/cacerts lacks ca-key.pem",
        "cacerts CA certificate is expired (not after 2020-01-02T00:00:00Z)",
        f"root {fingerprint(cert)} in cacerts root-cert.pem expired on 2020-01-02T00:00:00Z",
        "namespace shop asks for revision asm-999, which does not run",
    ]
    assert not st.ok and "cacerts: " + fingerprint(cert) in st.text()


def test_unreadable_cacerts_is_a_problem_not_a_crash(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    emu.create(
        "secrets",
        "istio-system",
        {"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": base64.b64encode(b"junk").decode()}},
    )
    st = _status(kube_cluster)
    assert any(p.startswith("secret istio-system/cacerts: ") for p in st.problems) and st.cacerts is None


def test_expiring_ca_and_root_are_flagged_as_warnings(kube_cluster: Cluster) -> None:
    """Issue 6: mesh status flags an intermediate and a root that expire within 90 days."""
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    emu.wait_idle()
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = build_root(root_key, org="Istio", cn="Root CA", days=60)
    long_root = build_root(ec.generate_private_key(ec.SECP256R1()), org="Istio", cn="Next Root", days=3650)
    pems = {
        "ca-cert.pem": root.public_bytes(serialization.Encoding.PEM),
        "ca-key.pem": b"not read by status",
        "cert-chain.pem": root.public_bytes(serialization.Encoding.PEM),
        "root-cert.pem": root.public_bytes(serialization.Encoding.PEM)
        + long_root.public_bytes(serialization.Encoding.PEM),
    }
    emu.create(
        "secrets",
        "istio-system",
        {"metadata": {"name": "cacerts"}, "data": {k: base64.b64encode(v).decode() for k, v in pems.items()}},
    )
    st = _status(kube_cluster)
    assert st.cacerts is not None and st.cacerts["status"] == "expiring"
    assert [r["status"] for r in st.cacerts["roots"]] == ["expiring", "valid"]
    assert len(st.warnings) == 2
    assert st.warnings[0].startswith("cacerts CA certificate expires within 90 days")
    assert st.warnings[1].startswith(f"root {fingerprint(root)} in cacerts root-cert.pem expires within 90 days")
    assert st.ok  # expiring is a warning, not a failure
    assert "warning: cacerts CA certificate expires within 90 days" in st.text()
    assert st.as_dict()["warnings"] == st.warnings


def test_a_cacerts_root_changed_by_hand_so_the_ca_no_longer_chains_to_it_is_a_problem(kube_cluster: Cluster) -> None:
    """Found by hand: root-cert.pem swapped for a foreign root, and mesh status said all was well (exit 0)."""
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    emu.wait_idle()
    pems = {}
    for name in ("ours", "foreign"):
        cert = build_root(ec.generate_private_key(ec.SECP256R1()), org="Istio", cn=f"{name} CA", days=30)
        pems[name] = cert.public_bytes(serialization.Encoding.PEM)
    b64 = {k: base64.b64encode(v).decode() for k, v in pems.items()}
    data = {"ca-cert.pem": b64["ours"], "ca-key.pem": b64["ours"], "cert-chain.pem": b64["ours"]}
    secret = {"metadata": {"name": "cacerts"}, "data": {**data, "root-cert.pem": b64["ours"]}}
    emu.create("secrets", "istio-system", secret)
    st = _status(kube_cluster)
    assert st.cacerts is not None and st.cacerts["signed_by_root"] is True
    assert not any("not signed by any root" in p for p in st.problems)
    emu.patch("secrets", "istio-system", "cacerts", {"data": {"root-cert.pem": b64["foreign"]}})
    st = _status(kube_cluster)
    assert st.cacerts is not None and st.cacerts["signed_by_root"] is False
    assert any("ca-cert.pem is not signed by any root in its root-cert.pem" in p for p in st.problems)
    assert not st.ok


def test_proxies_not_pinned_by_digest_and_chosen_proxies_are_problems(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    digest = "sha256:" + "ab" * 32
    emu.create("namespaces", None, {"metadata": {"name": "shop", "labels": {"istio-injection": "enabled"}}})
    emu.create("namespaces", None, {"metadata": {"name": "plain"}})  # not injected: its pods are not read
    emu.create("namespaces", None, {"metadata": {"name": "off", "labels": {"istio-injection": "disabled"}}})

    def pod(ns: str, name: str, spec: dict[str, object], annotations: dict[str, str] | None = None) -> None:
        meta: dict[str, object] = {"name": name, "annotations": annotations or {}}
        emu.create("pods", ns, {"metadata": meta, "spec": spec})

    pod("shop", "pinned", {"containers": [{"name": "istio-proxy", "image": f"r.example/proxyv2@{digest}"}]})
    pod("shop", "native", {"initContainers": [{"name": "istio-proxy", "image": "r.example/proxyv2:1.24.0"}],
                           "containers": [{"name": "app", "image": "app:1"}]})  # fmt: skip
    pod("shop", "short", {"containers": [{"name": "istio-proxy", "image": "r.example/proxyv2@sha256:abc"}]})
    pod("shop", "init", {"initContainers": [{"name": "istio-init", "image": "proxyv2:1.8.6"}],
                         "containers": [{"name": "istio-proxy", "image": f"r.example/proxyv2@{digest}"}]})  # fmt: skip
    pod("shop", "chooser", {"containers": [{"name": "istio-proxy", "image": f"r.example/proxyv2@{digest}"}]},
        {"sidecar.istio.io/proxyImage": f"r.example/proxyv2@{digest}"})  # fmt: skip
    pod("shop", "no-sidecar", {"containers": [{"name": "app", "image": "app:1"}]})
    pod("plain", "free", {"containers": [{"name": "istio-proxy", "image": "proxyv2:latest"}]})
    pod("off", "free", {"containers": [{"name": "istio-proxy", "image": "proxyv2:latest"}]})
    st = _status(kube_cluster)
    proxy_problems = [p for p in st.problems if p.startswith("pod ")]
    assert proxy_problems == [
        f"pod shop/chooser sets sidecar.istio.io/proxyImage=r.example/proxyv2@{digest}: it picks its own proxy",
        "pod shop/init: istio-init image proxyv2:1.8.6 is not pinned by digest",
        "pod shop/native: istio-proxy image r.example/proxyv2:1.24.0 is not pinned by digest",
        "pod shop/short: istio-proxy image r.example/proxyv2@sha256:abc is not pinned by digest",
    ]
    flagged = [f["pod"] for f in st.proxies["flagged"]]
    assert st.proxies["pinned"] == 1 and flagged == ["chooser", "init", "native", "short"]
    assert st.as_dict()["proxy_images"] == st.proxies and "proxy images: 1 pinned by digest, 4 flagged" in st.text()
