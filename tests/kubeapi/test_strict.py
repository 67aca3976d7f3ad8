"""kube-apiserver's strictness, one test per refusal, each asserting the real server's code and reason.

These run against the emulator (at its default, current version) or, with
``AIRGAP_TEST_KUBECONFIG``, against that real cluster: the assertions are the real server's.
Tests that need the emulator's knobs (versions, faults, a slow namespace controller) say so and
skip on a real cluster.
"""

from __future__ import annotations

import base64
import copy
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.kubeapi.raw import Raw, Resp
from tests.kubeapi.server import Emulator, write_kubeconfig

REAL = os.environ.get("AIRGAP_TEST_KUBECONFIG")


@dataclass
class Env:
    raw: Raw
    ns: str
    emulator: Emulator | None

    def emu(self) -> Emulator:
        if self.emulator is None:
            pytest.skip("emulator-only: needs the emulator's knobs")
        return self.emulator

    def secrets(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/secrets" + (f"/{name}" if name else "")

    def services(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/services" + (f"/{name}" if name else "")

    def deployments(self, name: str = "") -> str:
        return f"/apis/apps/v1/namespaces/{self.ns}/deployments" + (f"/{name}" if name else "")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    emu: Emulator | None = None
    if REAL:
        from kubernetes import config as kconfig

        _c, current = kconfig.list_kube_config_contexts(REAL)
        raw = Raw(Path(REAL), os.environ.get("AIRGAP_TEST_CONTEXT") or current["name"])
    else:
        emu = Emulator(name="strict", ready_delay=0.0).start()
        raw = Raw(write_kubeconfig(tmp_path / "kubeconfig", [("strict", emu)]), "strict")
    ns = raw.scratch_namespace()
    try:
        yield Env(raw, ns, emu)
    finally:
        raw.call("DELETE", f"/api/v1/namespaces/{ns}")
        raw.close()
        if emu is not None:
            emu.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret(name: str, data: dict[str, bytes] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, **meta},
        "type": "Opaque",
        "data": {k: b64(v) for k, v in (data or {"k": b"v"}).items()},
    }


def service(name: str, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}}
    if ports is not None:
        spec["ports"] = ports
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def deployment(name: str, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    if containers is None:
        containers = [{"name": "app", "image": "example/app:1"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
        },
    }


def invalid(r: Resp, field: str, reason: str | None = None) -> None:
    assert r.status == 422 and r.reason == "Invalid", (r.status, r.doc)
    assert field in r.fields, r.doc
    if reason is not None:
        assert reason in [c["reason"] for c in r.causes if c["field"] == field], r.doc


# -- sizes ---------------------------------------------------------------------------------------


def test_secret_over_1mib_is_invalid_too_long(env: Env) -> None:
    r = env.raw.call("POST", env.secrets(), secret("big", {"blob": b"x" * (1024 * 1024 + 1)}))
    invalid(r, "data", "FieldValueTooLong")
    assert "must have at most 1048576 bytes" in r.message
    assert env.raw.call("GET", env.secrets("big")).status == 404


def test_request_body_over_3mib_is_413(env: Env) -> None:
    r = env.raw.call("POST", env.secrets(), secret("huge", {"blob": b"x" * (3 * 1024 * 1024)}))
    assert r.status == 413, (r.status, r.doc)
    assert env.raw.call("GET", env.secrets("huge")).status == 404


def test_annotations_over_256kib_are_invalid_too_long(env: Env) -> None:
    r = env.raw.call("POST", env.secrets(), secret("ann", annotations={"a": "x" * (256 * 1024)}))
    invalid(r, "metadata.annotations", "FieldValueTooLong")
    assert "must have at most 262144 bytes" in r.message


def test_label_key_prefix_over_253_characters_is_invalid(env: Env) -> None:
    key = ("a" * 60 + ".") * 4 + "b" * 20 + "/name"  # a 264-character prefix of valid DNS labels
    r = env.raw.call("POST", env.secrets(), secret("lbl", labels={key: "v"}))
    invalid(r, "metadata.labels", "FieldValueInvalid")
    assert "prefix part must be no more than 253 characters" in r.message


# -- names and required parts ----------------------------------------------------------------------


def test_service_name_must_be_a_dns1035_label(env: Env) -> None:
    r = env.raw.call("POST", env.services(), service("1svc", [{"name": "http", "port": 80}]))
    invalid(r, "metadata.name", "FieldValueInvalid")
    assert "DNS-1035 label" in r.message


def test_service_without_ports_is_invalid(env: Env) -> None:
    r = env.raw.call("POST", env.services(), service("noports", []))
    invalid(r, "spec.ports", "FieldValueRequired")


def test_deployment_and_pod_without_containers_are_invalid(env: Env) -> None:
    r = env.raw.call("POST", env.deployments(), deployment("empty", []))
    invalid(r, "spec.template.spec.containers", "FieldValueRequired")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "empty"}, "spec": {"containers": []}}
    r = env.raw.call("POST", f"/api/v1/namespaces/{env.ns}/pods", pod)
    invalid(r, "spec.containers", "FieldValueRequired")


