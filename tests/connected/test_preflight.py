"""Preflight checks: quantities, versions, and each requirement against the emulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from airgap.connected.kube import connect
from airgap.connected.preflight import check_version, parse_quantity, preflight
from tests.connected.kubehelpers import FAST
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("4", Decimal(4)),
        ("3800m", Decimal("3.8")),
        ("16Gi", Decimal(16 * 1024**3)),
        ("15990784Ki", Decimal(15990784 * 1024)),
        ("15G", Decimal(15 * 1000**3)),
        ("1e3", Decimal(1000)),
        ("0.5", Decimal("0.5")),
    ],
)
def test_parse_quantity(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "4 cores", "16Qi", "--1"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


class _Version:
    context = "v"

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def version(self) -> dict[str, Any]:
        return self.doc


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        ({"gitVersion": "v1.19.16-gke.1"}, True),
        ({"gitVersion": "v1.16.0"}, True),
        ({"gitVersion": "v1.15.12"}, False),
        ({"gitVersion": "v1.20.0"}, False),
        ({"major": "1", "minor": "18+"}, True),
        ({"major": "x"}, False),
    ],
)
def test_version_check(doc: dict[str, Any], ok: bool) -> None:
    assert check_version(_Version(doc)).ok is ok


def test_emulated_cluster_passes_and_system_namespaces_are_skipped(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()  # the emulator seeds kube-system/kube-dns with ports "dns" and "dns-tcp"
    assert emu.get("services", "kube-system", "kube-dns") is not None
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        report = preflight(kube)
    assert report.ok, report.text()
    assert "PASS  memory: 68.7 GB allocatable" in report.text()


def test_each_requirement_can_fail(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.set_nodes(4, cpu="900m", memory="3Gi")
    emu.denied.add(("create", "clusterroles"))
    emu.create(
        "services", "default", {"metadata": {"name": "db"}, "spec": {"ports": [{"name": "mysqlx", "port": 3306}]}}
    )
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        report = preflight(kube)
    failed = {c.name: c for c in report.failed}
    assert set(failed) == {"cpu", "memory", "service-port-names", "cluster-rbac"}
    assert failed["cpu"].detail == "3.6 vCPU allocatable (need at least 4)"
    assert failed["service-port-names"].offenders == ["default/db port 3306 name mysqlx"]


@pytest.mark.parametrize(
    ("version", "ok"),
    [("v1.15.12", False), ("v1.16.15", True), ("v1.17.17", True), ("v1.18.20", True), ("v1.19.16", True),
     ("v1.20.15", False), ("v1.32.4", False)],
)  # fmt: skip
def test_version_range_against_the_emulated_server(kube_cluster: Cluster, version: str, ok: bool) -> None:
    kube_cluster.emu().version = version
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        report = preflight(kube)
    checks = {c.name: c for c in report.checks}
    assert checks["kubernetes-version"].ok is ok and version in checks["kubernetes-version"].detail
    assert checks["api-access"].ok, report.text()  # the admin may make every call airgap makes
