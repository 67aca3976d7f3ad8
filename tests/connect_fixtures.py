"""Fixtures of the ``mesh connect`` tests: clusters prepared as mesh install and bundle import leave them.

Shared by tests/connected/test_remote_secrets.py and tests/cli/test_gitops_cli.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airgap.connected.remote_secrets import MULTICLUSTER_LABEL
from tests.connected.kubehelpers import FAST_ENV, cacerts_manifest
from tests.kubeapi.fixtures import Fleet
from tests.kubeapi.server import Emulator

MESH = "proj-1"


def prepare_cluster(
    emu: Emulator, name: str, cluster_dir: Path, *, mesh_id: str = MESH, network: str | None = None
) -> None:
    """What mesh install and bundle import leave: istio-system (network, clusterName, meshID) and cacerts."""
    emu.create(
        "namespaces",
        None,
        {
            "metadata": {
                "name": "istio-system",
                "labels": {"topology.istio.io/network": network or f"net-{name}"},
                "annotations": {"airgap.dev/cluster-name": name, "airgap.dev/mesh-id": mesh_id},
            }
        },
    )
    emu.create("secrets", "istio-system", cacerts_manifest(cluster_dir))


def connect_fleet(kube_fleet: Any, pki: Path, n: int) -> Fleet:
    fleet: Fleet = kube_fleet(n)
    for i, ctx in enumerate(fleet.contexts):
        prepare_cluster(fleet.emulators[ctx], f"cluster{i + 1}", pki / ("c1" if i % 2 == 0 else "c2"))
    return fleet


def connect_env(fleet: Fleet, tmp_path: Path) -> dict[str, str]:
    return {**fleet.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}


def ctx_args(contexts: list[str]) -> list[str]:
    return [a for c in contexts for a in ("--context", c)]


def remote_secrets_of(emu: Emulator) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in emu.list("secrets", "istio-system", f"{MULTICLUSTER_LABEL}=true")}