@pytest.mark.parametrize("key", ["..", "..hidden", "a/b"])
def test_secret_key_must_be_a_config_key(env: Env, key: str) -> None:
    r = env.raw.call("POST", env.secrets(), secret("keys", {key: b"v"}))
    invalid(r, f"data[{key}]", "FieldValueInvalid")


def test_secret_data_must_be_base64(env: Env) -> None:
    body = secret("b64")
    body["data"] = {"k": "!!not base64"}
    r = env.raw.call("POST", env.secrets(), body)
    assert r.status == 400 and r.reason == "BadRequest", r.doc


@pytest.mark.parametrize("selector", ["a=b c", "a===b", "a in (x", "=b", "a=b,"])
def test_malformed_label_selector_is_400(env: Env, selector: str) -> None:
    r = env.raw.call("GET", env.secrets(), query=[("labelSelector", selector)])
    assert r.status == 400 and r.reason == "BadRequest", (selector, r.doc)


def test_wellformed_label_selectors_still_list(env: Env) -> None:
    env.raw.call("POST", env.secrets(), secret("sel", labels={"app": "x", "tier": "1"}))
    for sel in ("app=x", "app==x", "app in (x,y)", "tier notin (2)", "app,!nope", "app!=y"):
        r = env.raw.call("GET", env.secrets(), query=[("labelSelector", sel)])
        assert r.status == 200 and [i["metadata"]["name"] for i in r.doc["items"]] == ["sel"], sel


# -- unknown fields ----------------------------------------------------------------------------------


def test_unknown_fields_refused_with_strict(env: Env) -> None:
    if env.raw.version() < (1, 25):
        pytest.skip("fieldValidation is 1.25+")
    body = service("strict", [{"name": "http", "port": 80, "bogus": 1}])
    body["spec"]["colour"] = "blue"
    r = env.raw.call("POST", env.services(), body, query=[("fieldValidation", "Strict")])
    assert r.status == 400 and r.reason == "BadRequest", r.doc
    assert 'unknown field "spec.colour"' in r.message and 'unknown field "spec.ports[0].bogus"' in r.message
    assert env.raw.call("GET", env.services("strict")).status == 404


def test_unknown_fields_dropped_with_a_warning_by_default(env: Env) -> None:
    if env.raw.version() < (1, 25):
        pytest.skip("fieldValidation is 1.25+")
    body = service("warned", [{"name": "http", "port": 80}])
    body["spec"]["colour"] = "blue"
    r = env.raw.call("POST", env.services(), body)
    assert r.status == 201, r.doc
    assert "colour" not in r.doc["spec"]
    assert 'unknown field \\"spec.colour\\"' in r.headers.get("Warning", "") or 'unknown field "spec.colour"' in (
        r.headers.get("Warning", "")
    )
    assert "colour" not in env.raw.call("GET", env.services("warned")).doc["spec"]


# -- create, update, immutability ------------------------------------------------------------------


def test_resource_version_on_create_is_refused(env: Env) -> None:
    r = env.raw.call("POST", env.secrets(), secret("rv", resourceVersion="12345"))
    assert r.status == 500 and r.reason == "InternalError", r.doc
    assert "resourceVersion should not be set on objects to be created" in r.message
    assert env.raw.call("GET", env.secrets("rv")).status == 404


