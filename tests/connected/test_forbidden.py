"""403 Forbidden on each call airgap makes, from a user whose RBAC lacks exactly that permission.

The user authenticates with its own token and holds a (Cluster)Role per entry of
``preflight.ACCESS``; each test takes one away. A refusal is one clear line naming the context,
the call and the server's message (exit 5: the cluster said no), or, where airgap asks first
(every write: issue 23), a refusal before anything is written (exit 4). Nothing is left half-done:
the live objects are as they were, and a rerun with the permission back completes.
(Emulator-only: real RBAC users cannot be made by a test.)
"""

# ruff: noqa: F811  (fixtures imported from tests.bundle_fixtures and tests.kubeapi.fixtures)

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airgap.connected.cacerts import apply_cacerts
from airgap.connected.inject import enable_injection
from airgap.connected.kube import Kube, connect
from airgap.connected.mesh import apply_istiod_service
from airgap.connected.preflight import ACCESS, preflight
from airgap.connected.status import mesh_status
from airgap.errors import ClusterError, Refused
from tests.bundle_fixtures import Keys, bkeys  # noqa: F401
from tests.connected.kubehelpers import FAST, FAST_ENV, cacerts_manifest, namespace_manifest
from tests.helpers import one_error_line, run_cli
from tests.kubeapi.fixtures import *  # noqa: F403
from tests.kubeapi.fixtures import Cluster
from tests.kubeapi.server import Emulator, write_kubeconfig

USER = "operator"


@dataclass
class Limited:
    emu: Emulator
    kubeconfig: Path
    granted: dict[tuple[str, str, str | None], str]  # (verb, resource, namespace) -> binding name

    def kube(self) -> Kube:
        return connect("limited", kubeconfig=self.kubeconfig, policy=FAST)

    def revoke(self, verb: str, resource: str, namespace: str | None = None) -> None:
        name = self.granted.pop((verb, resource, namespace))
        plural = "rolebindings" if namespace else "clusterrolebindings"
        self.emu.delete(plural, namespace, name)

    def regrant(self, verb: str, resource: str, group: str = "", namespace: str | None = None) -> None:
        self.emu.grant(USER, [verb], [resource], group=group, namespace=namespace)


@pytest.fixture
def limited(kube_cluster: Cluster, tmp_path: Path) -> Iterator[Limited]:
    emu = kube_cluster.emu()
    emu.add_user(USER)
    emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    granted = {}
    for verb, resource, group, namespace, _why in ACCESS:
        granted[(verb, resource, namespace)] = emu.grant(USER, [verb], [resource], group=group, namespace=namespace)
    kc = write_kubeconfig(tmp_path / "kc-limited", [("limited", emu, USER)])
    yield Limited(emu, kc, granted)


def _forbidden_line(exc: BaseException, verb: str, resource: str, where: str) -> None:
    text = str(exc)
    assert "\n" not in text
    assert text.startswith("context limited: ") and "403 Forbidden" in text, text
    assert f'User "{USER}" cannot {verb} resource "{resource}" in API group ""' in text, text
    assert where in text, text


def _cacerts(pki: Path) -> dict:
    return cacerts_manifest(pki / "c1")


def test_the_full_grant_is_enough(limited: Limited, pki: Path) -> None:
    with limited.kube() as kube:
        report = preflight(kube)
        assert {c.name: c.ok for c in report.checks}["api-access"] is True, report.text()
        assert apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1).outcome == "created"


@pytest.mark.parametrize(("verb", "resource", "namespace"), [(a[0], a[1], a[3]) for a in ACCESS])
def test_preflight_names_each_missing_permission(limited: Limited, verb: str, resource: str, namespace: str) -> None:
    limited.revoke(verb, resource, namespace)
    with limited.kube() as kube:
        try:
            report = preflight(kube)
        except ClusterError as exc:  # preflight's own list calls: a 403 is one clear line
            assert (verb, resource) in (("list", "nodes"), ("list", "namespaces"), ("list", "services"))
            _forbidden_line(exc, verb, resource, "at the cluster scope")
            return
    access = {c.name: c for c in report.checks}["api-access"]
    assert not access.ok
    assert len(access.offenders) == 1 and access.offenders[0].startswith(f"{verb} {resource}"), access.offenders


