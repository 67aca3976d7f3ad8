"""The connected half end to end through the CLI, against the Kubernetes API emulator.

preflight -> bundle import -> mesh install -> mesh inject --restart -> mesh status, then each
error a user can meet: exit code, the one stderr line, and nothing half-done in the cluster.
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.kubeapi.fixtures)

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.connected.kubehelpers import FAST_ENV, seed_cacerts
from tests.helpers import Result, one_error_line, run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster, Fleet
from tests.release_fixtures import _release_template, make_signed_release, release  # noqa: F401

POLL = ("--poll", "0.02")
INSTALL = ("--cluster-name", "cluster1", "--network", "net1", "--mesh-id", "proj-1")


def _env(c: Cluster | Fleet, tmp_path: Path) -> dict[str, str]:
    return {**c.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}


def _one_error_line(r: Result) -> str:
    return one_error_line(r, alone=False)  # progress lines may stand beside the error


def _c1_import(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> tuple[object, ...]:
    """``bundle create c1`` (it must succeed), then the ``bundle import`` arguments for that bundle."""
    bundle = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", bkeys.recipient_pub,
        "--passphrase-file", passfile, "--out", bundle,
    )  # fmt: skip
    assert r.code == 0, r.err
    return ("bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1")


def _istioctl_calls(c: Cluster | Fleet) -> list[list[str]]:
    if not c.istioctl_log.exists():
        return []
    return [json.loads(line) for line in c.istioctl_log.read_text().splitlines()]


def _istioctl(release: Path) -> Path:
    return next(release.glob("istio-*")) / "bin" / "istioctl"


# -- the whole workflow --------------------------------------------------------------------------------


def test_end_to_end(
    kube_cluster: Cluster, release: Path, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    emu.add_deployment("shop", "web", {"app": "web"}, replicas=2)
    env = _env(kube_cluster, tmp_path)
    ctx = ("--context", kube_cluster.context)

    # 1. preflight
    r = run_cli("preflight", *ctx, "--json", env=env)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["ok"] is True and {c["name"] for c in doc["checks"]} == {
        "kubernetes-version",
        "api-access",
        "nodes",
        "cpu",
        "memory",
        "service-port-names",
        "cluster-rbac",
        "injection-labels",
    }

    # 2. bundle import (the bundles issue's verified path, then our cluster writer)
    imp = _c1_import(pki, bkeys, passfile, tmp_path)
    r = run_cli(*imp, *ctx, env=env)
    assert r.code == 0, r.err
    secret = emu.get("secrets", "istio-system", "cacerts")
    assert secret is not None and sorted(secret["data"]) == [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ]
    rv = secret["metadata"]["resourceVersion"]
    r = run_cli(*imp, *ctx, env=env)  # the same bundle again: nothing changes
    assert r.code == 0, r.err
    assert emu.get("secrets", "istio-system", "cacerts")["metadata"]["resourceVersion"] == rv

    # 3. mesh install
    r = run_cli("mesh", "install", *ctx, "--release", release, *INSTALL, *POLL, env=env)
    assert r.code == 0, r.err
    calls = _istioctl_calls(kube_cluster)
    assert len(calls) == 1
    argv = calls[0]
    assert argv[:3] == ["install", "--context", kube_cluster.context] and argv[3] == "-f" and argv[5] == "-y"
    assert "istioctl: " in r.err and "Installation complete" in r.err  # streamed output
    ns = emu.get("namespaces", None, "istio-system")
    assert ns is not None and ns["metadata"]["labels"]["topology.istio.io/network"] == "net1"
    svc = emu.get("services", "istio-system", "istiod")
    assert svc is not None and svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": "asm-186-8"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("grpc-xds", 15010, 15010),
        ("https-dns", 15012, 15012),
        ("https-webhook", 443, 15017),
        ("http-monitoring", 15014, 15014),
    ]
    assert "ready: istiod-asm-186-8-" in r.out and "istio-ingressgateway-" in r.out
    # running it twice changes nothing the second time
    before = {
        k: v["metadata"]["resourceVersion"] for k, v in emu.store.objects.items() if k[0] in ("namespaces", "services")
    }
    r = run_cli("mesh", "install", *ctx, "--release", release, *INSTALL, *POLL, env=env)
    assert r.code == 0, r.err
    assert "network label: unchanged" in r.out and "istiod service: unchanged" in r.out
    after = {
        k: v["metadata"]["resourceVersion"] for k, v in emu.store.objects.items() if k[0] in ("namespaces", "services")
    }
    assert after == before

    # 4. inject with restart
    emu.patch("namespaces", None, "shop", {"metadata": {"labels": {"istio-injection": "enabled"}}})
    r = run_cli("mesh", "inject", "shop", *ctx, "--restart", *POLL, env=env)
    assert r.code == 0, r.err
    labels = emu.get("namespaces", None, "shop")["metadata"]["labels"]
    assert labels["istio.io/rev"] == "asm-186-8" and "istio-injection" not in labels
    pods = emu.list("pods", "shop")
    assert len(pods) == 2 and all(p["metadata"]["labels"].get("istio.io/rev") == "asm-186-8" for p in pods)
    assert "restarted web" in r.out
    assert len([q for q in emu.requests_for("PATCH", "/api/v1/namespaces/shop") if q.status == 200]) == 1

    # 5. status: all well, except that this install (no --images) runs proxies by tag, not by digest
    r = run_cli("mesh", "status", *ctx, "--json", env=env)
    assert r.code == 1, r.err
    st = json.loads(r.out)
    assert st["control_plane"]["asm-186-8"]["ready"] >= 1 and st["network"] == "net1"
    assert len(st["cacerts"]["fingerprint"]) == 64 and st["cacerts"]["status"] == "valid"
    assert st["injection"] == [{"namespace": "shop", "revision": "asm-186-8", "istio_injection": None}]
    assert st["ok"] is False and len(st["problems"]) == 2
    assert all("istio-proxy image proxyv2:asm-186-8 is not pinned by digest" in p for p in st["problems"])
    r = run_cli("mesh", "status", *ctx, env=env)
    assert r.code == 1 and "istiod revision asm-186-8: 1/1 pods ready" in r.out
    assert "proxy images: 0 pinned by digest, 2 flagged" in r.out


# -- mesh install: release, render, refusals ----------------------------------------------------------


def test_tampered_istioctl_refused_before_running(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    tool = _istioctl(release)
    tool.write_bytes(tool.read_bytes() + b"\n# evil\n")
    env = _env(kube_cluster, tmp_path)
    writes = len([q for q in emu.requests if q.method != "GET"])
    r = run_cli("mesh", "install", "--context", kube_cluster.context, "--release", release, *INSTALL, env=env)
    assert r.code == 1
    assert "changed since it was extracted" in _one_error_line(r)
    assert _istioctl_calls(kube_cluster) == []
    assert len([q for q in emu.requests if q.method != "GET"]) == writes
    assert emu.get("namespaces", None, "istio-system") is None
    out = tmp_path / "rendered"
    r = run_cli("mesh", "install", "--release", release, *INSTALL, "--output-dir", out, env=env)
    assert r.code == 1 and not out.exists()


def test_missing_release_record_refused(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    (release / "RELEASE.json").unlink()
    r = run_cli(
        "mesh",
        "install",
        "--release",
        release,
        *INSTALL,
        "--output-dir",
        tmp_path / "o",
        env=_env(kube_cluster, tmp_path),
    )
    assert r.code == 1 and "RELEASE.json" in _one_error_line(r)
    assert not (tmp_path / "o").exists()


def test_output_dir_renders_deterministically(release: Path, tmp_path: Path) -> None:
    overlay = tmp_path / "features.yaml"
    overlay.write_text(
        "spec:\n  components:\n    egressGateways:\n    - name: istio-egressgateway\n      enabled: true\n"
    )
    overlay2 = tmp_path / "more.yaml"
    overlay2.write_text(
        "spec:\n  components:\n    egressGateways:\n    - name: egress2\n      enabled: false\n"
        "  meshConfig:\n    accessLogFile: /dev/stdout\n"
    )
    out = tmp_path / "out"
    args = ("mesh", "install", "--release", release, *INSTALL, "-f", overlay, "-f", overlay2, "--context", "prod-1")
    r = run_cli(*args, "--output-dir", out)
    assert r.code == 0, r.err
    assert tree(out) == [
        "20-istio-system-namespace.yaml",
        "30-istiod-service.yaml",
        "cluster.yaml",
        "istioctl-install.sh",
    ]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    shutil.rmtree(out)
    assert run_cli(*args, "--output-dir", out).code == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # byte-identical
    op = yaml.safe_load(first["cluster.yaml"])
    assert op["spec"]["profile"] == "asm-multicloud" and op["spec"]["revision"] == "asm-186-8"
    assert op["spec"]["values"]["global"] == {
        "meshID": "proj-1",
        "multiCluster": {"clusterName": "cluster1"},
        "network": "net1",
    }
    assert op["spec"]["components"]["egressGateways"] == [{"name": "egress2", "enabled": False}]  # later overlay wins
    assert op["spec"]["meshConfig"] == {"accessLogFile": "/dev/stdout"}
    ns = yaml.safe_load(first["20-istio-system-namespace.yaml"])
    assert ns["metadata"] == {
        "name": "istio-system",
        "labels": {"topology.istio.io/network": "net1"},
        "annotations": {"airgap.dev/cluster-name": "cluster1", "airgap.dev/mesh-id": "proj-1"},  # for mesh connect
    }
    svc = yaml.safe_load(first["30-istiod-service.yaml"])
    assert svc["metadata"]["labels"] == {
        "istio.io/rev": "asm-186-8",
        "app": "istiod",
        "istio": "pilot",
        "release": "istio",
    }
    cmd = first["istioctl-install.sh"].decode().splitlines()[-1]
    assert cmd == f"{_istioctl(release)} install --context prod-1 -f {out}/cluster.yaml -y"
    assert stat.S_IMODE((out / "istioctl-install.sh").stat().st_mode) == 0o755
    # an existing file is never replaced, and nothing else is written
    r = run_cli(*args, "--output-dir", out)
    assert r.code == 4 and "already exists" in _one_error_line(r)
    (out / "cluster.yaml").unlink()
    before = tree(out)
    r = run_cli(*args, "--output-dir", out)
    assert r.code == 4 and tree(out) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("spec:\n  revision: other\n", "contradicting --revision 'asm-186-8'"),
        ("- a list\n", "must be a YAML mapping"),
        ("spec: [unclosed\n", "not valid YAML"),
        ("kind: Deployment\n", "expected IstioOperator"),
    ],
)
def test_bad_overlays(release: Path, tmp_path: Path, content: str, message: str) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text(content)
    out = tmp_path / "out"
    r = run_cli("mesh", "install", "--release", release, *INSTALL, "-f", overlay, "--output-dir", out)
    assert r.code == 3 and message in _one_error_line(r) and not out.exists()


def test_bad_settings_and_usage(release: Path, tmp_path: Path) -> None:
    r = run_cli(
        "mesh",
        "install",
        "--release",
        release,
        "--cluster-name",
        "bad name",
        "--network",
        "n",
        "--mesh-id",
        "m",
        "--output-dir",
        tmp_path / "o",
    )
    assert r.code == 3 and "--cluster-name 'bad name'" in _one_error_line(r)
    r = run_cli("mesh", "install", "--release", release, *INSTALL, "--dry-run", "--output-dir", tmp_path / "o")
    assert r.code == 2 and not (tmp_path / "o").exists()


def test_network_label_refused_without_force(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    emu.create(
        "namespaces", None, {"metadata": {"name": "istio-system", "labels": {"topology.istio.io/network": "old"}}}
    )
    seed_cacerts(emu)
    env = _env(kube_cluster, tmp_path)
    args = ("mesh", "install", "--context", kube_cluster.context, "--release", release, *INSTALL, *POLL)
    r = run_cli(*args, env=env)
    assert r.code == 4
    assert "has topology.istio.io/network=old, not net1; pass --force" in _one_error_line(r)
    assert _istioctl_calls(kube_cluster) == [] and emu.get("services", "istio-system", "istiod") is None
    r = run_cli(*args, "--force", env=env)
    assert r.code == 0, r.err
    assert emu.get("namespaces", None, "istio-system")["metadata"]["labels"]["topology.istio.io/network"] == "net1"
    assert "network label: changed" in r.out


@pytest.mark.parametrize("cacerts", ["missing", "incomplete"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_mesh_install_before_bundle_import_is_refused_and_changes_nothing(
    kube_cluster: Cluster, release: Path, tmp_path: Path, cacerts: str, dry_run: bool
) -> None:
    """The guide's order: the cacerts Secret first, then istioctl install (else istiod makes a
    self-signed root that every workload certificate would chain to)."""
    emu = kube_cluster.emu()
    if cacerts == "incomplete":
        emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
        emu.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "b2xk"}})
    writes = len([q for q in emu.requests if q.method != "GET"])
    args = ("mesh", "install", "--context", "test", "--release", release, *INSTALL, *POLL)
    r = run_cli(*args, *(("--dry-run",) if dry_run else ()), env=_env(kube_cluster, tmp_path))
    assert r.code == 4, r.err
    what = "is missing" if cacerts == "missing" else "lacks ca-key.pem, cert-chain.pem, root-cert.pem"
    line = _one_error_line(r)
    assert f"secret istio-system/cacerts {what}" in line and "self-signed CA" in line
    assert "airgap bundle import" in line and "--context test" in line
    assert len([q for q in emu.requests if q.method != "GET"]) == writes and _istioctl_calls(kube_cluster) == []


def test_dry_run_changes_nothing(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    seed_cacerts(emu)

    def count_writes() -> int:  # a SelfSubjectAccessReview (the dry run asks them too) is a question
        return len([q for q in emu.requests if q.method != "GET" and "selfsubjectaccessreviews" not in q.path])

    writes = count_writes()
    r = run_cli(
        "mesh",
        "install",
        "--context",
        "test",
        "--release",
        release,
        *INSTALL,
        "--dry-run",
        env=_env(kube_cluster, tmp_path),
    )
    assert r.code == 0, r.err
    assert "dry run, nothing changed" in r.out and "would run:" in r.out and "istiod service: would create" in r.out
    assert count_writes() == writes and _istioctl_calls(kube_cluster) == []


def test_existing_istiod_service_is_brought_to_the_guide(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    seed_cacerts(emu)
    emu.create(
        "services",
        "istio-system",
        {
            "metadata": {"name": "istiod", "labels": {"app": "istiod"}},
            "spec": {"selector": {"app": "istiod"}, "ports": [{"name": "grpc-xds", "port": 15010}]},
        },
    )
    r = run_cli(
        "mesh", "install", "--context", "test", "--release", release, *INSTALL, *POLL, "--force",
        env=_env(kube_cluster, tmp_path),
    )  # fmt: skip
    assert r.code == 0, r.err and "istiod service: updated" in r.out  # other ports: someone else's (--force)
    svc = emu.get("services", "istio-system", "istiod")
    assert svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": "asm-186-8"} and len(svc["spec"]["ports"]) == 4


def test_wait_times_out_naming_what_is_not_ready(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    seed_cacerts(kube_cluster.emu())
    assert kube_cluster.simulator is not None
    kube_cluster.simulator.stop()  # istioctl "runs" but nothing appears in the cluster
    r = run_cli(
        "mesh",
        "install",
        "--context",
        "test",
        "--release",
        release,
        *INSTALL,
        *POLL,
        "--wait-timeout",
        "0.2",
        env=_env(kube_cluster, tmp_path),
    )
    assert r.code == 5
    line = _one_error_line(r)
    assert (
        "control plane not Ready after 0.2s: istiod (asm-186-8): no pods yet; istio-ingressgateway: no pods yet" in line
    )


# -- inject, status, preflight errors -----------------------------------------------------------------


def test_inject_refusals(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    emu.create("namespaces", None, {"metadata": {"name": "shop"}})
    r = run_cli("mesh", "inject", "shop", "--context", "test", env=env)
    assert r.code == 4 and "no istiod runs in istio-system" in _one_error_line(r)
    emu.simulate_istio_install("asm-186-8")
    emu.simulate_istio_install("asm-187-2")
    emu.wait_idle()
    r = run_cli("mesh", "inject", "shop", "--context", "test", env=env)
    assert (
        r.code == 4
        and "several istiod revisions run (asm-186-8, asm-187-2); choose one with --revision" in _one_error_line(r)
    )
    r = run_cli("mesh", "inject", "shop", "ghost", "--context", "test", "--revision", "asm-187-2", env=env)
    assert r.code == 4 and "namespace(s) not found: ghost; nothing changed" in _one_error_line(r)
    assert "istio.io/rev" not in emu.get("namespaces", None, "shop")["metadata"].get("labels", {})
    r = run_cli("mesh", "inject", "shop", "--context", "test", "--revision", "asm-187-2", env=env)
    assert r.code == 0 and emu.get("namespaces", None, "shop")["metadata"]["labels"]["istio.io/rev"] == "asm-187-2"


def test_inject_reports_pods_left_without_revision(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    emu.add_deployment("shop", "web", {"app": "web"})
    emu.create(
        "pods", "shop", {"metadata": {"name": "bare-pod"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    )
    emu.wait_idle()
    r = run_cli("mesh", "inject", "shop", "--context", "test", "--restart", *POLL, env=_env(kube_cluster, tmp_path))
    assert r.code == 1
    assert "1 pod(s) still without istio.io/rev=asm-186-8: shop/bare-pod" in _one_error_line(r)
    assert "pod without istio.io/rev: bare-pod" in r.out


def test_status_problems_exit_1(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    emu.create(
        "namespaces",
        None,
        {"metadata": {"name": "both", "labels": {"istio-injection": "enabled", "istio.io/rev": "x"}}},
    )
    r = run_cli("mesh", "status", "--context", "test", "--json", env=_env(kube_cluster, tmp_path))
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["ok"] is False and doc["cacerts"] is None
    assert "no istiod pods in istio-system" in doc["problems"]
    assert "namespace both has both istio-injection and istio.io/rev: injection fails" in doc["problems"]
    assert "no istiod pods in istio-system" in _one_error_line(r)


def test_preflight_failures_listed(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    emu.set_nodes(3, cpu="1", memory="4Gi")
    emu.denied.add(("create", "clusterrolebindings"))
    emu.create(
        "namespaces", None, {"metadata": {"name": "app", "labels": {"istio-injection": "enabled", "istio.io/rev": "r"}}}
    )
    emu.create(
        "services",
        "app",
        {
            "metadata": {"name": "web"},
            "spec": {
                "ports": [
                    {"name": "web", "port": 80},
                    {"name": "http-alt", "port": 81},
                    {"name": "metrics", "port": 9090, "appProtocol": "http"},
                ]
            },
        },
    )
    emu.version = "v1.22.3"
    env = _env(kube_cluster, tmp_path)
    r = run_cli("preflight", "--context", "test", "--json", env=env)
    assert r.code == 1
    doc = json.loads(r.out)
    failed = {c["name"]: c for c in doc["checks"] if not c["ok"]}
    assert set(failed) == {
        "kubernetes-version",
        "nodes",
        "cpu",
        "memory",
        "service-port-names",
        "cluster-rbac",
        "injection-labels",
    }
    assert failed["service-port-names"]["offenders"] == ["app/web port 80 name web"]
    assert failed["cluster-rbac"]["offenders"] == ["create clusterrolebindings (denied by the emulator's RBAC setting)"]
    assert (
        "preflight failed: kubernetes-version, nodes, cpu, memory, service-port-names, cluster-rbac, injection-labels"
        in _one_error_line(r)
    )
    r = run_cli("preflight", "--context", "test", env=env)
    assert r.code == 1 and "FAIL  nodes: 3 nodes (need at least 4)" in r.out


def test_cluster_down_exit_5_and_unknown_context_exit_3(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    emu.faults.fail(1000, 503)
    r = run_cli("preflight", "--context", "test", env=env)
    assert r.code == 5
    assert _one_error_line(r).startswith("airgap: error: context test: get server version: 503 ServiceUnavailable")
    assert "Traceback" not in r.err
    r = run_cli("mesh", "status", "--context", "nope", env=env)
    assert r.code == 3 and "context 'nope' not found in kubeconfig" in _one_error_line(r)


def test_bundle_import_different_cacerts_refused_then_rotate(
    kube_cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    old = emu.create("secrets", "istio-system", {"metadata": {"name": "cacerts"}, "data": {"ca-cert.pem": "b2xk"}})
    imp = (*_c1_import(pki, bkeys, passfile, tmp_path), "--context", "test")
    r = run_cli(*imp, env=env)
    assert r.code == 4 and "already exists with different content" in _one_error_line(r)
    assert emu.get("secrets", "istio-system", "cacerts") == old
    r = run_cli(*imp, "--rotate", env=env)
    assert r.code == 0, r.err
    backups = emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts")
    assert len(backups) == 1 and backups[0]["data"] == {"ca-cert.pem": "b2xk"}
    assert len(emu.get("secrets", "istio-system", "cacerts")["data"]) == 4
    assert len([q for q in emu.requests_for("PUT", "/secrets/cacerts") if q.status == 200]) == 1


# -- fleets -------------------------------------------------------------------------------------------


def test_fleet_preflight_one_failure_does_not_stop_others(kube_fleet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = kube_fleet(3)
    fleet.emulators["c2"].set_nodes(2)
    fleet.emulators["c3"].faults.fail(1000, 503)
    args = [a for c in fleet.contexts for a in ("--context", c)]
    r = run_cli("preflight", *args, "--parallel", "2", env=_env(fleet, tmp_path))
    assert r.code == 5  # the worst: c3's cluster failure
    rows = {
        line.split()[0]: line.split()
        for line in r.out.splitlines()
        if line.split() and line.split()[0] in fleet.contexts
    }
    assert rows["c1"][1:3] == ["pass", "0"] and rows["c2"][1:3] == ["fail", "1"] and rows["c3"][1:3] == ["failed", "5"]
    assert "2 of 3 clusters failed: c2 (exit 1), c3 (exit 5)" in _one_error_line(r)
    r = run_cli("preflight", *args, "--json", env=_env(fleet, tmp_path))
    doc = json.loads(r.out)
    assert doc["exit_code"] == 5 and [c["context"] for c in doc["clusters"]] == ["c1", "c2", "c3"]
    assert doc["preflight"]["c1"]["ok"] is True


def test_fleet_install_and_inject(kube_fleet, release: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fleet = kube_fleet(3)
    for emu in fleet.emulators.values():
        seed_cacerts(emu)
    env = _env(fleet, tmp_path)
    args = [a for c in fleet.contexts for a in ("--context", c)]
    r = run_cli(
        "mesh",
        "install",
        *args,
        "--release",
        release,
        "--cluster-name",
        "cluster1",
        "--network",
        "n",
        "--mesh-id",
        "m",
        env=env,
    )
    assert r.code == 2  # the same cluster name for every cluster is a usage error
    r = run_cli(
        "mesh", "install", *args, "--release", release, "--cluster-name", "{context}", "--network", "net-{context}",
        "--mesh-id", "proj-1", *POLL, env=env,
    )  # fmt: skip
    assert r.code == 0, r.err
    for ctx, emu in fleet.emulators.items():
        assert (
            emu.get("namespaces", None, "istio-system")["metadata"]["labels"]["topology.istio.io/network"]
            == f"net-{ctx}"
        )
    calls = _istioctl_calls(fleet)
    assert sorted(c[2] for c in calls) == ["c1", "c2", "c3"]
    for emu in fleet.emulators.values():
        emu.add_deployment("shop", "web", {"app": "web"})
    fleet.emulators["c2"].delete("namespaces", None, "shop")
    r = run_cli("mesh", "inject", "shop", *args, "--restart", *POLL, env=env)
    assert r.code == 4 and "1 of 3 clusters failed: c2 (exit 4)" in _one_error_line(r)
    for ctx in ("c1", "c3"):
        pods = fleet.emulators[ctx].list("pods", "shop")
        assert pods and all(p["metadata"]["labels"].get("istio.io/rev") == "asm-186-8" for p in pods)


def test_fleet_render(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli(
        "mesh", "install", "--context", "a", "--context", "b", "--release", release, "--cluster-name", "{context}",
        "--network", "net-{context}", "--mesh-id", "m", "--output-dir", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert (
        yaml.safe_load((out / "clusters" / "b" / "cluster.yaml").read_text())["spec"]["values"]["global"]["network"]
        == "net-b"
    )
    assert "--context a" in (out / "clusters" / "a" / "istioctl-install.sh").read_text()


def test_kubeconfig_from_env_and_current_context(kube_cluster: Cluster, tmp_path: Path) -> None:
    env = {**_env(kube_cluster, tmp_path)}
    r = run_cli("preflight", "--json", env=env)  # no --context: the current one
    assert json.loads(r.out)["context"] == kube_cluster.context
    env["KUBECONFIG"] = str(tmp_path / "missing")
    r = run_cli("preflight", env=env)
    assert r.code == 3 and "kubeconfig not found" in _one_error_line(r)
    assert os.environ.get("KUBECONFIG") != env["KUBECONFIG"]


def test_bundle_import_through_faults(
    kube_cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    imp = _c1_import(pki, bkeys, passfile, tmp_path)
    emu.faults.fail(2, 503, method="POST")
    emu.faults.throttle(1, retry_after=0, method="GET", path="/secrets/cacerts")
    emu.faults.drop(1, after_write=True, method="POST", path="/secrets")
    emu.faults.drop(1, method="GET")
    r = run_cli(*imp, "--context", "test", env=env)
    assert r.code == 0, r.err
    assert len(emu.get("secrets", "istio-system", "cacerts")["data"]) == 4
    assert [s["metadata"]["name"] for s in emu.list("secrets", "istio-system")] == ["cacerts"]
    # a cluster that never recovers: exit 5, one line, and the local record is not advanced
    emu.delete("secrets", "istio-system", "cacerts")
    emu.faults.fail(1000, 503, path="/secrets")
    r = run_cli(*imp, "--context", "test", env=env)
    assert r.code == 5 and "gave up after 5 attempts" in _one_error_line(r)


def test_mesh_install_rerun_after_kill(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.helpers import REPO

    emu = kube_cluster.emu()
    seed_cacerts(emu)
    env = {**os.environ, **_env(kube_cluster, tmp_path), "PYTHONPATH": str(REPO)}
    args = [
        sys.executable,
        "-m",
        "airgap",
        "mesh",
        "install",
        "--context",
        "test",
        "--release",
        str(release),
        *INSTALL,
        *POLL,
    ]
    gate = emu.faults.hold(method="POST", path="/namespaces/istio-system/services")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert gate.arrived.wait(60), proc.communicate(timeout=5)
        os.kill(proc.pid, signal.SIGKILL)  # killed after istioctl and the label, before the Service landed
        proc.wait(timeout=10)
    finally:
        gate.release(apply=False)
    assert emu.get("services", "istio-system", "istiod") is None
    r = run_cli(
        "mesh", "install", "--context", "test", "--release", release, *INSTALL, *POLL, env=_env(kube_cluster, tmp_path)
    )
    assert r.code == 0, r.err
    assert "network label: unchanged" in r.out and "istiod service: created" in r.out
    assert [s["metadata"]["name"] for s in emu.list("services", "istio-system")] == ["istiod"]
    assert len(emu.list("deployments", "istio-system", "app=istiod")) == 1
    assert len(_istioctl_calls(kube_cluster)) == 2


GKE = "gke_my-project-123456_us-central1-a_prod"
EKS = "arn:aws:eks:eu-west-1:123456789012:cluster/prod-eu"


def test_fleet_render_with_a_dotdot_context_writes_nothing_outside_the_output_dir(
    release: Path, tmp_path: Path
) -> None:
    """Issue 9 item 6: a context named '..' (or holding '/') is one safe path element under --output-dir."""
    out = tmp_path / "a" / "out"
    r = run_cli(
        "mesh", "install", "--context", "..", "--context", "x/../../y", "--release", release,
        "--cluster-name", "c{context}c", "--network", "n", "--mesh-id", "m", "--output-dir", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["out"]
    folders = sorted(p.name for p in (out / "clusters").iterdir())
    assert len(folders) == 2 and all(f not in (".", "..") and "/" not in f for f in folders)
    assert "x-y" in folders


def test_fleet_gke_and_eks_context_names_work_with_context_and_cluster(release: Path, tmp_path: Path) -> None:
    """Issue 9 item 6: {context} is the name made a label value; {cluster} is its cluster part."""
    out = tmp_path / "out"
    r = run_cli(
        "mesh", "install", "--context", GKE, "--context", EKS, "--release", release,
        "--cluster-name", "{cluster}", "--network", "net-{context}", "--mesh-id", "m", "--output-dir", out,
    )  # fmt: skip
    assert r.code == 0, r.err
    eks_dir = out / "clusters" / "arn-aws-eks-eu-west-1-123456789012-cluster-prod-eu"
    values = yaml.safe_load((eks_dir / "cluster.yaml").read_text())["spec"]["values"]["global"]
    assert values["multiCluster"]["clusterName"] == "prod-eu"
    assert values["network"] == "net-arn-aws-eks-eu-west-1-123456789012-cluster-prod-eu"
    assert EKS in (eks_dir / "istioctl-install.sh").read_text()  # istioctl still gets the real context
    gke = yaml.safe_load((out / "clusters" / GKE / "cluster.yaml").read_text())["spec"]["values"]["global"]
    assert gke["multiCluster"]["clusterName"] == "prod"


def test_fleet_refuses_two_contexts_that_give_the_same_cluster_name(release: Path, tmp_path: Path) -> None:
    r = run_cli(
        "mesh", "install", "--context", "gke_p1_z_prod", "--context", "gke_p2_z_prod", "--release", release,
        "--cluster-name", "{cluster}", "--network", "n", "--mesh-id", "m", "--output-dir", tmp_path / "out",
    )  # fmt: skip
    assert r.code == 3
    one_error_line(r, "gives 'prod' for both contexts", "{context}")
    assert not (tmp_path / "out").exists()


# -- issue 23, fault 21: insecure-skip-tls-verify contexts -----------------------------------------------------


def test_fault_21_insecure_context_warns_once_and_writes_only_with_insecure(
    kube_cluster: Cluster, tmp_path: Path
) -> None:
    """One warning naming the context (no InsecureRequestWarning blocks); a write is refused (exit 4,
    nothing changed) unless --insecure."""
    from tests.helpers import run_proc

    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-186-8")
    emu.create("namespaces", None, {"metadata": {"name": "shop"}})
    emu.wait_idle()
    doc = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]
    kc = tmp_path / "kc-insecure"
    kc.write_text(yaml.safe_dump(doc))
    env = {**_env(kube_cluster, tmp_path), "KUBECONFIG": str(kc)}
    warning = (
        "airgap: warning: context test: insecure-skip-tls-verify is set: the API server's certificate is not "
        "verified, anyone on the path can read and change what is sent"
    )
    r = run_proc("mesh", "status", "--context", "test", env=env)
    assert r.err.count(warning) == 1 and "InsecureRequestWarning" not in r.err and "Unverified" not in r.err
    r = run_proc("mesh", "inject", "shop", "--context", "test", env=env)
    assert r.code == 4, r.err
    assert [line for line in r.err.splitlines() if line.strip()] == [
        warning,
        "airgap: error: context test: patch namespaces shop: refusing to write to a cluster whose TLS certificate "
        "is not verified (insecure-skip-tls-verify in the kubeconfig); pass --insecure to allow it",
    ]
    assert "istio.io/rev" not in emu.get("namespaces", None, "shop")["metadata"].get("labels", {})
    r = run_proc("mesh", "inject", "shop", "--context", "test", "--insecure", env=env)
    assert r.code == 0, r.err
    assert r.err.count(warning) == 1 and "InsecureRequestWarning" not in r.err
    assert emu.get("namespaces", None, "shop")["metadata"]["labels"]["istio.io/rev"] == "asm-186-8"


# -- issue 23, fault 9: another cluster's cacerts is never replaced, --rotate or not -------------------------


def test_fault_9_rotate_refuses_a_cacerts_annotated_for_another_cluster(
    kube_cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    theirs = {
        "metadata": {"name": "cacerts", "annotations": {"airgap.dev/cluster": "inter", "airgap.dev/sequence": "1"}}
    }
    old = emu.create("secrets", "istio-system", {**theirs, "data": {"ca-cert.pem": "b2xk"}})
    imp = _c1_import(pki, bkeys, passfile, tmp_path)
    line = (
        "airgap: error: context test: secret istio-system/cacerts is annotated for cluster 'inter' "
        "(airgap.dev/cluster), not 'c1' of this bundle: refusing to replace it, --rotate or not "
        "(is --context the right cluster?)"
    )
    for extra in ((), ("--rotate",)):
        r = run_cli(*imp, "--context", "test", *extra, env=env)
        assert r.code == 4, r.err
        assert _one_error_line(r) == line
    r = run_cli(*imp, "--context", "test", "--rotate", "--dry-run", env=env)
    assert r.code == 4 and _one_error_line(r) == line.replace("error: ", "error: dry run: would refuse: ", 1)
    assert emu.get("secrets", "istio-system", "cacerts") == old
    assert emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts") == []
    assert not emu.requests_for("PUT", "/secrets/") and not emu.requests_for("POST", "/secrets")


# -- issue 23, fault 22: foot-guns in cluster commands ------------------------------------------------------------

_STRAY_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: ghost
  cluster: {server: "https://203.0.113.9:6443", insecure-skip-tls-verify: true}
users:
- name: ghost
  user: {token: t}
contexts:
- name: ghost
  context: {cluster: ghost, user: ghost}
current-context: ghost
"""