def test_already_exists_is_not_conflict(env: Env) -> None:
    assert env.raw.call("POST", env.secrets(), secret("twice")).status == 201
    again = env.raw.call("POST", env.secrets(), secret("twice"))
    assert again.status == 409 and again.reason == "AlreadyExists"
    current = env.raw.call("GET", env.secrets("twice")).doc
    stale = copy.deepcopy(current)
    current["data"]["k"] = b64(b"new")
    assert env.raw.call("PUT", env.secrets("twice"), current).status == 200
    stale["data"]["k"] = b64(b"stale")
    r = env.raw.call("PUT", env.secrets("twice"), stale)
    assert r.status == 409 and r.reason == "Conflict" and "the object has been modified" in r.message


def test_secret_type_is_immutable(env: Env) -> None:
    created = env.raw.call("POST", env.secrets(), secret("typed")).doc
    created["type"] = "example.com/other"
    r = env.raw.call("PUT", env.secrets("typed"), created)
    invalid(r, "type")
    assert "field is immutable" in r.message
    assert env.raw.call("GET", env.secrets("typed")).doc["type"] == "Opaque"


def test_deployment_selector_is_immutable(env: Env) -> None:
    assert env.raw.call("POST", env.deployments(), deployment("sel")).status == 201
    patch = {
        "spec": {
            "selector": {"matchLabels": {"app": "sel", "v": "2"}},
            "template": {"metadata": {"labels": {"app": "sel", "v": "2"}}},
        }
    }
    r = env.raw.call("PATCH", env.deployments("sel"), patch, content_type="application/merge-patch+json")
    invalid(r, "spec.selector")
    assert "field is immutable" in r.message


def test_service_cluster_ip_is_immutable(env: Env) -> None:
    created = env.raw.call("POST", env.services(), service("ip", [{"name": "http", "port": 80}])).doc
    ip = created["spec"]["clusterIP"]
    octets = ip.split(".")
    octets[-1] = str((int(octets[-1]) + 7) % 250 + 1)
    r = env.raw.call(
        "PATCH",
        env.services("ip"),
        {"spec": {"clusterIP": ".".join(octets)}},
        content_type="application/merge-patch+json",
    )
    assert r.status == 422 and r.reason == "Invalid", r.doc
    assert {"spec.clusterIP", "spec.clusterIPs[0]"} & set(r.fields), r.doc
    assert env.raw.call("GET", env.services("ip")).doc["spec"]["clusterIP"] == ip


# -- dryRun ----------------------------------------------------------------------------------------


def test_dry_run_create_validates_and_conflicts_but_never_stores(env: Env) -> None:
    dry = [("dryRun", "All")]
    r = env.raw.call("POST", env.services(), service("1bad", [{"name": "http", "port": 80}]), query=dry)
    invalid(r, "metadata.name")
    ok = env.raw.call("POST", env.secrets(), secret("dry"), query=dry)
    assert ok.status == 201 and ok.doc["metadata"]["name"] == "dry"
    assert env.raw.call("GET", env.secrets("dry")).status == 404
    assert env.raw.call("POST", env.secrets(), secret("real")).status == 201
    again = env.raw.call("POST", env.secrets(), secret("real"), query=dry)
    assert again.status == 409 and again.reason == "AlreadyExists"


def test_dry_run_put_patch_delete_change_nothing(env: Env) -> None:
    dry = [("dryRun", "All")]
    created = env.raw.call("POST", env.secrets(), secret("keep", {"k": b"v1"})).doc
    rv = created["metadata"]["resourceVersion"]
    changed = copy.deepcopy(created)
    changed["data"]["k"] = b64(b"v2")
    r = env.raw.call("PUT", env.secrets("keep"), changed, query=dry)
    assert r.status == 200 and r.doc["data"]["k"] == b64(b"v2")
    r = env.raw.call(
        "PATCH",
        env.secrets("keep"),
        {"data": {"k": b64(b"v3")}},
        content_type="application/merge-patch+json",
        query=dry,
    )
    assert r.status == 200 and r.doc["data"]["k"] == b64(b"v3")
    bad = env.raw.call(
        "PATCH", env.secrets("keep"), {"type": "other"}, content_type="application/merge-patch+json", query=dry
    )
    assert bad.status == 422 and bad.reason == "Invalid"
    assert env.raw.call("DELETE", env.secrets("keep"), query=dry).status == 200
    live = env.raw.call("GET", env.secrets("keep")).doc
    assert live["data"]["k"] == b64(b"v1") and live["metadata"]["resourceVersion"] == rv


