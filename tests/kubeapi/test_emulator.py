"""The emulator's own semantics, checked over HTTPS with plain ``requests`` (not airgap's client)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.kubeapi.server import Emulator, _trust_ca
from tests.kubeapi.store import merge_patch, parse_selector, strategic_merge_patch


@pytest.fixture
def emu() -> Iterator[Emulator]:
    e = Emulator(name="t", ready_delay=0.0).start()
    yield e
    e.stop()


@pytest.fixture
def http(emu: Emulator, tmp_path: Path) -> Iterator[requests.Session]:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(_trust_ca().cert_pem.bytes())
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    s.verify = str(ca)
    s.headers["Authorization"] = f"Bearer {emu.token}"
    yield s
    s.close()


def test_version_and_auth(emu: Emulator, http: requests.Session) -> None:
    r = http.get(f"{emu.url}/version")
    assert r.status_code == 200 and r.json()["gitVersion"] == "v1.32.4"
    bad = http.get(f"{emu.url}/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert bad.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }


def test_create_get_conflict_and_status_shapes(emu: Emulator, http: requests.Session) -> None:
    base = f"{emu.url}/api/v1/namespaces/default/secrets"
    body = {"metadata": {"name": "s1", "labels": {"a": "1"}}, "data": {"k": base64.b64encode(b"v").decode()}}
    r = http.post(base, json=body)
    assert r.status_code == 201
    created = r.json()
    rv1 = created["metadata"]["resourceVersion"]
    assert created["kind"] == "Secret" and created["metadata"]["uid"]
    again = http.post(base, json=body)
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    assert again.json()["details"] == {"name": "s1", "kind": "secrets"}
    # update with the current resourceVersion: 200 and a new resourceVersion
    created["data"]["k"] = base64.b64encode(b"w").decode()
    up = http.put(f"{base}/s1", json=created)
    assert up.status_code == 200 and int(up.json()["metadata"]["resourceVersion"]) > int(rv1)
    # update with the stale one: 409 Conflict, object unchanged
    created["data"]["k"] = base64.b64encode(b"x").decode()
    stale = http.put(f"{base}/s1", json=created)
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    assert "the object has been modified" in stale.json()["message"]
    assert http.get(f"{base}/s1").json()["data"]["k"] == base64.b64encode(b"w").decode()
    missing = http.get(f"{base}/nope")
    assert missing.status_code == 404 and missing.json()["message"] == 'secrets "nope" not found'
    no_ns = http.post(f"{emu.url}/api/v1/namespaces/ghost/secrets", json=body)
    assert no_ns.status_code == 404 and no_ns.json()["message"] == 'namespaces "ghost" not found'


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/namespaces", {"metadata": {"name": "Bad_Name"}}, "metadata.name"),
        (
            "/api/v1/namespaces/default/secrets",
            {"metadata": {"name": "s", "labels": {"a": "bad value"}}},
            "metadata.labels",
        ),
        (
            "/api/v1/namespaces/default/services",
            {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}, {"port": 81}]}},
            "spec.ports[0].name",
        ),
    ],
)
def test_invalid_objects_get_422(emu: Emulator, http: requests.Session, path: str, body: dict, field: str) -> None:
    r = http.post(f"{emu.url}{path}", json=body)
    assert r.status_code == 422
    doc = r.json()
    assert doc["reason"] == "Invalid" and field in [c["field"] for c in doc["details"]["causes"]]


def test_patches(emu: Emulator, http: requests.Session) -> None:
    http.post(
        f"{emu.url}/api/v1/namespaces", json={"metadata": {"name": "ns1", "labels": {"istio-injection": "enabled"}}}
    )
    url = f"{emu.url}/api/v1/namespaces/ns1"
    merge = {"metadata": {"labels": {"istio.io/rev": "asm-186-8", "istio-injection": None}}}
    r = http.patch(url, data=json.dumps(merge), headers={"Content-Type": "application/merge-patch+json"})
    labels = r.json()["metadata"]["labels"]
    assert r.status_code == 200 and labels["istio.io/rev"] == "asm-186-8" and "istio-injection" not in labels
    smp = {"metadata": {"annotations": {"a": "b"}}}
    r = http.patch(url, data=json.dumps(smp), headers={"Content-Type": "application/strategic-merge-patch+json"})
    assert r.json()["metadata"]["annotations"] == {"a": "b"}
    ops = [
        {"op": "remove", "path": "/metadata/annotations/a"},
        {"op": "add", "path": "/metadata/labels/x", "value": "y"},
    ]
    r = http.patch(url, data=json.dumps(ops), headers={"Content-Type": "application/json-patch+json"})
    assert r.json()["metadata"]["annotations"] == {} and r.json()["metadata"]["labels"]["x"] == "y"
    stale = {"metadata": {"resourceVersion": "1", "labels": {"z": "1"}}}
    r = http.patch(url, data=json.dumps(stale), headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409 and "z" not in http.get(url).json()["metadata"]["labels"]
    r = http.patch(url, data="{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_label_selectors(emu: Emulator, http: requests.Session) -> None:
    for name, labels in [("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}), ("c", {"tier": "2"})]:
        http.post(f"{emu.url}/api/v1/namespaces", json={"metadata": {"name": name, "labels": labels}})

    def names(sel: str) -> list[str]:
        items = http.get(f"{emu.url}/api/v1/namespaces", params={"labelSelector": sel}).json()["items"]
        return sorted(i["metadata"]["name"] for i in items if i["metadata"]["name"] in "abc")

    assert names("app=x") == ["a"]
    assert names("app==y") == ["b"]
    assert names("app!=x") == ["b", "c"]
    assert names("app in (x,y)") == ["a", "b"]
    assert names("tier notin (1)") == ["b", "c"]
    assert names("app") == ["a", "b"]
    assert names("!app") == ["c"]
    assert names("app,tier") == ["a"]


def test_selector_parser_and_patch_helpers() -> None:
    reqs = parse_selector("a in (1, 2),b!=3,!c")
    assert [(r.key, r.op, r.values) for r in reqs] == [
        ("a", "in", ("1", "2")),
        ("b", "!=", ("3",)),
        ("c", "!exists", ()),
    ]
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None}}) == {"a": {"c": 2}}
    merged = strategic_merge_patch(
        {"containers": [{"name": "a", "image": "1"}]}, {"containers": [{"name": "a", "image": "2"}]}
    )
    assert merged == {"containers": [{"name": "a", "image": "2"}]}


def test_faults(emu: Emulator, http: requests.Session) -> None:
    emu.faults.fail(2, 503, path="/version")
    assert [http.get(f"{emu.url}/version").status_code for _ in range(3)] == [503, 503, 200]
    emu.faults.throttle(1, retry_after=7)
    r = http.get(f"{emu.url}/version")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7" and r.json()["reason"] == "TooManyRequests"
    emu.faults.drop(1)
    with pytest.raises(requests.ConnectionError):
        http.get(f"{emu.url}/version")
    emu.faults.drop(1, after_write=True, method="POST")
    with pytest.raises(requests.ConnectionError):
        http.post(f"{emu.url}/api/v1/namespaces", json={"metadata": {"name": "dropped"}})
    assert emu.get("namespaces", None, "dropped") is not None  # applied, answer lost


def test_controller_runs_and_restarts_with_injection(emu: Emulator, http: requests.Session) -> None:
    emu.add_deployment("shop", "web", {"app": "web"}, replicas=2)
    emu.wait_idle()
    pods = emu.list("pods", "shop")
    assert len(pods) == 2 and all("istio.io/rev" not in p["metadata"]["labels"] for p in pods)
    emu.patch("namespaces", None, "shop", {"metadata": {"labels": {"istio.io/rev": "asm-186-8"}}})
    restart = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}}
    r = http.patch(
        f"{emu.url}/apis/apps/v1/namespaces/shop/deployments/web",
        data=json.dumps(restart),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert r.status_code == 200 and r.json()["metadata"]["generation"] == 2
    emu.wait_idle()
    # No control plane of that revision: its webhook does not exist, the new pods stay uninjected.
    pods = emu.list("pods", "shop")
    assert len(pods) == 2 and all("istio.io/rev" not in p["metadata"]["labels"] for p in pods)
    assert all(len(p["spec"]["containers"]) == 1 for p in pods)
    emu.simulate_istio_install("asm-186-8", ingress=False)
    restart["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = "later"
    r = http.patch(
        f"{emu.url}/apis/apps/v1/namespaces/shop/deployments/web",
        data=json.dumps(restart),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert r.status_code == 200 and r.json()["metadata"]["generation"] == 3
    emu.wait_idle()
    pods = emu.list("pods", "shop")
    assert len(pods) == 2 and {p["metadata"]["labels"]["istio.io/rev"] for p in pods} == {"asm-186-8"}
    assert all([c["name"] for c in p["spec"]["containers"]] == ["web", "istio-proxy"] for p in pods)
    assert all(p["metadata"]["name"] not in [q["metadata"]["name"] for q in emu.list("pods", "x")] for p in pods)
    dep = emu.get("deployments", "shop", "web")
    assert dep is not None and dep["status"]["readyReplicas"] == 2 and dep["status"]["observedGeneration"] == 3


def test_injection_fails_silently_with_both_labels(emu: Emulator) -> None:
    emu.create(
        "namespaces",
        None,
        {"metadata": {"name": "both", "labels": {"istio.io/rev": "r1", "istio-injection": "enabled"}}},
    )
    emu.add_deployment("both", "web", {"app": "web"})
    emu.wait_idle()
    assert all("istio.io/rev" not in p["metadata"]["labels"] for p in emu.list("pods", "both"))


def test_selfsubjectaccessreview(emu: Emulator, http: requests.Session) -> None:
    review = {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "spec": {"resourceAttributes": {"verb": "create", "resource": "clusterrolebindings"}},
    }
    url = f"{emu.url}/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    assert http.post(url, json=review).json()["status"]["allowed"] is True
    emu.denied.add(("create", "clusterrolebindings"))
    assert http.post(url, json=review).json()["status"]["allowed"] is False


def test_standalone_writes_kubeconfig(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    import yaml

    from tests.helpers import REPO

    kc = tmp_path / "kc"
    p = subprocess.Popen(
        [sys.executable, "-m", "tests.kubeapi", "--kubeconfig", str(kc), "--clusters", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert "NOT a real Kubernetes" in first
        doc = yaml.safe_load(kc.read_text())
        assert [c["name"] for c in doc["contexts"]] == ["emu-1", "emu-2"] and doc["current-context"] == "emu-1"
        from airgap.connected.kube import connect

        with connect("emu-2", kubeconfig=kc) as kube:
            assert kube.version()["gitVersion"].startswith("v1.")
    finally:
        p.terminate()
        p.wait(timeout=10)
        del time


def test_strategic_merge_patch_directives() -> None:
    svc = {
        "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
        "spec": {
            "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 90}, {"name": "tcp", "port": 100}],
            "selector": {"app": "s", "tier": "t"},
            "externalIPs": ["1.1.1.1", "2.2.2.2"],
        },
    }
    # merge by key (ports merge on "port", not on "name"), $patch: delete on an item, $setElementOrder
    out = strategic_merge_patch(
        svc,
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 100}, {"port": 80}],
                "ports": [{"port": 80, "name": "web"}, {"port": 90, "$patch": "delete"}],
            }
        },
        "Service",
    )
    assert out["spec"]["ports"] == [{"name": "tcp", "port": 100}, {"name": "web", "port": 80}]
    # $patch: replace on a map, $retainKeys, $deleteFromPrimitiveList, finalizers merged as a set
    out = strategic_merge_patch(svc, {"spec": {"selector": {"$patch": "replace", "app": "n"}}}, "Service")
    assert out["spec"]["selector"] == {"app": "n"}
    out = strategic_merge_patch(svc, {"metadata": {"labels": {"$retainKeys": ["a"], "c": "3"}}}, "Service")
    assert out["metadata"]["labels"] == {"a": "1"}
    out = strategic_merge_patch(svc, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}, "Service")
    assert out["metadata"]["finalizers"] == []
    out = strategic_merge_patch(svc, {"metadata": {"finalizers": ["y"]}}, "Service")
    assert out["metadata"]["finalizers"] == ["x", "y"]
    # a list without a merge strategy is replaced; $patch: replace on a keyed list replaces it
    out = strategic_merge_patch(svc, {"spec": {"externalIPs": ["3.3.3.3"]}}, "Service")
    assert out["spec"]["externalIPs"] == ["3.3.3.3"]
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"$patch": "replace"}, {"port": 1}]}}, "Service")
    assert out["spec"]["ports"] == [{"port": 1}]
    # a map delete, and the containers of a Deployment merge by name at their path
    out = strategic_merge_patch(svc, {"spec": {"selector": {"$patch": "delete"}}}, "Service")
    assert "selector" not in out["spec"]
    dep = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}}
    out = strategic_merge_patch(
        dep, {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "2"}]}}}}, "Deployment"
    )
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]


def test_strategic_merge_patch_errors_are_400(emu: Emulator, http: requests.Session) -> None:
    url = f"{emu.url}/api/v1/namespaces/default/services/kubernetes"
    for bad in ({"spec": {"ports": [{"name": "no-port-key"}]}}, {"spec": {"$bogus": 1}}, {"$patch": "sideways"}):
        r = http.patch(url, data=json.dumps(bad), headers={"Content-Type": "application/strategic-merge-patch+json"})
        assert r.status_code == 400 and r.json()["reason"] == "BadRequest", bad


def test_discovery_and_openapi(emu: Emulator, http: requests.Session) -> None:
    assert http.get(f"{emu.url}/api").json()["versions"] == ["v1"]
    groups = {g["name"] for g in http.get(f"{emu.url}/apis").json()["groups"]}
    assert {"apps", "rbac.authorization.k8s.io", "authorization.k8s.io"} <= groups
    core = {r["name"]: r for r in http.get(f"{emu.url}/api/v1").json()["resources"]}
    assert core["services"]["shortNames"] == ["svc"] and core["services"]["categories"] == ["all"]
    assert core["secrets"]["namespaced"] is True and "patch" in core["secrets"]["verbs"]
    apps = {r["name"]: r for r in http.get(f"{emu.url}/apis/apps/v1").json()["resources"]}
    assert apps["deployments"]["shortNames"] == ["deploy"] and "deployments/scale" in apps
    assert http.get(f"{emu.url}/apis/nope/v1").status_code == 404
    root = http.get(f"{emu.url}/openapi/v3").json()["paths"]
    doc = http.get(emu.url + root["api/v1"]["serverRelativeURL"]).json()
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Secret", "version": "v1"}
    ports = doc["components"]["schemas"]["io.k8s.api.core.v1.Service"]["properties"]["spec"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "port"
    table = http.get(
        f"{emu.url}/api/v1/namespaces", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    ).json()
    assert table["kind"] == "Table" and [c["name"] for c in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert "default" in [r["cells"][0] for r in table["rows"]]


def test_protobuf_bodies(emu: Emulator, http: requests.Session) -> None:
    from tests.kubeapi.protobuf import MAGIC, _build

    classes = _build()
    ns = classes["Namespace"]()
    ns.metadata.name = "from-proto"
    ns.metadata.labels["a"] = "b"
    ns.metadata.namespace = ""  # kubectl sends empty fields; they are omitted, as Go's JSON would
    env = classes["Unknown"]()
    env.typeMeta.apiVersion, env.typeMeta.kind = "v1", "Namespace"
    env.raw = ns.SerializeToString()
    body = MAGIC + env.SerializeToString()
    proto = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    r = http.post(f"{emu.url}/api/v1/namespaces", data=body, headers=proto)
    assert r.status_code == 201 and r.json()["metadata"]["labels"]["a"] == "b"
    assert "namespace" not in r.json()["metadata"]
    for bad in (body[:-3], b"k8s\x00\xff\xff\xff", b"not an envelope", MAGIC):
        r = http.post(f"{emu.url}/api/v1/namespaces", data=bad, headers=proto)
        assert r.status_code == 400 and r.json()["reason"] == "BadRequest", bad
    env.typeMeta.kind = "Pod"  # a kind whose protobuf the emulator does not decode
    r = http.post(f"{emu.url}/api/v1/namespaces", data=MAGIC + env.SerializeToString(), headers=proto)
    assert r.status_code == 400 and "not decoded by the emulator" in r.json()["message"]


def test_old_servers_drop_unknown_fields_silently_and_the_emulator_records_them(tmp_path: Path) -> None:
    with Emulator(name="old", version="v1.19.16") as old:
        ca = tmp_path / "ca.pem"
        ca.write_bytes(_trust_ca().cert_pem.bytes())
        s = requests.Session()
        s.trust_env = False
        s.verify = str(ca)
        s.headers["Authorization"] = f"Bearer {old.token}"
        body = {"metadata": {"name": "x"}, "spec": {"colour": "blue"}}
        r = s.post(f"{old.url}/api/v1/namespaces", json=body, params={"fieldValidation": "Strict"})
        assert r.status_code == 201 and "colour" not in r.json().get("spec", {}) and "Warning" not in r.headers
        assert [q.unknown_fields for q in old.requests_for("POST", "/api/v1/namespaces")] == [("spec.colour",)]
        s.close()


def test_watch_streams_added_modified_deleted(emu: Emulator, http: requests.Session) -> None:
    rv = http.get(f"{emu.url}/api/v1/namespaces").json()["metadata"]["resourceVersion"]
    r = http.get(
        f"{emu.url}/api/v1/namespaces",
        params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "30"},
        stream=True,
    )
    assert r.status_code == 200
    emu.create("namespaces", None, {"metadata": {"name": "w1"}})
    emu.patch("namespaces", None, "w1", {"metadata": {"labels": {"a": "b"}}})
    emu.delete("namespaces", None, "w1")
    events = []
    for line in r.iter_lines():
        ev = json.loads(line)
        events.append((ev["type"], ev["object"]["metadata"]["name"]))
        if ev["type"] == "DELETED":
            break
    r.close()
    assert events[0] == ("ADDED", "w1") and events[-1] == ("DELETED", "w1")  # MODIFIED may merge into ADDED
