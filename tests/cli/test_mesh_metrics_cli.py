"""`mesh status --prometheus` against the Kubernetes API emulator: each cluster's live cacerts as
metrics, printed even when the status fails (issue 24 item 4)."""

from __future__ import annotations

import base64
import copy
import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.connected.kubehelpers import FAST_ENV, cacerts_manifest, namespace_manifest
from tests.helpers import one_error_line, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster, Fleet
from tests.promtool_fixtures import check_metrics_clean, needs_promtool, samples

EC = ("--key-type", "ecdsa-p256")


def _env(c: Cluster | Fleet, tmp_path: Path) -> dict[str, str]:
    return {**c.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}


def _fp(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _labels(cert: x509.Certificate, cluster: str, role: str) -> tuple[tuple[str, str], ...]:
    got = {"cluster": cluster, "role": role, "serial": format(cert.serial_number, "x"), "fingerprint": _fp(cert)}
    return tuple(sorted(got.items()))


def _by_name(out: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for n, labels, value in samples(out.encode()) if n == name}


def _seed(emu: Any, cluster_dir: Path, *, annotations: dict[str, str] | None = None, crl: bool = False) -> None:
    """istio-system and a cacerts Secret made from a PKI cluster folder (as bundle import leaves it)."""
    if emu.get("namespaces", None, "istio-system") is None:
        emu.create("namespaces", None, namespace_manifest())
    secret = cacerts_manifest(cluster_dir, extra=annotations)
    if crl:
        secret["data"]["ca-crl.pem"] = base64.b64encode((cluster_dir / "ca-crl.pem").read_bytes()).decode()
    emu.create("secrets", "istio-system", copy.deepcopy(secret))


def test_status_prometheus_failing_status_prints_metrics_and_exits_1(
    kube_cluster: Cluster, pki: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    _seed(emu, pki / "c1", annotations={"airgap.dev/cluster": "c1"})
    env = _env(kube_cluster, tmp_path)
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=env)
    assert r.code == 1  # no istiod: the status fails ...
    assert "context test:" in one_error_line(r.err) and "no istiod pods in istio-system" in r.err
    after = _by_name(r.out, "x509_cert_not_after")  # ... and the metrics are printed all the same
    ca, root = x509.load_pem_x509_certificate((pki / "c1" / "ca-cert.pem").read_bytes()), None
    root = x509.load_pem_x509_certificate((pki / "root-cert.pem").read_bytes())
    assert after == {
        _labels(ca, "c1", "intermediate"): ca.not_valid_after_utc.timestamp(),
        _labels(root, "c1", "root"): root.not_valid_after_utc.timestamp(),
    }
    assert _by_name(r.out, "airgap_mesh_status_ok") == {(("context", "test"),): 0.0}
    assert "# TYPE x509_cert_not_after gauge" in r.out and "# HELP airgap_mesh_status_ok " in r.out
    emu.simulate_istio_install("asm-186-8")
    emu.wait_idle()
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=env)
    assert r.code == 0, r.err
    assert _by_name(r.out, "airgap_mesh_status_ok") == {(("context", "test"),): 1.0}
    assert _by_name(r.out, "x509_cert_not_after") == after


def test_status_prometheus_cluster_label_falls_back(kube_cluster: Cluster, pki: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    _seed(emu, pki / "c2")  # no airgap.dev/cluster on the Secret
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=env)
    assert {dict(k)["cluster"] for k in _by_name(r.out, "x509_cert_not_after")} == {"test"}  # the context
    annotate = {"metadata": {"annotations": {"airgap.dev/cluster-name": "west-1"}}}  # what mesh install records
    emu.patch("namespaces", None, "istio-system", annotate)
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=env)
    assert {dict(k)["cluster"] for k in _by_name(r.out, "x509_cert_not_after")} == {"west-1"}