def test_create_secret_forbidden_leaves_no_secret(limited: Limited, pki: Path) -> None:
    limited.revoke("create", "secrets", "istio-system")
    with limited.kube() as kube, pytest.raises(Refused) as info:
        apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1)
    assert info.value.exit_code == 4  # asked first (issue 23): nothing was tried
    assert str(info.value).startswith("context limited: not allowed to create secrets in istio-system (RBAC)")
    assert limited.emu.get("secrets", "istio-system", "cacerts") is None
    assert not limited.emu.requests_for("POST", "/secrets")
    limited.regrant("create", "secrets", namespace="istio-system")
    with limited.kube() as kube:
        assert apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1).outcome == "created"


def test_get_secret_forbidden(limited: Limited, pki: Path) -> None:
    limited.revoke("get", "secrets", "istio-system")
    with limited.kube() as kube, pytest.raises(ClusterError) as info:
        apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1)
    _forbidden_line(info.value, "get", "secrets", 'secrets "cacerts" is forbidden')
    assert limited.emu.get("secrets", "istio-system", "cacerts") is None


def test_create_namespace_forbidden(limited: Limited, pki: Path) -> None:
    limited.emu.delete("namespaces", None, "istio-system")
    limited.revoke("create", "namespaces")
    with limited.kube() as kube, pytest.raises(Refused) as info:
        apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1)
    # every missing right at once (the namespace's RoleBindings went with the namespace)
    assert str(info.value).startswith(
        "context limited: not allowed to create namespaces, create secrets in istio-system (RBAC); nothing changed"
    )
    assert limited.emu.get("namespaces", None, "istio-system") is None


def test_update_secret_forbidden_keeps_live_data(limited: Limited, pki: Path) -> None:
    manifest = _cacerts(pki)
    limited.emu.create("secrets", "istio-system", {**manifest, "metadata": {"name": "cacerts"}})
    before = limited.emu.get("secrets", "istio-system", "cacerts")
    limited.revoke("update", "secrets", "istio-system")
    with limited.kube() as kube, pytest.raises(Refused) as info:
        apply_cacerts(kube, namespace_manifest(), manifest, sequence=1)  # annotate: an update
    assert str(info.value).startswith("context limited: not allowed to update secrets in istio-system (RBAC)")
    assert limited.emu.get("secrets", "istio-system", "cacerts") == before


def test_rotate_with_update_forbidden_keeps_cacerts_and_one_reusable_backup(limited: Limited, pki: Path) -> None:
    old = _cacerts(pki)
    old["data"] = {k: base64.b64encode(b"old " + k.encode()).decode() for k in old["data"]}
    limited.emu.create("secrets", "istio-system", {**old, "metadata": {"name": "cacerts"}})
    before = limited.emu.get("secrets", "istio-system", "cacerts")
    limited.revoke("update", "secrets", "istio-system")
    with limited.kube() as kube, pytest.raises(Refused) as info:
        apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1, rotate=True)
    assert str(info.value).startswith("context limited: not allowed to update secrets in istio-system (RBAC)")
    live = limited.emu.get("secrets", "istio-system", "cacerts")
    assert live is not None and before is not None and live["data"] == before["data"]
    # asked first (issue 23): no backup was made for a rotation that could not happen
    assert limited.emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts") == []
    limited.regrant("update", "secrets", namespace="istio-system")
    with limited.kube() as kube:
        assert apply_cacerts(kube, namespace_manifest(), _cacerts(pki), sequence=1, rotate=True).outcome == "rotated"
    assert len(limited.emu.list("secrets", "istio-system", "airgap.dev/backup-of=cacerts")) == 1


