"""The emulator's RBAC: users with tokens or client certificates, roles that grant specific verbs on
specific resources, 403 with the real message, SelfSubjectAccessReview, and RBAC kinds as objects."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeapi.raw import Raw
from tests.kubeapi.server import Emulator, write_kubeconfig

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    e = Emulator(name="r", ready_delay=0.0).start()
    e.create("namespaces", None, {"metadata": {"name": "team"}})
    e.create("secrets", "team", {"metadata": {"name": "s1"}, "data": {}})
    e.create("secrets", "team", {"metadata": {"name": "s2"}, "data": {}})
    yield e
    e.stop()


def _raw(emu: Emulator, tmp_path: Path, user: str | None) -> Raw:
    return Raw(write_kubeconfig(tmp_path / f"kc-{user}", [("r", emu, user)]), "r")


def _ssar(raw: Raw, verb: str, resource: str, namespace: str = "", name: str = "", group: str = "") -> bool:
    attrs = {"verb": verb, "resource": resource, "namespace": namespace, "name": name, "group": group}
    r = raw.call(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        },
    )
    assert r.status == 201, r.doc
    return bool(r.doc["status"]["allowed"])


def test_seeded_cluster_admin_and_rbac_kinds_are_objects(emu: Emulator, tmp_path: Path) -> None:
    raw = _raw(emu, tmp_path, None)
    role = raw.call("GET", f"/apis/{RBAC}/v1/clusterroles/cluster-admin").doc
    assert role["rules"][0] == {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
    crb = raw.call("GET", f"/apis/{RBAC}/v1/clusterrolebindings/cluster-admin").doc
    assert crb["subjects"] == [{"apiGroup": RBAC, "kind": "Group", "name": "system:masters"}]
    bad = {
        "apiVersion": f"{RBAC}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "b"},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "x"},
        "subjects": [{"kind": "Robot", "name": "r2"}],
    }
    r = raw.call("POST", f"/apis/{RBAC}/v1/clusterrolebindings", bad)
    assert r.status == 422 and {"roleRef.kind", "subjects[0].kind"} <= set(r.fields)
    bad["roleRef"]["kind"] = "ClusterRole"
    bad["subjects"][0]["kind"] = "User"
    made = raw.call("POST", f"/apis/{RBAC}/v1/clusterrolebindings", bad)
    assert made.status == 201
    made.doc["roleRef"]["name"] = "other"
    r = raw.call("PUT", f"/apis/{RBAC}/v1/clusterrolebindings/b", made.doc)
    assert r.status == 422 and "cannot change roleRef" in r.message
    raw.close()


def test_a_role_grants_only_its_verbs_resources_and_namespace(emu: Emulator, tmp_path: Path) -> None:
    emu.add_user("dev")
    emu.grant("dev", ["get", "list"], ["secrets"], namespace="team")
    raw = _raw(emu, tmp_path, "dev")
    assert raw.call("GET", "/api/v1/namespaces/team/secrets/s1").status == 200
    assert raw.call("GET", "/api/v1/namespaces/team/secrets").status == 200
    r = raw.call("GET", "/api/v1/namespaces/default/secrets/x")
    assert r.status == 403 and r.reason == "Forbidden"
    assert r.message == (
        'secrets "x" is forbidden: User "dev" cannot get resource "secrets" in API group "" in the namespace "default"'
    )
    assert r.doc["details"] == {"name": "x", "kind": "secrets"}
    r = raw.call("POST", "/api/v1/namespaces/team/secrets", {"metadata": {"name": "new"}})
    assert r.status == 403
    assert r.message == (
        'secrets is forbidden: User "dev" cannot create resource "secrets" in API group "" in the namespace "team"'
    )
    r = raw.call("GET", "/api/v1/namespaces")
    assert r.status == 403
    assert r.message == (
        'namespaces is forbidden: User "dev" cannot list resource "namespaces" in API group "" at the cluster scope'
    )
    r = raw.call("DELETE", "/apis/apps/v1/namespaces/team/deployments/web")
    assert r.status == 403 and 'cannot delete resource "deployments" in API group "apps"' in r.message
    assert emu.get("secrets", "team", "new") is None
    # SelfSubjectAccessReview answers as the requests were answered
    assert _ssar(raw, "get", "secrets", "team") is True
    assert _ssar(raw, "get", "secrets", "default") is False
    assert _ssar(raw, "create", "secrets", "team") is False
    assert _ssar(raw, "create", "clusterroles", group=RBAC) is False
    raw.close()


def test_resource_names_limit_a_rule(emu: Emulator, tmp_path: Path) -> None:
    emu.add_user("one")
    emu.grant("one", ["get", "update"], ["secrets"], namespace="team", names=["s1"])
    raw = _raw(emu, tmp_path, "one")
    assert raw.call("GET", "/api/v1/namespaces/team/secrets/s1").status == 200
    assert raw.call("GET", "/api/v1/namespaces/team/secrets/s2").status == 403
    assert raw.call("GET", "/api/v1/namespaces/team/secrets").status == 403  # list is not get
    raw.close()


def test_client_certificate_users_and_group_bindings(emu: Emulator, tmp_path: Path) -> None:
    emu.add_cert_user("alice", group="ops")
    raw = _raw(emu, tmp_path, "alice")
    r = raw.call("GET", "/api/v1/nodes")
    assert r.status == 403 and 'User "alice" cannot list resource "nodes"' in r.message
    emu.create(
        "clusterrolebindings",
        None,
        {
            "metadata": {"name": "ops-view"},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": "ops"}],
        },
    )
    assert raw.call("GET", "/api/v1/nodes").status == 200
    assert raw.call("POST", "/api/v1/namespaces", {"metadata": {"name": "x"}}).status == 403
    raw.close()
    nobody = Raw(write_kubeconfig(tmp_path / "kc-anon", [("r", emu)]), "r")
    nobody.kube.api.configuration.api_key = {}
    assert nobody.call("GET", "/api/v1/nodes").status == 401
    nobody.close()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on the PATH")
def test_kubectl_sees_the_same_decisions(emu: Emulator, tmp_path: Path) -> None:
    emu.add_user("dev")
    emu.grant("dev", ["get", "list"], ["secrets"], namespace="team")
    kc = write_kubeconfig(tmp_path / "kc", [("r", emu, "dev")])

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], env={"KUBECONFIG": str(kc), "HOME": str(tmp_path)}, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    assert kubectl("auth", "can-i", "list", "secrets", "-n", "team").stdout.strip() == "yes"
    denied = kubectl("auth", "can-i", "delete", "secrets", "-n", "team")
    assert denied.returncode == 1 and denied.stdout.strip() == "no"
    got = kubectl("get", "secrets", "-n", "team", "-o", "name")
    assert got.returncode == 0 and got.stdout.split() == ["secret/s1", "secret/s2"]
    refused = kubectl("get", "secrets", "-n", "default")
    assert refused.returncode == 1
    assert (
        'Error from server (Forbidden): secrets is forbidden: User "dev" cannot list resource "secrets" in API group '
        '"" in the namespace "default"' in refused.stderr
    )
    emu.add_cert_user("alice")
    kc2 = write_kubeconfig(tmp_path / "kc2", [("r", emu, "alice")])
    p = subprocess.run(
        ["kubectl", "auth", "can-i", "list", "nodes"],
        env={"KUBECONFIG": str(kc2), "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert p.stdout.strip() == "no"
