"""What kube-apiserver's validation refuses (422 Invalid) for the kinds the emulator serves.

Names (DNS-1123 label or subdomain, DNS-1035 label for Services, path segments for RBAC kinds),
labels and annotations (qualified keys, label values, 256 KiB of annotations), Secret keys and the
1 MiB data limit, Service ports, containers, selectors, RBAC subjects and role references, and the
fields that are immutable on update (a Secret's ``type``, a Deployment's selector, a Service's
cluster IP, a binding's ``roleRef``, most of a Pod's spec). Messages follow the real server's
``field: Type: "value": detail`` form; each failure is one ``details.causes`` entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from tests.kubeapi.errors import JSON, ApiError, Cause, ResourceDef, bad, invalid, required
from tests.kubeapi.labels import label_key_errors, label_value_errors

MAX_SECRET = 1024 * 1024
MAX_ANNOTATIONS = 256 * 1024
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_IANA_SVC = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def _name_causes(rd: ResourceDef, name: Any) -> list[Cause]:
    if not isinstance(name, str) or not name:
        return [required("metadata.name", "name or generateName is required")]
    if rd.group == "rbac.authorization.k8s.io":
        if name in (".", "..") or "/" in name or "%" in name:
            return [bad("metadata.name", name, "may not contain '/' or '%' and may not be '.' or '..'")]
        return []
    if rd.plural == "services":
        if len(name) > 63:
            return [bad("metadata.name", name, "must be no more than 63 characters")]
        return [] if _DNS1035_LABEL.match(name) else [bad("metadata.name", name, DNS1035_LABEL_MSG)]
    if rd.plural == "namespaces":
        if len(name) > 63:
            return [bad("metadata.name", name, "must be no more than 63 characters")]
        return [] if _DNS1123_LABEL.match(name) else [bad("metadata.name", name, DNS1123_LABEL_MSG)]
    if len(name) > 253:
        return [bad("metadata.name", name, "must be no more than 253 characters")]
    return [] if _DNS1123_SUBDOMAIN.match(name) else [bad("metadata.name", name, DNS1123_SUBDOMAIN_MSG)]


def _meta_causes(meta: JSON, prefix: str = "metadata") -> list[Cause]:
    causes: list[Cause] = []
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            return [bad(f"{prefix}.labels", labels, "must be a map of string to string")]
        for k, v in labels.items():
            causes += [bad(f"{prefix}.labels", k, e) for e in label_key_errors(k)]
            if not isinstance(v, str):
                causes.append(bad(f"{prefix}.labels", v, "must be a string"))
            else:
                causes += [bad(f"{prefix}.labels", v, e) for e in label_value_errors(v)]
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict):
            return [*causes, bad(f"{prefix}.annotations", annotations, "must be a map of string to string")]
        total = 0
        for k, v in annotations.items():
            causes += [bad(f"{prefix}.annotations", k, e) for e in label_key_errors(k.lower())]
            total += len(k) + len(v if isinstance(v, str) else "")
        if total > MAX_ANNOTATIONS:
            causes.append(Cause(f"{prefix}.annotations", "Too long", f"must have at most {MAX_ANNOTATIONS} bytes"))
    return causes


def _containers(items: Any, field: str) -> list[Cause]:
    if not items:
        return [required(field)]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, c in enumerate(items if isinstance(items, list) else []):
        name = c.get("name") if isinstance(c, dict) else None
        if not name:
            causes.append(required(f"{field}[{i}].name"))
        elif not _DNS1123_LABEL.match(str(name)) or len(str(name)) > 63:
            causes.append(bad(f"{field}[{i}].name", name, DNS1123_LABEL_MSG))
        elif name in seen:
            causes.append(Cause(f"{field}[{i}].name", "Duplicate value", "", name, True))
        seen.add(str(name))
        if isinstance(c, dict) and not c.get("image"):
            causes.append(required(f"{field}[{i}].image"))
    return causes


def _service(spec: JSON, version: tuple[int, int]) -> list[Cause]:
    causes: list[Cause] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            Cause(
                "spec.type",
                "Unsupported value",
                'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                stype,
                True,
            )
        )
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    if not ports and not headless and stype != "ExternalName":
        causes.append(required("spec.ports"))
    names: set[str] = set()
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            causes.append(bad(f"spec.ports[{i}]", p, "must be an object"))
            continue
        port = p.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            causes.append(bad(f"spec.ports[{i}].port", port, "must be between 1 and 65535, inclusive"))
        pname = p.get("name", "")
        if len(ports) > 1 and not pname:
            causes.append(required(f"spec.ports[{i}].name"))
        elif pname and (not _DNS1123_LABEL.match(pname) or len(pname) > 63):
            causes.append(bad(f"spec.ports[{i}].name", pname, DNS1123_LABEL_MSG))
        elif pname in names:
            causes.append(Cause(f"spec.ports[{i}].name", "Duplicate value", "", pname, True))
        names.add(pname)
        proto = p.get("protocol", "TCP")
        if proto not in ("TCP", "UDP", "SCTP"):
            causes.append(
                Cause(
                    f"spec.ports[{i}].protocol",
                    "Unsupported value",
                    'supported values: "SCTP", "TCP", "UDP"',
                    proto,
                    True,
                )
            )
        target = p.get("targetPort")
        if isinstance(target, int) and not 1 <= target <= 65535:
            causes.append(bad(f"spec.ports[{i}].targetPort", target, "must be between 1 and 65535, inclusive"))
        elif isinstance(target, str) and (not _IANA_SVC.match(target) or len(target) > 15):
            causes.append(bad(f"spec.ports[{i}].targetPort", target, "must contain only alpha-numeric characters"))
    del version
    return causes


def _secret(obj: JSON) -> list[Cause]:
    causes: list[Cause] = []
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        return [bad("data", data, "must be a map")]
    total = 0
    for k, v in data.items():
        if k in (".", ".."):
            causes.append(bad(f"data[{k}]", k, f"must not be '{k}'"))
        elif k.startswith(".."):
            causes.append(bad(f"data[{k}]", k, "must not start with '..'"))
        elif not _CONFIG_KEY.match(k) or len(k) > 253:
            causes.append(
                bad(
                    f"data[{k}]",
                    k,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
                    "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                    "'[-._a-zA-Z0-9]+')",
                )
            )
        total += len(base64.b64decode(v)) if isinstance(v, str) else 0
    if total > MAX_SECRET:
        causes.append(Cause("data", "Too long", f"must have at most {MAX_SECRET} bytes"))
    return causes


def decode_secret_data(rd: ResourceDef, obj: JSON) -> None:
    """Secret ``data`` (and ConfigMap ``binaryData``) values must be base64: the real server fails
    decoding first (400, not 422). A ConfigMap's ``data`` is plain text."""
    data = obj.get("binaryData" if rd.plural == "configmaps" else "data")
    if not isinstance(data, dict):
        return
    for v in data.values():
        try:
            if not isinstance(v, str):
                raise TypeError(v)
            base64.b64decode(v, validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise ApiError(
                400,
                "BadRequest",
                f'{rd.kind} in version "{rd.version}" cannot be handled as a {rd.kind}: illegal base64 data',
            ) from exc


def _label_selector(sel: Any, field: str) -> list[Cause]:
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        return [required(field)] if not sel else [bad(field, sel, "empty selector is invalid for deployment")]
    causes: list[Cause] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        causes += [bad(f"{field}.matchLabels", k, e) for e in label_key_errors(k)]
        causes += [bad(f"{field}.matchLabels", v, e) for e in label_value_errors(str(v))]
    return causes


def _rbac(rd: ResourceDef, obj: JSON) -> list[Cause]:
    causes: list[Cause] = []
    if rd.kind in ("ClusterRole", "Role"):
        for i, rule in enumerate(obj.get("rules") or []):
            if not (rule or {}).get("verbs"):
                causes.append(required(f"rules[{i}].verbs", "verbs must contain at least one value"))
        return causes
    ref = obj.get("roleRef") or {}
    kinds = ("ClusterRole",) if rd.kind == "ClusterRoleBinding" else ("Role", "ClusterRole")
    if ref.get("kind") not in kinds:
        causes.append(
            Cause("roleRef.kind", "Unsupported value", ", ".join(f'"{k}"' for k in kinds), ref.get("kind", ""), True)
        )
    if not ref.get("name"):
        causes.append(required("roleRef.name"))
    for i, s in enumerate(obj.get("subjects") or []):
        kind = (s or {}).get("kind")
        if kind not in ("User", "Group", "ServiceAccount"):
            causes.append(
                Cause(f"subjects[{i}].kind", "Unsupported value", '"ServiceAccount", "User", "Group"', kind, True)
            )
        if not (s or {}).get("name"):
            causes.append(required(f"subjects[{i}].name"))
        if kind == "ServiceAccount" and not s.get("namespace") and rd.kind == "ClusterRoleBinding":
            causes.append(required(f"subjects[{i}].namespace"))
    return causes


def _immutable(rd: ResourceDef, obj: JSON, old: JSON, version: tuple[int, int]) -> list[Cause]:
    causes: list[Cause] = []
    if rd.plural == "secrets":
        if obj.get("type", "Opaque") != old.get("type", "Opaque"):
            causes.append(bad("type", obj.get("type", ""), "field is immutable"))
        if old.get("immutable") and (obj.get("data") != old.get("data") or not obj.get("immutable")):
            causes.append(Cause("data", "Forbidden", "field is immutable when `immutable` is set"))
    if rd.plural == "deployments":
        sel, was = (obj.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
        if sel != was:
            causes.append(bad("spec.selector", sel, "field is immutable"))
    if rd.plural == "services":
        ip, was = (obj.get("spec") or {}).get("clusterIP"), (old.get("spec") or {}).get("clusterIP")
        if ip and was and ip != was:
            if version >= (1, 20):
                causes.append(bad("spec.clusterIPs[0]", [ip], "may not change once set"))
            else:
                causes.append(bad("spec.clusterIP", ip, "field is immutable"))
    if rd.plural in ("clusterrolebindings", "rolebindings") and obj.get("roleRef") != old.get("roleRef"):
        causes.append(bad("roleRef", obj.get("roleRef"), "cannot change roleRef"))
    if rd.plural == "pods":

        def strip_images(spec: Any) -> str:
            s = json.loads(json.dumps(spec or {}))
            for c in s.get("containers") or []:
                c.pop("image", None)
            return json.dumps(s, sort_keys=True)

        if strip_images(obj.get("spec")) != strip_images(old.get("spec")):
            causes.append(
                Cause(
                    "spec",
                    "Forbidden",
                    "pod updates may not change fields other than `spec.containers[*].image`, "
                    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                    "(only additions to existing tolerations) or `spec.terminationGracePeriodSeconds`",
                )
            )
    return causes


def validate(rd: ResourceDef, obj: JSON, old: JSON | None = None, version: tuple[int, int] = (1, 32)) -> None:
    """422 Invalid (with one cause per failure) for what the real server refuses."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes = _name_causes(rd, name) + _meta_causes(meta)
    spec = obj.get("spec") or {}
    if rd.plural == "secrets":
        causes += _secret(obj)
    elif rd.plural == "services":
        causes += _service(spec, version)
    elif rd.plural == "deployments":
        sel = spec.get("selector")
        causes += _label_selector(sel, "spec.selector")
        tmpl = spec.get("template") or {}
        tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
        match = (sel or {}).get("matchLabels") or {} if isinstance(sel, dict) else {}
        if match and any(tlabels.get(k) != v for k, v in match.items()):
            causes.append(bad("spec.template.metadata.labels", tlabels, "`selector` does not match template `labels`"))
        causes += _meta_causes(tmpl.get("metadata") or {}, "spec.template.metadata")
        causes += _containers((tmpl.get("spec") or {}).get("containers"), "spec.template.spec.containers")
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            causes.append(bad("spec.replicas", replicas, "must be greater than or equal to 0"))
    elif rd.plural == "pods":
        causes += _containers(spec.get("containers"), "spec.containers")
    elif rd.group == "rbac.authorization.k8s.io":
        causes += _rbac(rd, obj)
    if old is not None:
        causes += _immutable(rd, obj, old, version)
    if causes:
        raise invalid(rd, str(name), causes)