@pytest.mark.parametrize(("verb", "where"), [("create", "services is forbidden"), ("get", 'services "istiod"')])
def test_istiod_service_forbidden(limited: Limited, verb: str, where: str) -> None:
    limited.revoke(verb, "services", "istio-system")
    with limited.kube() as kube, pytest.raises(ClusterError) as info:
        apply_istiod_service(kube, "asm-186-8")
    _forbidden_line(info.value, verb, "services", where)
    assert limited.emu.get("services", "istio-system", "istiod") is None


def test_inject_asks_first_and_writes_nothing(limited: Limited) -> None:
    emu = limited.emu
    emu.simulate_istio_install("asm-186-8", ingress=False)
    emu.add_deployment("shop", "web", {"app": "web"})
    emu.wait_idle()
    limited.revoke("patch", "deployments", None)
    with limited.kube() as kube, pytest.raises(Refused) as info:
        enable_injection(kube, ["shop"], revision="asm-186-8", restart=True, poll=0.01)
    assert info.value.exit_code == 4
    assert "not allowed to patch deployments.apps in shop (RBAC); nothing changed" in str(info.value)
    labels = (emu.get("namespaces", None, "shop") or {})["metadata"].get("labels") or {}
    assert "istio.io/rev" not in labels  # the namespace was not labelled either
    limited.revoke("patch", "namespaces", None)
    with limited.kube() as kube, pytest.raises(Refused, match="not allowed to patch namespaces shop"):
        enable_injection(kube, ["shop"], revision="asm-186-8")


def test_status_with_secret_read_forbidden(limited: Limited) -> None:
    limited.emu.simulate_istio_install("asm-186-8", ingress=False)
    limited.emu.wait_idle()
    limited.revoke("get", "secrets", "istio-system")
    with limited.kube() as kube, pytest.raises(ClusterError) as info:
        mesh_status(kube)
    _forbidden_line(info.value, "get", "secrets", 'secrets "cacerts" is forbidden')


def test_cli_bundle_import_forbidden_is_exit_4_and_records_nothing(
    limited: Limited, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    limited.revoke("create", "secrets", "istio-system")
    bundle = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", bkeys.recipient_pub,
        "--passphrase-file", passfile, "--out", bundle,
    )  # fmt: skip
    assert r.code == 0, r.err
    state = tmp_path / "state"
    env = {"KUBECONFIG": str(limited.kubeconfig), **FAST_ENV, "AIRGAP_STATE_DIR": str(state)}
    args = ("bundle", "import", bundle, "--trust", bkeys.signer_pub, "--identity", bkeys.identity, "--cluster", "c1",
            "--context", "limited")  # fmt: skip
    r = run_cli(*args, env=env)
    assert r.code == 4
    line = one_error_line(r, alone=False)
    assert "context limited: not allowed to create secrets in istio-system (RBAC); nothing changed" in line
    assert limited.emu.get("secrets", "istio-system", "cacerts") is None
    assert not (state / "accepted.json").exists()  # the local record moves only after the cluster holds it
    limited.regrant("create", "secrets", namespace="istio-system")
    r = run_cli(*args, env=env)
    assert r.code == 0 and "created" in r.out, r.err
    assert (state / "accepted.json").exists()


# -- issue 23, fault 10: ask first, write nothing; undo what this run made when a later step fails ------------


def _bundle(pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path) -> tuple[str, ...]:
    bundle = tmp_path / "c1.bundle"
    r = run_cli(
        "bundle", "create", "c1", "--dir", pki, "--sign-key", bkeys.signer, "--recipient", bkeys.recipient_pub,
        "--passphrase-file", passfile, "--out", bundle,
    )  # fmt: skip
    assert r.code == 0, r.err
    return ("bundle", "import", str(bundle), "--trust", str(bkeys.signer_pub), "--identity", str(bkeys.identity),
            "--cluster", "c1")  # fmt: skip


def _writes(emu: Emulator) -> list[str]:
    """Every write the emulator answered, SelfSubjectAccessReviews (questions) left out."""
    reqs = [q for m in ("POST", "PUT", "PATCH", "DELETE") for q in emu.requests_for(m, "")]
    return [f"{q.method} {q.path}" for q in reqs if "selfsubjectaccessreviews" not in q.path]


