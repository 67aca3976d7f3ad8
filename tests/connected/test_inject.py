"""``mesh inject --revision``: refused (exit 4, nothing changed) for a revision no control plane serves."""

from __future__ import annotations

from pathlib import Path

from tests.connected.kubehelpers import FAST_ENV
from tests.helpers import one_error_line, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster


def test_revision_typo_refused_naming_the_running_ones(kube_cluster: Cluster, tmp_path: Path) -> None:
    emu = kube_cluster.emu()
    env = {**kube_cluster.env, **FAST_ENV, "AIRGAP_STATE_DIR": str(tmp_path / "state")}
    emu.add_deployment("shop", "web", {"app": "web"})
    r = run_cli("mesh", "inject", "shop", "--context", "test", "--revision", "asm-186-8", env=env)
    assert r.code == 4
    assert (
        "no control plane serves revision 'asm-186-8' (running: none; no istiod runs in istio-system)"
        in one_error_line(r, alone=False)
    )
    emu.simulate_istio_install("asm-186-8")
    emu.simulate_istio_install("asm-187-2", ingress=False)
    emu.wait_idle()
    r = run_cli("mesh", "inject", "shop", "--context", "test", "--revision", "asm-186-9", env=env)
    assert r.code == 4
    line = one_error_line(r, alone=False)
    assert "no control plane serves revision 'asm-186-9' (running: asm-186-8, asm-187-2); nothing changed" in line
    assert "istio.io/rev" not in ((emu.get("namespaces", None, "shop") or {})["metadata"].get("labels") or {})
    r = run_cli("mesh", "inject", "shop", "--context", "test", "--revision", "asm-186-8", "--restart", env=env)
    assert r.code == 0, r.err
    pods = emu.list("pods", "shop")
    assert pods and all(p["metadata"]["labels"].get("istio.io/rev") == "asm-186-8" for p in pods)
