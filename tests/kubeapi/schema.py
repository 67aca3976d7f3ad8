"""The emulator's knowledge of each kind's fields: one table, several uses.

* unknown-field detection for ``fieldValidation`` (Strict: 400; Warn, the default: dropped with
  a ``Warning`` header; Ignore: dropped silently), like the real server's structural decoding;
* the OpenAPI v3 documents kubectl reads (``/openapi/v3``), see :mod:`tests.kubeapi.openapi`;
* the strategic-merge-patch merge keys (``x-kubernetes-patch-merge-key``), see
  :mod:`tests.kubeapi.smp`.

A schema node is one of: a type name (``"string"``, ``"integer"``, ``"boolean"``, ``"number"``,
``"int-or-string"``, ``"quantity"``, ``"time"``), ``ANY`` (an open object: not checked),
``MapOf(node)``, ``ListOf(node, merge_key)`` or a ``dict`` of field name to node (an object
with exactly those fields). Only the fields of the kinds the emulator serves are listed; a
deep part the emulator does not model (most of a container) is ``ANY``, so it is never
wrongly refused, only not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

Node = Union[str, "MapOf", "ListOf", dict[str, Any]]
ANY = "any"


@dataclass(frozen=True)
class MapOf:
    value: Node


@dataclass(frozen=True)
class ListOf:
    item: Node
    merge_key: str | None = None  # strategic merge patch: merge items by this key
    strategy: str = "replace"  # "merge" (by merge_key) | "replace" | "set" (primitive lists merged as sets)


S, I, B = "string", "integer", "boolean"  # noqa: E741

OWNER_REFERENCE = {
    "apiVersion": S,
    "kind": S,
    "name": S,
    "uid": S,
    "controller": B,
    "blockOwnerDeletion": B,
}
OBJECT_META: dict[str, Any] = {
    "name": S,
    "generateName": S,
    "namespace": S,
    "selfLink": S,
    "uid": S,
    "resourceVersion": S,
    "generation": I,
    "creationTimestamp": "time",
    "deletionTimestamp": "time",
    "deletionGracePeriodSeconds": I,
    "labels": MapOf(S),
    "annotations": MapOf(S),
    "ownerReferences": ListOf(OWNER_REFERENCE, "uid", "merge"),
    "finalizers": ListOf(S, None, "set"),
    "managedFields": ListOf(ANY),
}
LIST_META = {"resourceVersion": S, "continue": S, "remainingItemCount": I, "selfLink": S}
LABEL_SELECTOR = {
    "matchLabels": MapOf(S),
    "matchExpressions": ListOf({"key": S, "operator": S, "values": ListOf(S)}),
}
CONTAINER_PORT = {"name": S, "containerPort": I, "hostPort": I, "protocol": S, "hostIP": S}
ENV_VAR = {"name": S, "value": S, "valueFrom": ANY}
CONTAINER: dict[str, Any] = {
    "name": S,
    "image": S,
    "command": ListOf(S),
    "args": ListOf(S),
    "workingDir": S,
    "ports": ListOf(CONTAINER_PORT, "containerPort", "merge"),
    "env": ListOf(ENV_VAR, "name", "merge"),
    "envFrom": ListOf(ANY),
    "resources": ANY,
    "volumeMounts": ListOf(ANY, "mountPath", "merge"),
    "livenessProbe": ANY,
    "readinessProbe": ANY,
    "startupProbe": ANY,
    "lifecycle": ANY,
    "securityContext": ANY,
    "imagePullPolicy": S,
    "terminationMessagePath": S,
    "terminationMessagePolicy": S,
    "stdin": B,
    "tty": B,
    "restartPolicy": S,
    "resizePolicy": ListOf(ANY),
    "volumeDevices": ListOf(ANY),
    "stdinOnce": B,
}
POD_SPEC: dict[str, Any] = {
    "containers": ListOf(CONTAINER, "name", "merge"),
    "initContainers": ListOf(CONTAINER, "name", "merge"),
    "ephemeralContainers": ListOf(ANY, "name", "merge"),
    "volumes": ListOf(ANY, "name", "merge"),
    "restartPolicy": S,
    "terminationGracePeriodSeconds": I,
    "activeDeadlineSeconds": I,
    "dnsPolicy": S,
    "dnsConfig": ANY,
    "nodeSelector": MapOf(S),
    "serviceAccountName": S,
    "serviceAccount": S,
    "automountServiceAccountToken": B,
    "nodeName": S,
    "hostNetwork": B,
    "hostPID": B,
    "hostIPC": B,
    "shareProcessNamespace": B,
    "securityContext": ANY,
    "imagePullSecrets": ListOf({"name": S}, "name", "merge"),
    "hostname": S,
    "subdomain": S,
    "affinity": ANY,
    "schedulerName": S,
    "tolerations": ListOf(ANY),
    "hostAliases": ListOf(ANY, "ip", "merge"),
    "priorityClassName": S,
    "priority": I,
    "readinessGates": ListOf(ANY),
    "runtimeClassName": S,
    "enableServiceLinks": B,
    "preemptionPolicy": S,
    "overhead": MapOf("quantity"),
    "topologySpreadConstraints": ListOf(ANY, "topologyKey", "merge"),
    "setHostnameAsFQDN": B,
    "os": ANY,
}
POD_TEMPLATE = {"metadata": OBJECT_META, "spec": POD_SPEC}
CONDITION = {
    "type": S,
    "status": S,
    "reason": S,
    "message": S,
    "lastTransitionTime": "time",
    "lastUpdateTime": "time",
    "lastProbeTime": "time",
    "lastHeartbeatTime": "time",
    "observedGeneration": I,
}
SERVICE_PORT = {
    "name": S,
    "protocol": S,
    "appProtocol": S,
    "port": I,
    "targetPort": "int-or-string",
    "nodePort": I,
}
SUBJECT = {"kind": S, "apiGroup": S, "name": S, "namespace": S}
ROLE_REF = {"apiGroup": S, "kind": S, "name": S}
POLICY_RULE = {
    "verbs": ListOf(S),
    "apiGroups": ListOf(S),
    "resources": ListOf(S),
    "resourceNames": ListOf(S),
    "nonResourceURLs": ListOf(S),
}
TOP = {"apiVersion": S, "kind": S, "metadata": OBJECT_META}
OBJECT_REFERENCE = {
    "name": S,
    "namespace": S,
    "kind": S,
    "uid": S,
    "apiVersion": S,
    "resourceVersion": S,
    "fieldPath": S,
}

KINDS: dict[str, dict[str, Any]] = {
    "Namespace": {
        **TOP,
        "spec": {"finalizers": ListOf(S)},
        "status": {"phase": S, "conditions": ListOf(CONDITION, "type", "merge")},
    },
    "Node": {
        **TOP,
        "spec": ANY,
        "status": {
            "capacity": MapOf("quantity"),
            "allocatable": MapOf("quantity"),
            "conditions": ListOf(CONDITION, "type", "merge"),
            "addresses": ListOf({"type": S, "address": S}, "type", "merge"),
            "nodeInfo": ANY,
            "phase": S,
            "images": ListOf(ANY),
            "daemonEndpoints": ANY,
        },
    },
    "ConfigMap": {
        **TOP,
        "data": MapOf(S),
        "binaryData": MapOf("byte"),
        "immutable": B,
    },
    "Secret": {
        **TOP,
        "data": MapOf("byte"),
        "stringData": MapOf(S),
        "type": S,
        "immutable": B,
    },
    "Service": {
        **TOP,
        "spec": {
            "ports": ListOf(SERVICE_PORT, "port", "merge"),
            "selector": MapOf(S),
            "clusterIP": S,
            "clusterIPs": ListOf(S),
            "type": S,
            "externalIPs": ListOf(S),
            "sessionAffinity": S,
            "loadBalancerIP": S,
            "loadBalancerSourceRanges": ListOf(S),
            "externalName": S,
            "externalTrafficPolicy": S,
            "healthCheckNodePort": I,
            "publishNotReadyAddresses": B,
            "sessionAffinityConfig": ANY,
            "ipFamilies": ListOf(S),
            "ipFamilyPolicy": S,
            "allocateLoadBalancerNodePorts": B,
            "loadBalancerClass": S,
            "internalTrafficPolicy": S,
            "trafficDistribution": S,
            "topologyKeys": ListOf(S),
        },
        "status": {"loadBalancer": ANY, "conditions": ListOf(CONDITION, "type", "merge")},
    },
    "Pod": {
        **TOP,
        "spec": POD_SPEC,
        "status": {
            "phase": S,
            "conditions": ListOf(CONDITION, "type", "merge"),
            "containerStatuses": ListOf(ANY),
            "initContainerStatuses": ListOf(ANY),
            "message": S,
            "reason": S,
            "hostIP": S,
            "podIP": S,
            "podIPs": ListOf(ANY, "ip", "merge"),
            "startTime": "time",
            "qosClass": S,
        },
    },
    "Deployment": {
        **TOP,
        "spec": {
            "replicas": I,
            "selector": LABEL_SELECTOR,
            "template": POD_TEMPLATE,
            "strategy": {
                "type": S,
                "rollingUpdate": {"maxUnavailable": "int-or-string", "maxSurge": "int-or-string"},
            },
            "minReadySeconds": I,
            "revisionHistoryLimit": I,
            "paused": B,
            "progressDeadlineSeconds": I,
        },
        "status": {
            "observedGeneration": I,
            "replicas": I,
            "updatedReplicas": I,
            "readyReplicas": I,
            "availableReplicas": I,
            "unavailableReplicas": I,
            "terminatingReplicas": I,
            "conditions": ListOf(CONDITION, "type", "merge"),
            "collisionCount": I,
        },
    },
    "ClusterRole": {**TOP, "rules": ListOf(POLICY_RULE), "aggregationRule": ANY},
    "Role": {**TOP, "rules": ListOf(POLICY_RULE)},
    "ClusterRoleBinding": {**TOP, "subjects": ListOf(SUBJECT), "roleRef": ROLE_REF},
    "RoleBinding": {**TOP, "subjects": ListOf(SUBJECT), "roleRef": ROLE_REF},
    "MutatingWebhookConfiguration": {**TOP, "webhooks": ListOf(ANY, "name", "merge")},
    "ServiceAccount": {
        **TOP,
        "secrets": ListOf(OBJECT_REFERENCE, "name", "merge"),
        "imagePullSecrets": ListOf({"name": S}),
        "automountServiceAccountToken": B,
    },
    "Gateway": {**TOP, "spec": ANY, "status": ANY},  # an Istio CRD: its schema is Istio's, not checked here
}


def unknown_fields(kind: str, obj: Any) -> list[str]:
    """The paths of fields ``obj`` has that the kind does not (``.spec.foo``, ``.spec.ports[0].bar``)."""
    schema = KINDS.get(kind)
    if schema is None:
        return []
    out: list[str] = []
    _walk(schema, obj, "", out)
    return out


def _walk(node: Node, value: Any, path: str, out: list[str]) -> None:
    if value is None or node == ANY:
        return
    if isinstance(node, dict):
        if not isinstance(value, dict):
            return  # a type error, reported by validation
        for key, sub in value.items():
            if key not in node:
                out.append(f"{path}.{key}" if path else key)
            else:
                _walk(node[key], sub, f"{path}.{key}" if path else key, out)
    elif isinstance(node, ListOf) and isinstance(value, list):
        for i, item in enumerate(value):
            _walk(node.item, item, f"{path}[{i}]", out)
    elif isinstance(node, MapOf) and isinstance(value, dict):
        for key, item in value.items():
            _walk(node.value, item, f"{path}.{key}", out)


def drop_fields(obj: Any, paths: list[str]) -> None:
    """Remove the fields :func:`unknown_fields` named (what the server's decoder does in Warn/Ignore)."""
    import re

    for path in paths:
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        cur = obj
        for p in parts[:-1]:
            cur = cur[int(p[1:-1])] if p.startswith("[") else cur.get(p)
            if cur is None:
                break
        else:
            if isinstance(cur, dict):
                cur.pop(parts[-1], None)


def node_at(kind: str, path: list[str]) -> Node | None:
    """The schema node at a field path (list items are entered implicitly), or None."""
    node: Node | None = KINDS.get(kind)
    for p in path:
        while isinstance(node, ListOf):
            node = node.item
        if isinstance(node, MapOf):
            node = node.value
        elif isinstance(node, dict):
            node = node.get(p)
        else:
            return None
    return node
