"""The emulated cluster's object store and the API semantics on top of it.

This is the part that has to behave like a real kube-apiserver for the REST paths airgap uses:
create (201, 409 AlreadyExists, 404 for a missing namespace, 422 Invalid), get/list (label and
field selectors), update (409 Conflict on a stale ``resourceVersion``), patch (JSON merge,
strategic merge for maps, JSON patch), delete (with preconditions), a cluster-wide increasing
``resourceVersion`` on every write, and ``Status`` objects shaped like the real server's.
It is deliberately small: no watch, no admission chain, no field managers.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import json
import re
import threading
import uuid
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

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES: dict[tuple[str, str], ResourceDef] = {
    ("", "namespaces"): ResourceDef("namespaces", "Namespace", "", "v1", False),
    ("", "nodes"): ResourceDef("nodes", "Node", "", "v1", False),
    ("", "secrets"): ResourceDef("secrets", "Secret", "", "v1", True),
    ("", "services"): ResourceDef("services", "Service", "", "v1", True),
    ("", "pods"): ResourceDef("pods", "Pod", "", "v1", True),
    ("apps", "deployments"): ResourceDef("deployments", "Deployment", "apps", "v1", True),
    ("", "serviceaccounts"): ResourceDef("serviceaccounts", "ServiceAccount", "", "v1", True),
    ("rbac.authorization.k8s.io", "clusterroles"): ResourceDef(
        "clusterroles", "ClusterRole", "rbac.authorization.k8s.io", "v1", False
    ),
    ("rbac.authorization.k8s.io", "clusterrolebindings"): ResourceDef(
        "clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", False
    ),
    ("networking.istio.io", "gateways"): ResourceDef("gateways", "Gateway", "networking.istio.io", "v1alpha3", True),
}

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


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


def _details(rd: ResourceDef, name: str) -> JSON:
    """Status details as the real server writes them (``group`` omitted when empty)."""
    d: JSON = {"name": name}
    if rd.group:
        d["group"] = rd.group
    d["kind"] = rd.plural
    return d


def not_found(rd: ResourceDef, name: str) -> ApiError:
    group = f".{rd.group}" if rd.group else ""
    return ApiError(
        404,
        "NotFound",
        f'{rd.plural}{group} "{name}" not found',
        _details(rd, name),
    )


def invalid(rd: ResourceDef, name: str, causes: list[tuple[str, str]]) -> ApiError:
    msg = "; ".join(f"{field}: {why}" for field, why in causes)
    details: JSON = {"name": name}
    if rd.group:
        details["group"] = rd.group
    details["kind"] = rd.kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": why, "field": field} for field, why in causes]
    return ApiError(422, "Invalid", f'{rd.kind} "{name}" is invalid: {msg}', details)


def conflict(rd: ResourceDef, name: str) -> ApiError:
    group = f".{rd.group}" if rd.group else ""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rd.plural}{group} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        _details(rd, name),
    )


# ---------------------------------------------------------------------------------------------
# label selectors


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return has and value == self.values[0]
        if self.op == "!=":
            return not has or value != self.values[0]
        if self.op == "in":
            return has and value in self.values
        if self.op == "notin":
            return not has or value not in self.values
        if self.op == "exists":
            return has
        return not has


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$")


def parse_selector(text: str) -> list[Requirement]:
    """Kubernetes label selector syntax: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``."""
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        m = _SET_RE.match(part)
        if m:
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), values))
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append(Requirement(k.strip(), "!=", (v.strip(),)))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append(Requirement(k.strip(), "=", (v.strip(),)))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append(Requirement(k.strip(), "=", (v.strip(),)))
        elif part.startswith("!"):
            reqs.append(Requirement(part[1:].strip(), "!exists", ()))
        else:
            reqs.append(Requirement(part, "exists", ()))
    for r in reqs:
        if not r.key or not _LABEL_NAME.match(r.key.split("/")[-1]):
            raise ApiError(400, "BadRequest", f"unable to parse requirement: invalid label key {r.key!r}")
    return reqs


def parse_field_selector(text: str) -> list[Requirement]:
    reqs = parse_selector(text)
    for r in reqs:
        if r.key not in ("metadata.name", "metadata.namespace") or r.op not in ("=", "!="):
            raise ApiError(400, "BadRequest", f'field label not supported: "{r.key}"')
    return reqs


# ---------------------------------------------------------------------------------------------
# patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# Lists that strategic merge patch merges by a key instead of replacing.
_SMP_LIST_KEYS = {"containers": "name", "ports": "port", "env": "name", "volumes": "name", "conditions": "type"}


def strategic_merge_patch(target: Any, patch: Any, field: str | None = None) -> Any:
    """Strategic merge patch for what kubectl sends here: maps merge (``null`` deletes), the
    well-known keyed lists (containers, ports, env, volumes, conditions) merge by their key,
    other lists are replaced. ``$patch``/``$retainKeys`` directives are not supported.
    """
    if isinstance(patch, list) and isinstance(target, list) and field in _SMP_LIST_KEYS:
        key = _SMP_LIST_KEYS[field]
        out = copy.deepcopy(target)
        for item in patch:
            if not isinstance(item, dict) or key not in item:
                return copy.deepcopy(patch)
            for i, existing in enumerate(out):
                if isinstance(existing, dict) and existing.get(key) == item[key]:
                    out[i] = strategic_merge_patch(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if any(k.startswith("$") for k in patch):
        raise ApiError(400, "BadRequest", "strategic merge patch directives are not supported by the emulator")
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"json patch: invalid path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for p in parts:
        if isinstance(doc, dict):
            if p not in doc:
                raise ApiError(422, "Invalid", f"json patch: path not found: /{'/'.join(parts)}")
            doc = doc[p]
        elif isinstance(doc, list):
            try:
                doc = doc[int(p)]
            except (ValueError, IndexError) as exc:
                raise ApiError(422, "Invalid", f"json patch: bad index {p!r}") from exc
        else:
            raise ApiError(422, "Invalid", "json patch: path into a scalar")
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, test, copy, move."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, "BadRequest", "json patch: each operation needs op and path")
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"json patch: test failed at {op['path']}")
            continue
        if kind in ("copy", "move"):
            src = _pointer(op["from"])
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                parent = _walk(doc, src[:-1])
                if isinstance(parent, dict):
                    del parent[src[-1]]
                else:
                    del parent[int(src[-1])]
            kind, op = "add", {"path": op["path"], "value": value}
        if not parts:
            if kind in ("add", "replace"):
                doc = copy.deepcopy(op.get("value"))
                continue
            raise ApiError(422, "Invalid", "json patch: cannot remove the whole document")
        parent = _walk(doc, parts[:-1])
        last = parts[-1]
        if isinstance(parent, dict):
            if kind == "add":
                parent[last] = copy.deepcopy(op.get("value"))
            elif kind in ("remove", "replace"):
                if last not in parent:
                    raise ApiError(422, "Invalid", f"json patch: path not found: {op['path']}")
                if kind == "remove":
                    del parent[last]
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
            else:
                raise ApiError(400, "BadRequest", f"json patch: unknown op {kind!r}")
        elif isinstance(parent, list):
            try:
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, copy.deepcopy(op.get("value")))
                elif kind == "remove":
                    del parent[idx]
                elif kind == "replace":
                    parent[idx] = copy.deepcopy(op.get("value"))
                else:
                    raise ApiError(400, "BadRequest", f"json patch: unknown op {kind!r}")
            except (ValueError, IndexError) as exc:
                raise ApiError(422, "Invalid", f"json patch: bad index {last!r}") from exc
        else:
            raise ApiError(422, "Invalid", "json patch: path into a scalar")
    return doc


# ---------------------------------------------------------------------------------------------
# validation


def _validate_map(causes: list[tuple[str, str]], field: str, value: Any, *, labels: bool) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        causes.append((field, "must be a map of string to string"))
        return
    for k, v in value.items():
        prefix, _, name = k.rpartition("/")
        if not _LABEL_NAME.match(name) or len(name) > 63 or (prefix and not _DNS1123_SUBDOMAIN.match(prefix)):
            causes.append((f"{field}", f"Invalid value: {k!r}: name part must consist of alphanumeric characters"))
        if not isinstance(v, str):
            causes.append((f"{field}[{k}]", "must be a string"))
        elif labels and (len(v) > 63 or not _LABEL_VALUE.match(v)):
            causes.append((f"{field}", f"Invalid value: {v!r}: a valid label must be 63 characters or less"))


def validate(rd: ResourceDef, obj: JSON) -> None:
    """422 Invalid for what the real server rejects in the fields airgap touches."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[tuple[str, str]] = []
    pattern = _DNS1123_LABEL if rd.plural in ("namespaces", "services") else _DNS1123_SUBDOMAIN
    if not isinstance(name, str) or not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif not pattern.match(name) or len(name) > 253 or (pattern is _DNS1123_LABEL and len(name) > 63):
        causes.append(
            (
                "metadata.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 name must consist of lower case "
                "alphanumeric characters or '-'",
            )
        )
    _validate_map(causes, "metadata.labels", meta.get("labels"), labels=True)
    _validate_map(causes, "metadata.annotations", meta.get("annotations"), labels=False)
    if rd.plural == "secrets":
        data = obj.get("data") or {}
        if not isinstance(data, dict):
            causes.append(("data", "must be a map"))
        else:
            for k, v in data.items():
                if not _SECRET_KEY.match(k):
                    causes.append(
                        (
                            f"data[{k}]",
                            "Invalid value: a valid config key must consist of alphanumeric characters, "
                            "'-', '_' or '.'",
                        )
                    )
                try:
                    base64.b64decode(v, validate=True)
                except (binascii.Error, TypeError, ValueError):
                    causes.append((f"data[{k}]", "Invalid value: illegal base64 data"))
    if rd.plural == "services":
        ports = (obj.get("spec") or {}).get("ports") or []
        names = set()
        for i, p in enumerate(ports):
            port = p.get("port")
            if not isinstance(port, int) or not 1 <= port <= 65535:
                causes.append((f"spec.ports[{i}].port", f"Invalid value: {port!r}: must be between 1 and 65535"))
            pname = p.get("name", "")
            if len(ports) > 1 and not pname:
                causes.append((f"spec.ports[{i}].name", "Required value"))
            if pname and (not _PORT_NAME.match(pname) or len(pname) > 63):
                causes.append((f"spec.ports[{i}].name", f"Invalid value: {pname!r}"))
            if pname in names:
                causes.append((f"spec.ports[{i}].name", f"Duplicate value: {pname!r}"))
            names.add(pname)
            if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                causes.append((f"spec.ports[{i}].protocol", "Unsupported value"))
    if rd.plural == "deployments":
        spec = obj.get("spec") or {}
        selector = ((spec.get("selector") or {}).get("matchLabels")) or {}
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append(("spec.selector", "Required value"))
        elif any(tlabels.get(k) != v for k, v in selector.items()):
            causes.append(
                ("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`")
            )
    if causes:
        raise invalid(rd, str(name), causes)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# the store