def test_fault_22_foot_guns_are_refused_or_named(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    """mesh inject kube-system/istio-system needs --force; a malformed --sops-age is named as such; a stray
    remote secret is a mesh status problem; mesh install does not take over someone else's istiod Service
    without --force, and when it does, leaves exactly the guide's."""
    import base64

    emu = kube_cluster.emu()
    env = _env(kube_cluster, tmp_path)
    emu.simulate_istio_install("asm-186-8")
    emu.wait_idle()
    # 1. system namespaces
    for ns in ("kube-system", "istio-system"):
        r = run_cli("mesh", "inject", ns, "--context", "test", "--restart", env=env)
        assert r.code == 4
        assert one_error_line(r) == (
            f"airgap: error: namespace {ns}: a system namespace; injecting it puts sidecars into the cluster's own "
            "pods (and --restart would restart them all); nothing changed; pass --force if you mean it"
        )
        assert "istio.io/rev" not in (emu.get("namespaces", None, ns)["metadata"].get("labels") or {})
    r = run_cli("mesh", "inject", "kube-public", "--context", "test", "--force", env=env)
    assert r.code == 0, r.err
    # 2. --sops-age names itself
    r = run_cli(
        "mesh", "install", "--context", "test", "--release", release, *INSTALL, "--output-dir", tmp_path / "out",
        "--layout", "clusters", "--sops-age", "age1notarecipient",
    )  # fmt: skip
    assert r.code == 3
    assert one_error_line(r) == "airgap: error: --sops-age: not an age X25519 recipient (expected age1…)"
    # 3. a stray remote secret: an unknown cluster's server, without TLS verification
    stray = {
        "metadata": {"name": "istio-remote-secret-ghost", "labels": {"istio/multiCluster": "true"}},
        "data": {"ghost": base64.b64encode(_STRAY_KUBECONFIG.encode()).decode()},
    }
    emu.create("secrets", "istio-system", stray)
    r = run_cli("mesh", "status", "--context", "test", "--json", env=env)
    assert r.code == 1
    problems = json.loads(r.out)["problems"]
    assert [p for p in problems if "remote secret" in p] == [
        "context test: remote secret istio-remote-secret-ghost points at https://203.0.113.9:6443, a server no "
        "context of the kubeconfig knows",
        "context test: remote secret istio-remote-secret-ghost skips TLS verification (insecure-skip-tls-verify)",
    ]
    # 4. someone else's istiod Service
    seed_cacerts(emu)
    theirs = {
        "metadata": {
            "name": "istiod",
            "labels": {"app": "istiod", "owner": "team-x"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "spec": {"selector": {"app": "their-istiod"}, "ports": [{"name": "grpc-xds", "port": 15010}]},
    }
    before = emu.create("services", "istio-system", theirs)
    install = ("mesh", "install", "--context", "test", "--release", release, *INSTALL, *POLL)
    r = run_cli(*install, env=env)
    assert r.code == 4
    assert _one_error_line(r) == (
        "airgap: error: context test: service istio-system/istiod was made by someone else (other ports or "
        "selector; label(s) owner; no airgap.dev/managed-by annotation); left untouched, nothing installed; pass "
        "--force to replace it with the guide's"
    )
    assert emu.get("services", "istio-system", "istiod") == before
    assert _istioctl_calls(kube_cluster) == []
    r = run_cli(*install, "--force", env=env)
    assert r.code == 0, r.err
    svc = emu.get("services", "istio-system", "istiod")
    from airgap.connected.mesh import istiod_service

    guide = istiod_service("asm-186-8")
    assert svc["metadata"]["labels"] == guide["metadata"]["labels"]
    assert svc["metadata"]["annotations"] == {"airgap.dev/managed-by": "airgap mesh install"}
    assert svc["spec"]["selector"] == guide["spec"]["selector"]
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [443, 15010, 15012, 15014]
    r = run_cli(*install, env=env)  # airgap's own now: no --force needed, nothing to change
    assert r.code == 0, r.err
    assert emu.get("services", "istio-system", "istiod")["metadata"]["resourceVersion"] == svc["metadata"][
        "resourceVersion"
    ]