def test_fault_10_bundle_import_asks_first_and_undoes_what_it_made(
    limited: Limited, kube_cluster: Cluster, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    """A user who may create namespaces but not secrets: exit 4 naming what is missing, no istio-system
    left behind. A failure after the namespace was made (secrets failing): the namespace is removed."""
    emu = limited.emu
    emu.delete("namespaces", None, "istio-system")  # its RoleBindings (the secrets rights) go with it
    imp = _bundle(pki, bkeys, passfile, tmp_path)
    env = {"KUBECONFIG": str(limited.kubeconfig), **FAST_ENV}
    before = _writes(emu)
    r = run_cli(*imp, "--context", "limited", "--dry-run", env=env)  # a dry run asks the same questions
    assert r.code == 4 and one_error_line(r, alone=False).startswith(
        "airgap: error: dry run: would refuse: context limited: not allowed to create secrets in istio-system (RBAC)"
    )
    r = run_cli(*imp, "--context", "limited", env=env)
    assert r.code == 4
    assert one_error_line(r, alone=False) == (
        "airgap: error: context limited: not allowed to create secrets in istio-system (RBAC); nothing changed; "
        "`airgap preflight` lists every permission airgap needs"
    )
    assert emu.get("namespaces", None, "istio-system") is None
    assert _writes(emu) == before  # not one write was tried
    # the admin may do everything, but every secret create fails (after the namespace was made)
    emu.faults.fail(50, 500, method="POST", path="/secrets")
    admin = {"KUBECONFIG": str(kube_cluster.kubeconfig), **FAST_ENV}
    r = run_cli(*imp, "--context", "test", env=admin)
    assert r.code == 5, r.err
    assert "create secrets istio-system/cacerts: 500" in one_error_line(r, alone=False)
    assert "removed Namespace istio-system that this run had created" in r.err
    gone = emu.get("namespaces", None, "istio-system")
    assert gone is None or gone["metadata"].get("deletionTimestamp")


def test_fault_10_mesh_connect_asks_every_cluster_before_writing_any(
    kube_fleet: Any, pki: Path, tmp_path: Path
) -> None:
    """One cluster's user may not create the reader: exit 4 naming that context and each missing right,
    and the other cluster gets no reader either. A later failure removes the readers already made."""
    fleet = kube_fleet(2)
    e1, e2 = (fleet.emulators[c] for c in fleet.contexts)
    for i, emu in enumerate((e1, e2)):
        emu.create(
            "namespaces",
            None,
            {
                "metadata": {
                    "name": "istio-system",
                    "labels": {"topology.istio.io/network": f"net-{i}"},
                    "annotations": {"airgap.dev/cluster-name": f"cluster{i + 1}", "airgap.dev/mesh-id": "proj-1"},
                }
            },
        )
        emu.create("secrets", "istio-system", cacerts_manifest(pki / "c1"))
    e2.add_user(USER)
    e2.grant(USER, ["get", "list"], ["namespaces"])
    e2.grant(USER, ["get", "list"], ["secrets", "serviceaccounts"], namespace="istio-system")
    e2.grant(USER, ["get"], ["clusterroles", "clusterrolebindings"], group="rbac.authorization.k8s.io")
    kc = write_kubeconfig(tmp_path / "kc", [("c1", e1), ("c2", e2, USER)])
    env = {"KUBECONFIG": str(kc), **FAST_ENV}
    before = (_writes(e1), _writes(e2))
    r = run_cli("mesh", "connect", "--context", "c1", "--context", "c2", "--poll", "0.02", env=env)
    assert r.code == 4, r.err
    assert one_error_line(r, alone=False) == (
        "airgap: error: not allowed (RBAC): context c2: create serviceaccounts in istio-system, create "
        "clusterroles.rbac.authorization.k8s.io, create clusterrolebindings.rbac.authorization.k8s.io, create "
        "secrets in istio-system; nothing was written to any cluster; `airgap preflight` lists every permission "
        "airgap needs"
    )
    assert (_writes(e1), _writes(e2)) == before
    assert e1.get("serviceaccounts", "istio-system", "istio-reader-service-account") is None
    # both may write; the second cluster's remote secret cannot be stored: the first one's reader goes again
    admin = write_kubeconfig(tmp_path / "kc-admin", [("c1", e1), ("c2", e2)])
    e2.faults.fail(50, 500, method="POST", path="/namespaces/istio-system/secrets")
    r = run_cli("mesh", "connect", "--context", "c1", "--context", "c2", "--poll", "0.02",
                env={"KUBECONFIG": str(admin), **FAST_ENV})  # fmt: skip
    assert r.code == 5, r.err
    for emu in (e1, e2):
        assert emu.get("serviceaccounts", "istio-system", "istio-reader-service-account") is None
        assert emu.list("secrets", "istio-system", "istio/multiCluster=true") == []
        assert emu.get("clusterroles", None, "istio-reader-airgap-istio-system") is None


def test_fault_10_bundle_import_into_a_fleet_asks_every_cluster_first(
    kube_fleet: Any, pki: Path, bkeys: Keys, passfile: Path, tmp_path: Path
) -> None:
    """One cluster of the fleet may not create secrets: exit 4 before the other one is written."""
    fleet = kube_fleet(2)
    e1, e2 = (fleet.emulators[c] for c in fleet.contexts)
    for emu in (e1, e2):
        emu.create("namespaces", None, {"metadata": {"name": "istio-system"}})
    e2.add_user(USER)
    e2.grant(USER, ["get"], ["namespaces"])
    e2.grant(USER, ["get"], ["secrets"], namespace="istio-system")
    kc = write_kubeconfig(tmp_path / "kc", [("c1", e1), ("c2", e2, USER)])
    imp = _bundle(pki, bkeys, passfile, tmp_path)
    r = run_cli(*imp, "--context", "c1", "--context", "c2", env={"KUBECONFIG": str(kc), **FAST_ENV})
    assert r.code == 4, r.err
    assert one_error_line(r, alone=False) == (
        "airgap: error: not allowed: context c2: create secrets in istio-system; nothing was written to any "
        "cluster; `airgap preflight` lists every permission airgap needs"
    )
    assert e1.get("secrets", "istio-system", "cacerts") is None
    assert not [w for w in _writes(e1) if "/secrets" in w]  # the allowed cluster was not written either


def test_fault_10_fleet_inject_and_install_ask_every_cluster_first(kube_fleet: Any, tmp_path: Path) -> None:
    """mesh inject (and mesh install) on a fleet: one cluster's missing right stops the run before any
    cluster is labelled or installed."""
    fleet = kube_fleet(2)
    e1, e2 = (fleet.emulators[c] for c in fleet.contexts)
    for emu in (e1, e2):
        emu.create("namespaces", None, {"metadata": {"name": "shop"}})
        emu.simulate_istio_install("asm-186-8", ingress=False)
        emu.wait_idle()
    e2.add_user(USER)
    e2.grant(USER, ["get", "list"], ["namespaces", "pods", "services"])
    kc = write_kubeconfig(tmp_path / "kc", [("c1", e1), ("c2", e2, USER)])
    env = {"KUBECONFIG": str(kc), **FAST_ENV}
    r = run_cli("mesh", "inject", "shop", "--context", "c1", "--context", "c2", env=env)
    assert r.code == 4, r.err
    assert one_error_line(r, alone=False) == (
        "airgap: error: not allowed: context c2: patch namespaces shop; nothing was written to any cluster; "
        "`airgap preflight` lists every permission airgap needs"
    )
    assert "istio.io/rev" not in (e1.get("namespaces", None, "shop")["metadata"].get("labels") or {})
    from airgap.connected.mesh import ask_install_fleet
    from airgap.errors import Refused as Refusal

    with pytest.raises(Refusal, match=r"^not allowed: context c2: update namespaces, create services in istio-sys"):
        ask_install_fleet(["c1", "c2"], False, kubeconfig=kc, policy=FAST)
    assert _writes(e1) == [] and _writes(e2) == []
