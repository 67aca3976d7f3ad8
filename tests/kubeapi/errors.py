"""``Status`` objects shaped like kube-apiserver's, and the resource table they name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class ResourceDef:
    plural: str
    kind: str
    group: str  # "" for the core group
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    singular: str = ""
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


_RBAC = "rbac.authorization.k8s.io"
RESOURCES: dict[tuple[str, str], ResourceDef] = {
    (rd.group, rd.plural): rd
    for rd in (
        ResourceDef("namespaces", "Namespace", "", "v1", False, ("ns",), (), "namespace",
                    ("create", "delete", "get", "list", "patch", "update", "watch")),
        ResourceDef("nodes", "Node", "", "v1", False, ("no",), (), "node"),
        ResourceDef("secrets", "Secret", "", "v1", True, (), (), "secret"),
        ResourceDef("configmaps", "ConfigMap", "", "v1", True, ("cm",), (), "configmap"),
        ResourceDef("services", "Service", "", "v1", True, ("svc",), ("all",), "service",
                    ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
        ResourceDef("pods", "Pod", "", "v1", True, ("po",), ("all",), "pod"),
        ResourceDef("deployments", "Deployment", "apps", "v1", True, ("deploy",), ("all",), "deployment"),
        ResourceDef("clusterroles", "ClusterRole", _RBAC, "v1", False, (), (), "clusterrole"),
        ResourceDef("clusterrolebindings", "ClusterRoleBinding", _RBAC, "v1", False, (), (), "clusterrolebinding"),
        ResourceDef("roles", "Role", _RBAC, "v1", True, (), (), "role"),
        ResourceDef("rolebindings", "RoleBinding", _RBAC, "v1", True, (), (), "rolebinding"),
        ResourceDef("serviceaccounts", "ServiceAccount", "", "v1", True, ("sa",), (), "serviceaccount"),
        ResourceDef("gateways", "Gateway", "networking.istio.io", "v1alpha3", True, ("gw",),
                    ("istio-io", "networking-istio-io"), "gateway"),
        ResourceDef("mutatingwebhookconfigurations", "MutatingWebhookConfiguration",
                    "admissionregistration.k8s.io", "v1", False, (), ("api-extensions",),
                    "mutatingwebhookconfiguration"),
    )
}  # fmt: skip

# HTTP code -> the reason the real server puts in a Status for it.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failure the server reports as a ``Status`` object with an HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: JSON | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JSON:
        doc: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            doc["details"] = self.details
        return doc


def details(rd: ResourceDef, name: str, *, kind: str | None = None) -> JSON:
    """Status details as the real server writes them (``group`` omitted when empty)."""
    d: JSON = {"name": name}
    if rd.group:
        d["group"] = rd.group
    d["kind"] = kind or rd.plural
    return d


def not_found(rd: ResourceDef, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rd.group_resource} "{name}" not found', details(rd, name))


def already_exists(rd: ResourceDef, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rd.group_resource} "{name}" already exists', details(rd, name))


def conflict(rd: ResourceDef, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rd.group_resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details(rd, name),
    )


_CAUSE_REASONS = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Duplicate value": "FieldValueDuplicate",
    "Unsupported value": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
}


@dataclass(frozen=True)
class Cause:
    field: str
    type: str  # "Invalid value" | "Required value" | "Too long" | "Duplicate value" | "Unsupported value" | "Forbidden"
    detail: str = ""
    value: Any = None
    has_value: bool = False

    @property
    def message(self) -> str:
        head = self.type
        if self.has_value:
            v = self.value
            head += f": {json.dumps(v) if isinstance(v, (str, int)) else _go(v)}"
        return f"{head}: {self.detail}" if self.detail else head

    def as_dict(self) -> JSON:
        return {
            "reason": _CAUSE_REASONS.get(self.type, "FieldValueInvalid"),
            "message": self.message,
            "field": self.field,
        }


def _go(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def bad(field: str, value: Any, detail: str) -> Cause:
    return Cause(field, "Invalid value", detail, value, True)


def required(field: str, detail: str = "") -> Cause:
    return Cause(field, "Required value", detail)


def invalid(rd: ResourceDef, name: str, causes: list[Cause]) -> ApiError:
    parts = [f"{c.field}: {c.message}" for c in causes]
    msg = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    d: JSON = {"name": name}
    if rd.group:
        d["group"] = rd.group
    d["kind"] = rd.kind
    d["causes"] = [c.as_dict() for c in causes]
    return ApiError(422, "Invalid", f'{rd.kind} "{name}" is invalid: {msg}', d)
