"""The emulated cluster's object store and the API semantics on top of it.

This is the part that has to behave like a real kube-apiserver for the REST paths airgap (and
kubectl, for the guide's commands) uses: create (201, 409 AlreadyExists, 404 for a missing
namespace, 403 in a Terminating one, 422 Invalid, 500 for a ``resourceVersion`` sent on create),
get/list (label and field selectors, 400 for a malformed one), update (409 Conflict on a stale
``resourceVersion``, 422 for immutable fields), patch (JSON merge, strategic merge with its
directives, JSON patch), delete (with preconditions; a namespace goes Terminating first),
``dryRun=All`` on every write (validated and checked, never stored), unknown fields refused,
dropped with a warning or ignored (``fieldValidation``), a cluster-wide increasing
``resourceVersion`` on every write, and ``Status`` objects shaped like the real server's.
It is deliberately small: no watch, no field managers, no garbage collector.
"""

from __future__ import annotations

import base64
import collections
import copy
import datetime as dt
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.kubeapi import schema
from tests.kubeapi.errors import (
    JSON,
    RESOURCES,
    ApiError,
    ResourceDef,
    already_exists,
    conflict,
    details,
    not_found,
)
from tests.kubeapi.labels import Requirement, SelectorError
from tests.kubeapi.labels import parse_selector as _parse_labels
from tests.kubeapi.smp import PatchError, strategic_merge
from tests.kubeapi.validation import decode_secret_data, validate

__all__ = [
    "JSON",
    "RESOURCES",
    "ApiError",
    "ResourceDef",
    "Store",
    "WriteOptions",
    "json_patch",
    "merge_patch",
    "now_iso",
    "parse_selector",
    "strategic_merge_patch",
]


def parse_selector(text: str) -> list[Requirement]:
    """A label selector; 400 BadRequest when it does not parse."""
    try:
        return _parse_labels(text)
    except SelectorError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from exc


def parse_field_selector(text: str) -> list[Requirement]:
    reqs = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        for op in ("!=", "==", "="):
            if op in part:
                k, v = part.split(op, 1)
                reqs.append(Requirement(k.strip(), "!=" if op == "!=" else "=", (v.strip(),)))
                break
        else:
            raise ApiError(400, "BadRequest", f"invalid selector: '{text}'; can't understand '{part}'")
    for r in reqs:
        if r.key not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f"field label not supported: {r.key}")
    return reqs


def strategic_merge_patch(target: Any, patch: Any, kind: str = "") -> Any:
    """Strategic merge patch of ``kind`` (see :mod:`tests.kubeapi.smp`)."""
    try:
        return strategic_merge(kind, target, patch)
    except PatchError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from exc


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


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WriteOptions:
    """A write's query options: ``dryRun=All`` and ``fieldValidation`` (Strict, Warn or Ignore)."""

    dry_run: bool = False
    field_validation: str = "Ignore"
    warnings: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # every unknown field seen, whatever the mode (diagnostics)


_NO_OPTS = WriteOptions()


def _check_fields(rd: ResourceDef, obj: JSON, opts: WriteOptions) -> None:
    unknown = schema.unknown_fields(rd.kind, obj)
    if not unknown:
        return
    opts.unknown.extend(unknown)
    if opts.field_validation == "Strict":
        raise ApiError(
            400, "BadRequest", "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown)
        )
    if opts.field_validation == "Warn":
        opts.warnings.extend(f'unknown field "{p}"' for p in unknown)
    schema.drop_fields(obj, unknown)


# ---------------------------------------------------------------------------------------------
# the store


