"""airgap.connected.mesh: cluster.yaml, the istiod Service, istioctl runs, and the Ready wait."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from airgap.connected.kube import connect
from airgap.connected.mesh import (
    MeshSettings,
    apply_istiod_service,
    control_plane_state,
    deep_merge,
    istioctl_argv,
    istiod_service,
    render_operator,
    run_istioctl,
    wait_ready,
)
from airgap.errors import ClusterError, InvalidInput
from tests.connected.kubehelpers import FAST
from tests.guide_fixtures import ISTIOD_SERVICE
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster

GUIDE_SERVICE = ISTIOD_SERVICE

GUIDE_CLUSTER = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
spec:
  profile: asm-multicloud
  revision: asm-186-8
  values:
    global:
      meshID: MESH_ID
      multiCluster:
        clusterName: CLUSTER_NAME
      network: NETWORK_ID
"""


def test_istiod_service_is_the_guides() -> None:
    assert istiod_service("asm-186-8") == yaml.safe_load(GUIDE_SERVICE)


def test_cluster_yaml_is_the_guides() -> None:
    s = MeshSettings("CLUSTER_NAME", "NETWORK_ID", "MESH_ID")
    assert render_operator(s) == yaml.safe_load(GUIDE_CLUSTER)


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": {"f": 1}}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": {"f": 1}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs untouched
    assert deep_merge({"a": {"b": 1}}, {"a": "scalar"}) == {"a": "scalar"}


def test_overlays_merge_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "1.yaml", tmp_path / "2.yaml"
    first.write_text("spec:\n  meshConfig:\n    a: 1\n    b: 1\n")
    second.write_text("spec:\n  meshConfig:\n    b: 2\n")
    op = render_operator(MeshSettings("c", "n", "m", overlays=(first, second)))
    assert op["spec"]["meshConfig"] == {"a": 1, "b": 2}
    op = render_operator(MeshSettings("c", "n", "m", overlays=(second, first)))
    assert op["spec"]["meshConfig"] == {"a": 1, "b": 1}


def test_overlay_may_repeat_a_pinned_value_but_not_change_it(tmp_path: Path) -> None:
    same = tmp_path / "same.yaml"
    same.write_text("spec:\n  values:\n    global:\n      network: n\n")
    assert render_operator(MeshSettings("c", "n", "m", overlays=(same,)))["spec"]["values"]["global"]["network"] == "n"
    other = tmp_path / "other.yaml"
    other.write_text("spec:\n  values:\n    global:\n      meshID: elsewhere\n")
    with pytest.raises(InvalidInput, match="contradicting --mesh-id 'm'"):
        render_operator(MeshSettings("c", "n", "m", overlays=(other,)))
    with pytest.raises(InvalidInput, match="cannot read overlay"):
        render_operator(MeshSettings("c", "n", "m", overlays=(tmp_path / "missing.yaml",)))


def test_settings_validation_and_fleet_templates() -> None:
    with pytest.raises(InvalidInput, match="--revision 'ASM_1'"):
        MeshSettings("c", "n", "m", revision="ASM_1")
    with pytest.raises(InvalidInput, match="--network"):
        MeshSettings("c", "-n", "m")
    t = MeshSettings("{context}", "net-{context}", "m")
    assert t.for_context("east").cluster_name == "east" and t.for_context("east").network == "net-east"
    # a context name that is no label value is mapped to one (issue 9 item 6), never refused
    assert t.for_context("a:b").cluster_name == "a-b"
    with pytest.raises(InvalidInput, match=r"--cluster-name 'a:b-\{context\}'"):
        MeshSettings("a:b-{context}", "n", "m").for_context("east")


def test_istioctl_argv() -> None:
    assert istioctl_argv(Path("/r/bin/istioctl"), "ctx", Path("/t/cluster.yaml")) == [
        "/r/bin/istioctl", "install", "--context", "ctx", "-f", "/t/cluster.yaml", "-y",
    ]  # fmt: skip
    assert "--context" not in istioctl_argv(Path("/r/bin/istioctl"), None, Path("/t/cluster.yaml"))


def _script(tmp_path: Path, body: str) -> list[str]:
    p = tmp_path / "tool.py"
    p.write_text(body)
    return [sys.executable, str(p)]


def test_run_istioctl_streams_and_reports_failure(tmp_path: Path) -> None:
    lines: list[str] = []
    run_istioctl(
        _script(tmp_path, "print('one'); print('two', flush=True)"), timeout=30, on_line=lines.append, context="c"
    )
    assert lines == ["one", "two"]
    argv = _script(tmp_path, "import sys; print('boom'); sys.exit(3)")
    with pytest.raises(ClusterError, match=r"context c: istioctl install failed \(exit 3\)"):
        run_istioctl(argv, timeout=30, on_line=lines.append, context="c")


def test_run_istioctl_timeout_kills_it(tmp_path: Path) -> None:
    argv = _script(tmp_path, "import time; print('started', flush=True); time.sleep(60)")
    lines: list[str] = []
    with pytest.raises(ClusterError, match=r"did not finish within 1\.5s; stopped"):
        run_istioctl(argv, timeout=1.5, on_line=lines.append, context="c")
    assert lines == ["started"]
    with pytest.raises(ClusterError, match="cannot run"):
        run_istioctl([str(tmp_path / "absent")], timeout=1, on_line=lines.append, context="c")


def test_wait_ready_sees_pods_become_ready(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.ready_delay = 0.2
    notes: list[str] = []
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        ready, waiting = control_plane_state(kube, "asm-186-8")
        assert ready == [] and waiting == ["istiod (asm-186-8): no pods yet", "istio-ingressgateway: no pods yet"]
        emu.simulate_istio_install("asm-186-8")
        ready = wait_ready(kube, "asm-186-8", timeout=10, poll=0.02, notify=notes.append)
    assert len(ready) == 2 and any(r.startswith("istiod-asm-186-8-") for r in ready)
    assert notes[-1] == "context test: 2 ready"


def test_istiod_of_another_revision_does_not_count(kube_cluster: Cluster) -> None:
    emu = kube_cluster.emu()
    emu.simulate_istio_install("asm-185-1")
    emu.wait_idle()
    with connect(kube_cluster.context, kubeconfig=kube_cluster.kubeconfig, policy=FAST) as kube:
        with pytest.raises(ClusterError, match=r"istiod \(asm-186-8\): no pods yet"):
            wait_ready(kube, "asm-186-8", timeout=0.1, poll=0.02, notify=lambda _m: None)
        assert apply_istiod_service(kube, "asm-186-8") == "created"
        assert apply_istiod_service(kube, "asm-186-8") == "unchanged"