def test_status_prometheus_next_root_and_crl(kube_cluster: Cluster, pki: Path, passfile: Path, tmp_path: Path) -> None:
    pf = ("--passphrase-file", passfile)
    assert (
        run_cli("ca", "revoke", "c2", "--reason", "superseded", "--dir", pki, "--next-update-days", "5", *pf).code == 0
    )
    r = run_cli("ca", "rotate-root", "--dir", pki, *EC, "--cn", "Root CA 2", *pf)
    assert r.code == 0, r.err
    emu = kube_cluster.emu()
    _seed(emu, pki / "c1", annotations={"airgap.dev/cluster": "c1"}, crl=True)
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=_env(kube_cluster, tmp_path))
    assert r.code == 1, r.err  # no istiod in this emulated cluster
    old, new = (x509.load_pem_x509_certificate((pki / p / "root-cert.pem").read_bytes()) for p in (".", "next-root"))
    roles = {dict(k)["fingerprint"]: dict(k)["role"] for k in _by_name(r.out, "x509_cert_not_after")}
    assert roles[_fp(old)] == "root" and roles[_fp(new)] == "next-root"  # trusted, not yet issuing
    crl = x509.load_pem_x509_crl((pki / "c1" / "ca-crl.pem").read_bytes())
    assert crl.next_update_utc is not None
    assert _by_name(r.out, "airgap_crl_next_update") == {
        (("cluster", "c1"), ("issuer", _fp(old))): crl.next_update_utc.timestamp()
    }


def test_status_prometheus_tampered_secret_still_reports(kube_cluster: Cluster, pki: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    emu.create("namespaces", None, namespace_manifest())
    secret = cacerts_manifest(pki / "c1", extra={"airgap.dev/cluster": 'c1"}\nforged{a="'})
    secret["data"]["ca-cert.pem"] = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nbroken\n").decode()
    secret["data"]["ca-crl.pem"] = base64.b64encode(b"-----BEGIN X509 CRL-----\nbroken\n").decode()
    emu.create("secrets", "istio-system", secret)
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=_env(kube_cluster, tmp_path))
    assert r.code == 1
    after = _by_name(r.out, "x509_cert_not_after")
    assert [dict(k)["role"] for k in after] == ["root"]  # the broken intermediate is left out, not guessed
    assert [dict(k)["cluster"] for k in after] == ['c1"}\nforged{a="']  # escaped: one label, no new line
    assert "\nforged" not in r.out


def test_status_prometheus_file_with_the_usual_report(kube_cluster: Cluster, pki: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    _seed(emu, pki / "c1", annotations={"airgap.dev/cluster": "c1"})
    env = _env(kube_cluster, tmp_path)
    target = tmp_path / "mesh.prom"
    target.write_text("# stale\n")
    r = run_cli("mesh", "status", "--context", "test", "--json", "--prometheus-file", target, env=env)
    assert r.code == 1 and '"ok": false' in r.out  # the report as usual, and its exit code
    assert target.read_text() == run_cli("mesh", "status", "--context", "test", "--prometheus", env=env).out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".prom") or p.name.startswith(".airgap")) == [
        "mesh.prom"
    ]
    r = run_cli("mesh", "status", "--context", "nope", "--prometheus-file", tmp_path / "n.prom", env=env)
    assert r.code == 3 and not (tmp_path / "n.prom").exists()
    one_error_line(r.err, "context 'nope' not found in kubeconfig")
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", "--json", env=env)
    assert r.code == 2 and r.out == ""


