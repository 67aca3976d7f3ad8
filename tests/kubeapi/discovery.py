"""Legacy (unaggregated) API discovery and server-side Table output, as kubectl reads them.

kubectl v1.32 first asks for aggregated discovery (``as=APIGroupDiscoveryList``); a plain JSON
``APIVersions``/``APIGroupList`` answer makes it fall back to these legacy documents, which the
real server also serves. Tables are answered when the ``Accept`` header asks ``as=Table``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.kubeapi.errors import JSON, RESOURCES, ResourceDef

EXTRA_GROUPS: dict[str, list[JSON]] = {
    "authorization.k8s.io": [
        {
            "name": "selfsubjectaccessreviews",
            "singularName": "selfsubjectaccessreview",
            "namespaced": False,
            "kind": "SelfSubjectAccessReview",
            "verbs": ["create"],
        }
    ]
}
SUBRESOURCES: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    "namespaces": [("status", "Namespace", ("get", "patch", "update"))],
    "pods": [("status", "Pod", ("get", "patch", "update"))],
    "deployments": [
        ("status", "Deployment", ("get", "patch", "update")),
        ("scale", "Scale", ("get", "patch", "update")),
    ],
}


def _resource(rd: ResourceDef) -> JSON:
    doc: JSON = {
        "name": rd.plural,
        "singularName": rd.singular,
        "namespaced": rd.namespaced,
        "kind": rd.kind,
        "verbs": list(rd.verbs),
    }
    if rd.short_names:
        doc["shortNames"] = list(rd.short_names)
    if rd.categories:
        doc["categories"] = list(rd.categories)
    return doc


def groups() -> list[str]:
    return sorted({rd.group for rd in RESOURCES.values() if rd.group} | set(EXTRA_GROUPS))


def api_versions(address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _version(group: str) -> str:
    return next((rd.version for rd in RESOURCES.values() if rd.group == group), "v1")


def _group(name: str) -> JSON:
    v = _version(name)
    gv = {"groupVersion": f"{name}/{v}", "version": v}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> JSON:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in groups()]}


def api_group(name: str) -> JSON | None:
    if name not in groups():
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name)}


def resource_list(group: str, version: str) -> JSON | None:
    if (group and group not in groups()) or version != _version(group):
        return None
    resources: list[JSON] = []
    for rd in sorted(RESOURCES.values(), key=lambda r: r.plural):
        if rd.group != group:
            continue
        resources.append(_resource(rd))
        for sub, kind, verbs in SUBRESOURCES.get(rd.plural, []):
            resources.append(
                {"name": f"{rd.plural}/{sub}", "singularName": "", "namespaced": rd.namespaced, "kind": kind,
                 "verbs": list(verbs)}
            )  # fmt: skip
    resources += EXTRA_GROUPS.get(group, [])
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else "v1",
        "resources": resources,
    }


# ---------------------------------------------------------------------------------------------
# Table


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    then = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    s = max(0, int((dt.datetime.now(dt.UTC) - then).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _cols(names: list[str]) -> list[JSON]:
    return [
        {"name": n, "type": "string", "format": "name" if n == "Name" else "", "description": n, "priority": 0}
        for n in names
    ]


def _row(rd: ResourceDef, obj: JSON) -> list[Any]:
    meta = obj.get("metadata") or {}
    age = _age(meta.get("creationTimestamp"))
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if rd.plural == "pods":
        cs = status.get("containerStatuses") or []
        total = len(spec.get("containers") or [])
        ready = sum(1 for c in cs if c.get("ready"))
        phase = "Terminating" if meta.get("deletionTimestamp") else status.get("phase", "Pending")
        return [meta.get("name"), f"{ready}/{total}", phase, sum(int(c.get("restartCount", 0)) for c in cs), age]
    if rd.plural == "deployments":
        want = spec.get("replicas", 1)
        return [
            meta.get("name"),
            f"{status.get('readyReplicas', 0)}/{want}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
            age,
        ]
    if rd.plural == "services":
        ports = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or []) or "<none>"
        return [meta.get("name"), spec.get("type", "ClusterIP"), spec.get("clusterIP", ""), "<none>", ports, age]
    if rd.plural == "namespaces":
        return [meta.get("name"), status.get("phase", "Active"), age]
    if rd.plural == "secrets":
        return [meta.get("name"), obj.get("type", "Opaque"), len(obj.get("data") or {}), age]
    if rd.plural == "configmaps":
        return [meta.get("name"), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}), age]
    return [meta.get("name"), age]


_COLUMNS = {
    "pods": ["Name", "Ready", "Status", "Restarts", "Age"],
    "deployments": ["Name", "Ready", "Up-to-date", "Available", "Age"],
    "services": ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"],
    "namespaces": ["Name", "Status", "Age"],
    "secrets": ["Name", "Type", "Data", "Age"],
    "configmaps": ["Name", "Data", "Age"],
}


def table(rd: ResourceDef, items: list[JSON], resource_version: str) -> JSON:
    rows = []
    for obj in items:
        partial = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata")}
        rows.append({"cells": _row(rd, obj), "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": _cols(_COLUMNS.get(rd.plural, ["Name", "Age"])),
        "rows": rows,
    }
