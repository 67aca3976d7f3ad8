"""OpenAPI v3 documents built from :mod:`tests.kubeapi.schema`, enough for ``kubectl apply``.

``/openapi/v3`` lists one document per group-version; each has the kinds' schemas (with
``x-kubernetes-group-version-kind``, merge keys and strategies for strategic merge patch) and a
path per resource whose PATCH operation takes ``fieldValidation``, which is how kubectl decides
that the server validates (it then sends ``fieldValidation=Strict`` instead of validating itself).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from tests.kubeapi import schema
from tests.kubeapi.errors import JSON, RESOURCES, ResourceDef
from tests.kubeapi.schema import ANY, ListOf, MapOf, Node

_PREFIX = {"": "io.k8s.api.core.v1", "apps": "io.k8s.api.apps.v1", "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
           "admissionregistration.k8s.io": "io.k8s.api.admissionregistration.v1",
           "networking.istio.io": "io.istio.networking.v1alpha3"}  # fmt: skip
_SCALAR: dict[str, JSON] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "format": "int64"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "byte": {"type": "string", "format": "byte"},
    "time": {"type": "string", "format": "date-time"},
    "int-or-string": {"x-kubernetes-int-or-string": True},
    "quantity": {"x-kubernetes-int-or-string": True},
}


def to_openapi(node: Node) -> JSON:
    if node == ANY:
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if isinstance(node, str):
        return dict(_SCALAR[node])
    if isinstance(node, MapOf):
        return {"type": "object", "additionalProperties": to_openapi(node.value)}
    if isinstance(node, ListOf):
        doc: JSON = {"type": "array", "items": to_openapi(node.item)}
        if node.strategy == "merge" and node.merge_key:
            doc["x-kubernetes-patch-merge-key"] = node.merge_key
            doc["x-kubernetes-patch-strategy"] = "merge"
        elif node.strategy == "set":
            doc["x-kubernetes-patch-strategy"] = "merge"
        return doc
    return {"type": "object", "properties": {k: to_openapi(v) for k, v in node.items()}}


def _params(*names: str) -> list[JSON]:
    return [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for n in names]


def _gvk(rd: ResourceDef) -> JSON:
    return {"group": rd.group, "kind": rd.kind, "version": rd.version}


def _paths(rd: ResourceDef) -> dict[str, Any]:
    base = "/api/v1" if not rd.group else f"/apis/{rd.group}/{rd.version}"
    coll = f"{base}/namespaces/{{namespace}}/{rd.plural}" if rd.namespaced else f"{base}/{rd.plural}"
    ref = {"$ref": f"#/components/schemas/{_PREFIX[rd.group]}.{rd.kind}"}
    body = {"content": {"application/json": {"schema": ref}}, "required": True}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    ext = {"x-kubernetes-group-version-kind": _gvk(rd)}
    write = _params("dryRun", "fieldManager", "fieldValidation")
    return {
        coll: {
            "get": {"operationId": f"list{rd.kind}", "responses": ok, **ext, "x-kubernetes-action": "list"},
            "post": {"operationId": f"create{rd.kind}", "requestBody": body, "parameters": write, "responses": ok,
                     **ext, "x-kubernetes-action": "post"},
        },
        f"{coll}/{{name}}": {
            "get": {"operationId": f"read{rd.kind}", "responses": ok, **ext, "x-kubernetes-action": "get"},
            "put": {"operationId": f"replace{rd.kind}", "requestBody": body, "parameters": write, "responses": ok,
                    **ext, "x-kubernetes-action": "put"},
            "patch": {"operationId": f"patch{rd.kind}", "parameters": [*write, *_params("force")], "responses": ok,
                      "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in (
                          "application/json-patch+json", "application/merge-patch+json",
                          "application/strategic-merge-patch+json", "application/apply-patch+yaml")}},
                      **ext, "x-kubernetes-action": "patch"},
            "delete": {"operationId": f"delete{rd.kind}", "parameters": _params("dryRun"), "responses": ok,
                       **ext, "x-kubernetes-action": "delete"},
        },
    }  # fmt: skip


def _gv_key(rd: ResourceDef) -> str:
    return "api/v1" if not rd.group else f"apis/{rd.group}/{rd.version}"


@cache
def _documents() -> dict[str, JSON]:
    docs: dict[str, JSON] = {}
    for rd in RESOURCES.values():
        key = _gv_key(rd)
        doc = docs.setdefault(
            key, {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "emulated"}, "paths": {},
                  "components": {"schemas": {}}}
        )  # fmt: skip
        s = to_openapi(schema.KINDS[rd.kind])
        s["x-kubernetes-group-version-kind"] = [_gvk(rd)]
        doc["components"]["schemas"][f"{_PREFIX[rd.group]}.{rd.kind}"] = s
        doc["paths"].update(_paths(rd))
    return docs


def document(path: str) -> JSON | None:
    """``/openapi/v3`` (path ``""``) or one group-version's document (``api/v1``, ``apis/apps/v1``)."""
    docs = _documents()
    if path == "":
        return {
            "paths": {k: {"serverRelativeURL": f"/openapi/v3/{k}?hash={_hash(v)}"} for k, v in sorted(docs.items())}
        }
    return docs.get(path)


def _hash(doc: JSON) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:128].upper()