class Store:
    """All objects of one emulated cluster, guarded by one lock (like etcd behind one apiserver)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], JSON] = {}  # (plural, namespace, name) -> object
        self._rv = 1000
        self.changed = threading.Condition(self.lock)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    # -- helpers -------------------------------------------------------------------------------

    def _key(self, rd: ResourceDef, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rd.plural, namespace or "" if rd.namespaced else "", name)

    def _require_namespace(self, rd: ResourceDef, namespace: str | None) -> None:
        if rd.namespaced and ("namespaces", "", namespace or "") not in self.objects:
            raise not_found(RESOURCES[("", "namespaces")], namespace or "")

    def _stamp(self, rd: ResourceDef, obj: JSON) -> None:
        obj["kind"] = rd.kind
        obj["apiVersion"] = rd.api_version
        obj["metadata"]["resourceVersion"] = self._next_rv()

    # -- verbs ---------------------------------------------------------------------------------

    def get(self, rd: ResourceDef, namespace: str | None, name: str) -> JSON:
        with self.lock:
            obj = self.objects.get(self._key(rd, namespace, name))
            if obj is None:
                raise not_found(rd, name)
            return copy.deepcopy(obj)

    def list(self, rd: ResourceDef, namespace: str | None, label_selector: str = "", field_selector: str = "") -> JSON:
        reqs = parse_selector(label_selector) if label_selector else []
        freqs = parse_field_selector(field_selector) if field_selector else []
        with self.lock:
            items = []
            for (plural, ns, _name), obj in sorted(self.objects.items()):
                if plural != rd.plural or (rd.namespaced and namespace and ns != namespace):
                    continue
                labels = obj["metadata"].get("labels") or {}
                if not all(r.matches(labels) for r in reqs):
                    continue
                fields = {"metadata.name": obj["metadata"]["name"], "metadata.namespace": ns}
                if not all(r.matches(fields) for r in freqs):
                    continue
                items.append(copy.deepcopy(obj))
            return {
                "kind": f"{rd.kind}List",
                "apiVersion": rd.api_version,
                "metadata": {"resourceVersion": self.resource_version},
                "items": items,
            }

    def create(self, rd: ResourceDef, namespace: str | None, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if body.get("kind") not in (None, rd.kind):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version",
            )
        if rd.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if rd.plural == "secrets" and obj.get("stringData"):
            data = obj.setdefault("data", {}) or {}
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        validate(rd, obj)
        with self.lock:
            self._require_namespace(rd, namespace)
            key = self._key(rd, namespace, meta["name"])
            if key in self.objects:
                group = f".{rd.group}" if rd.group else ""
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{rd.plural}{group} "{meta["name"]}" already exists',
                    _details(rd, meta["name"]),
                )
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            meta.pop("resourceVersion", None)
            meta.pop("deletionTimestamp", None)
            if rd.plural == "deployments":
                meta["generation"] = 1
                obj.setdefault("status", {})
            if rd.plural == "namespaces":
                obj["status"] = {"phase": "Active"}
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            if rd.plural == "services":
                spec = obj.setdefault("spec", {})
                spec.setdefault("type", "ClusterIP")
                spec.setdefault("clusterIP", f"10.96.{(self._rv // 250) % 250}.{self._rv % 250 + 1}")
                for p in spec.get("ports") or []:
                    p.setdefault("protocol", "TCP")
                    p.setdefault("targetPort", p.get("port"))
            if rd.plural == "secrets":
                obj.setdefault("type", "Opaque")
            self._stamp(rd, obj)
            self.objects[key] = obj
            self.changed.notify_all()
            return copy.deepcopy(obj)

    def update(self, rd: ResourceDef, namespace: str | None, name: str, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        with self.lock:
            key = self._key(rd, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(rd, name)
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise conflict(rd, name)
            return self._replace(rd, key, current, obj)

    def _replace(self, rd: ResourceDef, key: tuple[str, str, str], current: JSON, obj: JSON) -> JSON:
        meta = obj["metadata"]
        # Immutable and server-owned fields come from the stored object.
        for field in ("uid", "creationTimestamp", "namespace", "generation"):
            if field in current["metadata"]:
                meta[field] = current["metadata"][field]
            else:
                meta.pop(field, None)
        if rd.plural == "secrets" and obj.get("stringData"):
            data = obj.setdefault("data", {}) or {}
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        if rd.plural == "namespaces":
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj["status"] = current.get("status", {"phase": "Active"})
        if rd.plural == "services":
            spec = obj.setdefault("spec", {})
            spec["clusterIP"] = current.get("spec", {}).get("clusterIP")
            spec.setdefault("type", "ClusterIP")
            for p in spec.get("ports") or []:
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
        if rd.plural in ("deployments", "pods") and "status" not in obj:
            obj["status"] = current.get("status", {})
        if rd.plural == "deployments" and obj.get("spec") != current.get("spec"):
            meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
        validate(rd, obj)
        if _same(current, obj):
            return copy.deepcopy(current)  # a no-op write does not bump resourceVersion
        self._stamp(rd, obj)
        self.objects[key] = obj
        self.changed.notify_all()
        return copy.deepcopy(obj)

    def patch(self, rd: ResourceDef, namespace: str | None, name: str, content_type: str, patch: Any) -> JSON:
        with self.lock:
            key = self._key(rd, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(rd, name)
            if content_type == "application/merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError(400, "BadRequest", "merge patch must be an object")
                new = merge_patch(current, patch)
            elif content_type == "application/strategic-merge-patch+json":
                if not isinstance(patch, dict):
                    raise ApiError(400, "BadRequest", "strategic merge patch must be an object")
                new = strategic_merge_patch(current, patch)
            elif content_type == "application/json-patch+json":
                new = json_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, "
                    f"application/strategic-merge-patch+json (got {content_type})",
                )
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "patch result is not an object")
            sent_rv = ((patch.get("metadata") or {}) if isinstance(patch, dict) else {}).get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise conflict(rd, name)
            new.setdefault("metadata", {})
            if new["metadata"].get("name") != name:
                raise ApiError(400, "BadRequest", "the name of the object cannot be changed by a patch")
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._replace(rd, key, current, new)

    def delete(self, rd: ResourceDef, namespace: str | None, name: str, options: Any = None) -> JSON:
        with self.lock:
            key = self._key(rd, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(rd, name)
            pre = (options or {}).get("preconditions") or {} if isinstance(options, dict) else {}
            if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {current['metadata']['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise conflict(rd, name)
            del self.objects[key]
            if rd.plural == "namespaces":
                for k in [k for k in self.objects if k[1] == name and k[0] != "namespaces"]:
                    del self.objects[k]
            self._next_rv()
            self.changed.notify_all()
            return copy.deepcopy(current)


def _same(a: JSON, b: JSON) -> bool:
    def strip(o: JSON) -> str:
        c = copy.deepcopy(o)
        c.get("metadata", {}).pop("resourceVersion", None)
        c.pop("kind", None)
        c.pop("apiVersion", None)
        return json.dumps(c, sort_keys=True)

    return strip(a) == strip(b)