def test_fleet_status_prometheus_one_cluster_down(kube_fleet, pki: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(2)
    _seed(fleet.emulators["c1"], pki / "c1", annotations={"airgap.dev/cluster": "c1"})
    _seed(fleet.emulators["c2"], pki / "c2", annotations={"airgap.dev/cluster": "c2"})
    fleet.emulators["c2"].faults.fail(1000, 503)
    args = [a for c in fleet.contexts for a in ("--context", c)]
    target = tmp_path / "fleet.prom"
    r = run_cli("mesh", "status", *args, "--prometheus", "--prometheus-file", target, env=_env(fleet, tmp_path))
    assert r.code == 5  # the worst: c2 could not be read
    assert not target.exists()  # incomplete: no file (stdout has what could be read)
    assert "c2 (exit 5)" in one_error_line(r.err, alone=False)
    assert {dict(k)["cluster"] for k in _by_name(r.out, "x509_cert_not_after")} == {"c1"}
    assert _by_name(r.out, "airgap_mesh_status_ok") == {(("context", "c1"),): 0.0, (("context", "c2"),): 0.0}


@needs_promtool
def test_status_promtool_check_metrics_clean(kube_cluster: Cluster, pki: Path, passfile: Path, tmp_path: Path) -> None:
    pf = ("--passphrase-file", passfile)
    assert run_cli("ca", "revoke", "c1", "--reason", "superseded", "--dir", pki, *pf).code == 0
    emu = kube_cluster.emu()
    _seed(emu, pki / "c1", annotations={"airgap.dev/cluster": "c1"}, crl=True)
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", env=_env(kube_cluster, tmp_path))
    assert r.code == 1 and "airgap_crl_next_update{" in r.out
    check_metrics_clean(r.out.encode())


def test_status_prometheus_keeps_the_verdict_of_mesh_status(kube_fleet, pki: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet: Fleet = kube_fleet(2)
    for ctx, cluster in (("c1", "c1"), ("c2", "c2")):
        emu = fleet.emulators[ctx]
        _seed(emu, pki / cluster, annotations={"airgap.dev/cluster": cluster})
        emu.simulate_istio_install("asm-186-8")
        emu.wait_idle()
    env = _env(fleet, tmp_path)
    args = [a for c in fleet.contexts for a in ("--context", c)]
    plain = run_cli("mesh", "status", *args, env=env)
    metrics = run_cli("mesh", "status", *args, "--prometheus", env=env)
    assert plain.code == 1 and "the clusters do not form one mesh" in plain.err  # no clusterName recorded
    assert metrics.code == plain.code  # the same exit code and the same error line
    assert one_error_line(metrics.err, alone=False) == one_error_line(plain.err, alone=False)
    assert _by_name(metrics.out, "airgap_mesh_status_ok") == {(("context", "c1"),): 1.0, (("context", "c2"),): 1.0}
    assert {dict(k)["cluster"] for k in _by_name(metrics.out, "x509_cert_not_after")} == {"c1", "c2"}
    one = run_cli("mesh", "status", "--context", "c1", env=env)
    assert one.code == 0 and run_cli("mesh", "status", "--context", "c1", "--prometheus", env=env).code == 0


def test_status_prometheus_file_when_the_cluster_cannot_be_read(
    kube_cluster: Cluster, pki: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    _seed(emu, pki / "c1", annotations={"airgap.dev/cluster": "c1"})
    env = _env(kube_cluster, tmp_path)
    target = tmp_path / "mesh.prom"
    assert run_cli("mesh", "status", "--context", "test", "--prometheus-file", target, env=env).code == 1
    written = target.read_bytes()  # exit 1: every context was read, the file records the problems
    assert _by_name(written.decode(), "airgap_mesh_status_ok") == {(("context", "test"),): 0.0}
    emu.faults.fail(1000, 503)
    r = run_cli("mesh", "status", "--context", "test", "--prometheus-file", target, env=env)
    assert r.code == 5
    one_error_line(r.err, "context test:", "503", alone=False)
    assert target.read_bytes() == written  # exit 5: a failure writes nothing; the file stays as it was
    r = run_cli("mesh", "status", "--context", "test", "--prometheus", "--prometheus-file", target, env=env)
    assert r.code == 5 and target.read_bytes() == written
    assert _by_name(r.out, "airgap_mesh_status_ok") == {(("context", "test"),): 0.0}  # stdout says it
    assert _by_name(r.out, "x509_cert_not_after") == {}