# -- namespaces ------------------------------------------------------------------------------------


def test_terminating_namespace_refuses_new_objects(env: Env) -> None:
    emu = env.emu()  # a real namespace controller may finish before the next request
    emu.namespace_finalize_delay = 30.0
    ns = env.raw.scratch_namespace()
    assert env.raw.call("POST", f"/api/v1/namespaces/{ns}/secrets", secret("before")).status == 201
    r = env.raw.call("DELETE", f"/api/v1/namespaces/{ns}")
    assert r.status == 200 and r.doc["status"]["phase"] == "Terminating" and r.doc["metadata"]["deletionTimestamp"]
    r = env.raw.call("POST", f"/api/v1/namespaces/{ns}/secrets", secret("after"))
    assert r.status == 403 and r.reason == "Forbidden"
    assert r.message == (
        f'secrets "after" is forbidden: unable to create new content in namespace {ns} because it is being terminated'
    )
    assert [c["reason"] for c in r.causes] == ["NamespaceTerminating"]
    assert env.raw.call("GET", f"/api/v1/namespaces/{ns}/secrets/before").status == 200  # not yet emptied
    emu.namespace_finalize_delay = 0.0
    emu.wait_idle()
    deadline = 200
    while env.raw.call("GET", f"/api/v1/namespaces/{ns}").status != 404 and deadline:
        deadline -= 1
        emu.store.finalize_namespaces()
    assert env.raw.call("GET", f"/api/v1/namespaces/{ns}").status == 404
    assert env.raw.call("GET", f"/api/v1/namespaces/{ns}/secrets/before").status == 404


def test_metadata_name_label_only_from_1_21(tmp_path: Path) -> None:
    if REAL:
        pytest.skip("emulator-only: compares server versions")
    for version, labelled in (("v1.19.16", False), ("v1.21.0", True), ("v1.32.4", True)):
        with Emulator(name="v", version=version) as emu:
            raw = Raw(write_kubeconfig(tmp_path / f"kc-{version}", [("v", emu)]), "v")
            try:
                assert raw.call("GET", "/version").doc["gitVersion"] == version
                ns = raw.scratch_namespace()
                labels = raw.call("GET", f"/api/v1/namespaces/{ns}").doc["metadata"].get("labels") or {}
                assert ("kubernetes.io/metadata.name" in labels) is labelled, version
                assert (labels.get("kubernetes.io/metadata.name") == ns) is labelled
            finally:
                raw.close()


def test_default_version_is_current_and_old_ones_selectable() -> None:
    from tests.kubeapi.server import DEFAULT_VERSION

    assert Emulator(name="d").version == DEFAULT_VERSION
    assert tuple(int(x) for x in DEFAULT_VERSION.lstrip("v").split(".")[:2]) >= (1, 30)
    for v in ("v1.16.15", "v1.17.17", "v1.18.20", "v1.19.16"):
        assert Emulator(name="d", version=v).store.version == (1, int(v.split(".")[1]))


# -- faults ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "want"),
    [
        (409, "", "Conflict"),
        (409, "AlreadyExists", "AlreadyExists"),
        (500, "", "InternalError"),
        (503, "", "ServiceUnavailable"),
        (504, "", "Timeout"),
        (429, "", "TooManyRequests"),
        (403, "", "Forbidden"),
        (422, "", "Invalid"),
    ],
)
def test_injected_fault_carries_the_reason_of_its_code(env: Env, code: int, reason: str, want: str) -> None:
    emu = env.emu()
    emu.faults.fail(1, code, method="POST", reason=reason)
    r = env.raw.call("POST", env.secrets(), secret(f"f-{uuid.uuid4().hex[:6]}"))
    assert r.status == code and r.reason == want and r.doc["code"] == code