class Store:
    """All objects of one emulated cluster, guarded by one lock (like etcd behind one apiserver)."""

    def __init__(self, version: tuple[int, int] = (1, 32)) -> None:
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str], JSON] = {}  # (plural, namespace, name) -> object
        self.version = version
        self.terminating: dict[str, float] = {}  # namespace -> monotonic time its deletion was asked
        self._rv = 1000
        self.changed = threading.Condition(self.lock)
        # (resourceVersion, event type, plural, object) of recent writes, for watches
        self.events: collections.deque[tuple[int, str, str, JSON]] = collections.deque(maxlen=10000)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    # -- helpers -------------------------------------------------------------------------------

    def _key(self, rd: ResourceDef, namespace: str | None, name: str) -> tuple[str, str, str]:
        return (rd.plural, namespace or "" if rd.namespaced else "", name)

    def _require_namespace(self, rd: ResourceDef, namespace: str | None, name: str) -> None:
        if not rd.namespaced:
            return
        ns = namespace or ""
        if ("namespaces", "", ns) not in self.objects:
            raise not_found(RESOURCES[("", "namespaces")], ns)
        if ns in self.terminating:
            err = ApiError(
                403,
                "Forbidden",
                f'{rd.group_resource} "{name}" is forbidden: unable to create new content in namespace {ns} '
                "because it is being terminated",
                details(rd, name),
            )
            err.details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {ns} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise err

    def _stamp(self, rd: ResourceDef, obj: JSON) -> None:
        obj["kind"] = rd.kind
        obj["apiVersion"] = rd.api_version
        obj["metadata"]["resourceVersion"] = self._next_rv()

    def _defaults(self, rd: ResourceDef, obj: JSON, current: JSON | None) -> None:
        meta = obj["metadata"]
        if rd.plural == "secrets":
            if obj.get("stringData"):
                data = obj.get("data") or {}
                for k, v in obj.pop("stringData").items():
                    data[k] = base64.b64encode(str(v).encode()).decode()
                obj["data"] = data
            obj.pop("stringData", None)
            obj.setdefault("type", "Opaque")
        if rd.plural == "namespaces":
            if self.version >= (1, 21):
                meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = (current or {}).get("status", {"phase": "Active"})
        if rd.plural == "services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            old_ip = ((current or {}).get("spec") or {}).get("clusterIP")
            if not spec.get("clusterIP"):
                spec["clusterIP"] = old_ip or f"10.96.{(self._rv // 250) % 250}.{self._rv % 250 + 1}"
            if self.version >= (1, 20) and spec["clusterIP"] != "None":
                spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("sessionAffinity", "None")
            for p in spec.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
                    p.setdefault("targetPort", p.get("port"))
        if rd.plural in ("deployments", "pods"):
            if current is not None and "status" not in obj:
                obj["status"] = current.get("status", {})
            obj.setdefault("status", {})
        if rd.plural == "deployments":
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault(
                "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
            )
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            if current is None:
                meta["generation"] = 1
            elif obj.get("spec") != current.get("spec"):
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1

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

    def create(self, rd: ResourceDef, namespace: str | None, body: Any, opts: WriteOptions = _NO_OPTS) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if body.get("kind") not in (None, rd.kind) or body.get("apiVersion") not in (None, rd.api_version):
            raise ApiError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({rd.api_version})",
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
        _check_fields(rd, obj, opts)
        decode_secret_data(rd, obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if meta.get("resourceVersion"):
            raise ApiError(
                500,
                "InternalError",
                "Internal error occurred: resourceVersion should not be set on objects to be created",
                {"causes": [{"message": "resourceVersion should not be set on objects to be created"}]},
            )
        with self.lock:
            self._defaults(rd, obj, None)
            validate(rd, obj, None, self.version)
            self._require_namespace(rd, namespace, str(meta["name"]))
            key = self._key(rd, namespace, meta["name"])
            if key in self.objects:
                raise already_exists(rd, meta["name"])
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            meta.pop("deletionTimestamp", None)
            obj["kind"], obj["apiVersion"] = rd.kind, rd.api_version
            if opts.dry_run:
                return copy.deepcopy(obj)
            self._stamp(rd, obj)
            self.objects[key] = obj
            self._event("ADDED", rd.plural, obj)
            return copy.deepcopy(obj)

    def _event(self, kind: str, plural: str, obj: JSON) -> None:
        self.events.append((self._rv, kind, plural, copy.deepcopy(obj)))
        self.changed.notify_all()

    def update(
        self, rd: ResourceDef, namespace: str | None, name: str, body: Any, opts: WriteOptions = _NO_OPTS
    ) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if body.get("kind") not in (None, rd.kind):
            raise ApiError(400, "BadRequest", f"the API version in the data ({body.get('apiVersion')}) does not match")
        _check_fields(rd, obj, opts)
        decode_secret_data(rd, obj)
        with self.lock:
            key = self._key(rd, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(rd, name)
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise conflict(rd, name)
            return self._replace(rd, key, current, obj, opts)

    def _replace(
        self, rd: ResourceDef, key: tuple[str, str, str], current: JSON, obj: JSON, opts: WriteOptions
    ) -> JSON:
        meta = obj["metadata"]
        # Server-owned fields come from the stored object.
        for f in ("uid", "creationTimestamp", "namespace", "generation", "deletionTimestamp"):
            if f in current["metadata"]:
                meta[f] = current["metadata"][f]
            else:
                meta.pop(f, None)
        self._defaults(rd, obj, current)
        validate(rd, obj, current, self.version)
        obj["kind"], obj["apiVersion"] = rd.kind, rd.api_version
        if _same(current, obj):
            return copy.deepcopy(current)  # a no-op write does not bump resourceVersion
        if opts.dry_run:
            return copy.deepcopy(obj)
        self._stamp(rd, obj)
        self.objects[key] = obj
        self._event("MODIFIED", rd.plural, obj)
        return copy.deepcopy(obj)

    def patch(
        self,
        rd: ResourceDef,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        opts: WriteOptions = _NO_OPTS,
    ) -> JSON:
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
                new = strategic_merge_patch(current, patch, rd.kind)
            elif content_type == "application/json-patch+json":
                new = json_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type})",
                )
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "patch result is not an object")
            sent_rv = ((patch.get("metadata") or {}) if isinstance(patch, dict) else {}).get("resourceVersion")
            if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                raise conflict(rd, name)
            new.setdefault("metadata", {})
            if new["metadata"].get("name") != name:
                raise ApiError(400, "BadRequest", "the name of the object cannot be changed by a patch")
            _check_fields(rd, new, opts)
            decode_secret_data(rd, new)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self._replace(rd, key, current, new, opts)

    def delete(
        self, rd: ResourceDef, namespace: str | None, name: str, options: Any = None, opts: WriteOptions = _NO_OPTS
    ) -> JSON:
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
                    f'Operation cannot be fulfilled on {rd.group_resource} "{name}": Precondition failed: '
                    f"UID in precondition: {pre['uid']}, UID in object meta: {current['metadata']['uid']}",
                    details(rd, name),
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise conflict(rd, name)
            if opts.dry_run:
                return copy.deepcopy(current)
            if rd.plural == "namespaces":
                # The namespace controller empties it first; until then it is Terminating.
                if name not in self.terminating:
                    self.terminating[name] = time.monotonic()
                    current["metadata"]["deletionTimestamp"] = now_iso()
                    current["status"] = {"phase": "Terminating"}
                    self._stamp(rd, current)
                    self._event("MODIFIED", rd.plural, current)
                return copy.deepcopy(current)
            del self.objects[key]
            self._next_rv()
            self._event("DELETED", rd.plural, current)
            return copy.deepcopy(current)

    def finalize_namespaces(self, older_than: float = 0.0) -> None:
        """The namespace controller: remove the content of Terminating namespaces, then the namespaces."""
        with self.lock:
            now = time.monotonic()
            for name, since in list(self.terminating.items()):
                if now - since < older_than:
                    continue
                for k in [k for k in self.objects if k[1] == name and k[0] != "namespaces"]:
                    gone = self.objects.pop(k)
                    self._next_rv()
                    self._event("DELETED", k[0], gone)
                ns = self.objects.pop(("namespaces", "", name), None)
                del self.terminating[name]
                self._next_rv()
                if ns is not None:
                    self._event("DELETED", "namespaces", ns)


def _same(a: JSON, b: JSON) -> bool:
    def strip(o: JSON) -> str:
        c = copy.deepcopy(o)
        c.get("metadata", {}).pop("resourceVersion", None)
        c.pop("kind", None)
        c.pop("apiVersion", None)
        return json.dumps(c, sort_keys=True)

    return strip(a) == strip(b)
