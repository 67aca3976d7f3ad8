"""mesh install --east-west, release-driven defaults, and preflight --release, through the CLI."""

# ruff: noqa: F811  (fixtures imported from tests.cli.test_mesh_cli and tests.kubeapi.fixtures)

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.connected.kubehelpers import FAST_ENV, seed_cacerts
from tests.helpers import run_cli, tree
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster
from tests.release_fixtures import _release_template, make_signed_release, release  # noqa: F401

INSTALL = ("--cluster-name", "cluster1", "--network", "net1", "--mesh-id", "proj-1")


def _env(c: Cluster, tmp_path: Path) -> dict[str, str]:
    return {**c.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}


def test_east_west_is_rendered_with_the_control_planes_revision(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli("mesh", "install", "--release", release, *INSTALL, "--east-west", "--output-dir", out)
    assert r.code == 0, r.err
    assert "eastwest-gateway.yaml" in tree(out) and "40-cross-network-gateway.yaml" in tree(out)
    ew = yaml.safe_load((out / "eastwest-gateway.yaml").read_text())
    assert ew["spec"]["revision"] == "asm-186-8" and ew["spec"]["profile"] == "empty"
    gw = ew["spec"]["components"]["ingressGateways"][0]
    assert gw["label"]["topology.istio.io/network"] == "net1"
    assert {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": "net1"} in gw["k8s"]["env"]
    assert {p["port"] for p in gw["k8s"]["service"]["ports"]} == {15021, 15443, 15012, 15017}
    cross = yaml.safe_load((out / "40-cross-network-gateway.yaml").read_text())
    server = cross["spec"]["servers"][0]
    assert server["port"]["number"] == 15443 and server["tls"]["mode"] == "AUTO_PASSTHROUGH"
    assert cross["spec"]["selector"] == {"istio": "eastwestgateway"}
    script = (out / "istioctl-install.sh").read_text().splitlines()
    assert script[-2].endswith("cluster.yaml -y") and script[-1].endswith("eastwest-gateway.yaml -y")


def test_east_west_install_against_the_emulator(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    seed_cacerts(emu)
    r = run_cli(
        "mesh",
        "install",
        "--context",
        "test",
        "--release",
        release,
        *INSTALL,
        "--east-west",
        "--poll",
        "0.02",
        "--json",
        env=_env(kube_cluster, tmp_path),
    )
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["east_west_gateway"] == "installed"
    assert any(p.startswith("istio-eastwestgateway") for p in doc["ready_pods"])
    gw = emu.get("gateways", "istio-system", "cross-network-gateway")
    assert gw is not None and gw["spec"]["servers"][0]["tls"]["mode"] == "AUTO_PASSTHROUGH"
    ns = emu.get("namespaces", None, "istio-system")
    assert ns is not None
    assert ns["metadata"]["annotations"]["airgap.dev/cluster-name"] == "cluster1"
    assert ns["metadata"]["annotations"]["airgap.dev/mesh-id"] == "proj-1"


def test_defaults_follow_the_release(tmp_path: Path) -> None:
    tarball, sig, pub = make_signed_release(tmp_path, version="1.20.3")
    rel = tmp_path / "rel"
    assert run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", rel).code == 0
    out = tmp_path / "out"
    r = run_cli("mesh", "install", "--release", rel, *INSTALL, "--output-dir", out)
    assert r.code == 0, r.err
    op = yaml.safe_load((out / "cluster.yaml").read_text())
    assert (op["spec"]["revision"], op["spec"]["profile"]) == ("1-20-3", "default")
    assert "warning" not in r.err


def test_a_release_not_in_the_catalog_warns_and_derives(tmp_path: Path) -> None:
    tarball, sig, pub = make_signed_release(tmp_path, version="1.9.5-asm.2")
    rel = tmp_path / "rel"
    assert run_cli("release", "extract", tarball, "--signature", sig, "--key", pub, "--out", rel).code == 0
    out = tmp_path / "out"
    r = run_cli("mesh", "install", "--release", rel, *INSTALL, "--output-dir", out)
    assert r.code == 0, r.err
    assert "not in airgap's catalog" in r.err
    assert yaml.safe_load((out / "cluster.yaml").read_text())["spec"]["revision"] == "asm-195-2"


def test_preflight_checks_the_releases_kubernetes_range(kube_cluster: Cluster, release: Path, tmp_path: Path) -> None:
    kube_cluster.emu().version = "v1.19.16"
    env = _env(kube_cluster, tmp_path)
    r = run_cli("preflight", "--context", "test", "--release", release, "--json", env=env)
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert checks["kubernetes-version"]["ok"] and "asm-1.8" in checks["kubernetes-version"]["detail"]
    kube_cluster.emu().version = "v1.29.1"
    r = run_cli("preflight", "--context", "test", "--release", release, "--json", env=env)
    assert r.code == 1
    checks = {c["name"]: c for c in json.loads(r.out)["checks"]}
    assert not checks["kubernetes-version"]["ok"]
