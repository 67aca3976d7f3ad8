"""kubectl's protobuf request bodies (``Content-Type: application/vnd.kubernetes.protobuf``), decoded.

kubectl v1.32 sends its typed creates (``create namespace``, ``create secret``, ``create
clusterrolebinding``, ``auth can-i``'s SelfSubjectAccessReview, ...) as protobuf, whatever the
server advertises: the body is the magic ``k8s\\x00`` and a ``runtime.Unknown`` message
(``typeMeta``, ``raw`` = the object's own message). There is no way to make kubectl send JSON
for these, so the emulator decodes them.

The wire format is decoded by the ``protobuf`` library (``google.protobuf``); only the message
descriptors are written here, with the field numbers of Kubernetes' ``generated.proto`` files
(k8s.io/api core/v1, rbac/v1, authorization/v1; k8s.io/apimachinery meta/v1, runtime,
util/intstr) for the kinds the emulator serves. PyPI's ``k8s-proto`` (0.0.3, 2019) was looked at
first: it has core/v1 only (no rbac or authorization), predates fields kubectl sends today and
pins ``protobuf<4``. A field not listed here is skipped by the parser, as an old server would.
Decoded objects are returned as the JSON the real server would have read (empty fields omitted,
``IntOrString`` as an int or a string, ``Time`` as RFC 3339).
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

MAGIC = b"k8s\x00"

# message -> [(json name, number, type, repeated)]; a type is a scalar name, "map<K,V>" or a message name.
_F = tuple[str, int, str, bool]
MESSAGES: dict[str, list[_F]] = {
    "TypeMeta": [("apiVersion", 1, "string", False), ("kind", 2, "string", False)],
    "Unknown": [
        ("typeMeta", 1, "TypeMeta", False),
        ("raw", 2, "bytes", False),
        ("contentEncoding", 3, "string", False),
        ("contentType", 4, "string", False),
    ],
    "Time": [("seconds", 1, "int64", False), ("nanos", 2, "int32", False)],
    "IntOrString": [("type", 1, "int64", False), ("intVal", 2, "int32", False), ("strVal", 3, "string", False)],
    "OwnerReference": [
        ("kind", 1, "string", False),
        ("name", 3, "string", False),
        ("uid", 4, "string", False),
        ("apiVersion", 5, "string", False),
        ("controller", 6, "bool", False),
        ("blockOwnerDeletion", 7, "bool", False),
    ],
    "ObjectMeta": [
        ("name", 1, "string", False),
        ("generateName", 2, "string", False),
        ("namespace", 3, "string", False),
        ("selfLink", 4, "string", False),
        ("uid", 5, "string", False),
        ("resourceVersion", 6, "string", False),
        ("generation", 7, "int64", False),
        ("creationTimestamp", 8, "Time", False),
        ("deletionTimestamp", 9, "Time", False),
        ("deletionGracePeriodSeconds", 10, "int64", False),
        ("labels", 11, "map<string,string>", False),
        ("annotations", 12, "map<string,string>", False),
        ("ownerReferences", 13, "OwnerReference", True),
        ("finalizers", 14, "string", True),
    ],
    "Namespace": [("metadata", 1, "ObjectMeta", False), ("spec", 2, "NamespaceSpec", False)],
    "NamespaceSpec": [("finalizers", 1, "string", True)],
    "Secret": [
        ("metadata", 1, "ObjectMeta", False),
        ("data", 2, "map<string,bytes>", False),
        ("type", 3, "string", False),
        ("stringData", 4, "map<string,string>", False),
        ("immutable", 5, "bool", False),
    ],
    "ConfigMap": [
        ("metadata", 1, "ObjectMeta", False),
        ("data", 2, "map<string,string>", False),
        ("binaryData", 3, "map<string,bytes>", False),
        ("immutable", 4, "bool", False),
    ],
    "ServicePort": [
        ("name", 1, "string", False),
        ("protocol", 2, "string", False),
        ("port", 3, "int32", False),
        ("targetPort", 4, "IntOrString", False),
        ("nodePort", 5, "int32", False),
        ("appProtocol", 6, "string", False),
    ],
    "ServiceSpec": [
        ("ports", 1, "ServicePort", True),
        ("selector", 2, "map<string,string>", False),
        ("clusterIP", 3, "string", False),
        ("type", 4, "string", False),
        ("externalIPs", 5, "string", True),
        ("sessionAffinity", 7, "string", False),
        ("loadBalancerIP", 8, "string", False),
        ("loadBalancerSourceRanges", 9, "string", True),
        ("externalName", 10, "string", False),
        ("externalTrafficPolicy", 11, "string", False),
        ("healthCheckNodePort", 12, "int32", False),
        ("publishNotReadyAddresses", 13, "bool", False),
        ("ipFamilyPolicy", 17, "string", False),
        ("clusterIPs", 18, "string", True),
        ("ipFamilies", 19, "string", True),
        ("allocateLoadBalancerNodePorts", 20, "bool", False),
        ("loadBalancerClass", 21, "string", False),
        ("internalTrafficPolicy", 22, "string", False),
    ],
    "Service": [("metadata", 1, "ObjectMeta", False), ("spec", 2, "ServiceSpec", False)],
    "PolicyRule": [
        ("verbs", 1, "string", True),
        ("apiGroups", 2, "string", True),
        ("resources", 3, "string", True),
        ("resourceNames", 4, "string", True),
        ("nonResourceURLs", 5, "string", True),
    ],
    "Subject": [
        ("kind", 1, "string", False),
        ("apiGroup", 2, "string", False),
        ("name", 3, "string", False),
        ("namespace", 4, "string", False),
    ],
    "RoleRef": [("apiGroup", 1, "string", False), ("kind", 2, "string", False), ("name", 3, "string", False)],
    "ClusterRole": [("metadata", 1, "ObjectMeta", False), ("rules", 2, "PolicyRule", True)],
    "Role": [("metadata", 1, "ObjectMeta", False), ("rules", 2, "PolicyRule", True)],
    "ClusterRoleBinding": [
        ("metadata", 1, "ObjectMeta", False),
        ("subjects", 2, "Subject", True),
        ("roleRef", 3, "RoleRef", False),
    ],
    "RoleBinding": [
        ("metadata", 1, "ObjectMeta", False),
        ("subjects", 2, "Subject", True),
        ("roleRef", 3, "RoleRef", False),
    ],
    "ResourceAttributes": [
        ("namespace", 1, "string", False),
        ("verb", 2, "string", False),
        ("group", 3, "string", False),
        ("version", 4, "string", False),
        ("resource", 5, "string", False),
        ("subresource", 6, "string", False),
        ("name", 7, "string", False),
    ],
    "NonResourceAttributes": [("path", 1, "string", False), ("verb", 2, "string", False)],
    "SelfSubjectAccessReviewSpec": [
        ("resourceAttributes", 1, "ResourceAttributes", False),
        ("nonResourceAttributes", 2, "NonResourceAttributes", False),
    ],
    "SelfSubjectAccessReview": [
        ("metadata", 1, "ObjectMeta", False),
        ("spec", 2, "SelfSubjectAccessReviewSpec", False),
    ],
}
KINDS = ("Namespace", "Secret", "ConfigMap", "Service", "ClusterRole", "Role", "ClusterRoleBinding", "RoleBinding",
         "SelfSubjectAccessReview")  # fmt: skip

_SCALARS = {"string": 9, "bytes": 12, "int32": 5, "int64": 3, "bool": 8}
_PACKAGE = "emulator.k8s"
_classes: dict[str, Any] = {}


class ProtobufError(ValueError):
    pass


def _build() -> dict[str, Any]:
    if _classes:
        return _classes
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="emulator_k8s.proto", package=_PACKAGE, syntax="proto2")
    for name, fields in MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated in fields:
            f = msg.field.add(name=fname, number=number, json_name=fname)
            f.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
            if ftype.startswith("map<"):
                key, value = ftype[4:-1].split(",")
                entry = msg.nested_type.add(name=fname[0].upper() + fname[1:] + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_SCALARS[key], label=f.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=_SCALARS[value], label=f.LABEL_OPTIONAL)
                f.label = f.LABEL_REPEATED
                f.type = f.TYPE_MESSAGE
                f.type_name = f".{_PACKAGE}.{name}.{entry.name}"
            elif ftype in _SCALARS:
                f.type = _SCALARS[ftype]
            else:
                f.type = f.TYPE_MESSAGE
                f.type_name = f".{_PACKAGE}.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    for name in MESSAGES:
        _classes[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
    return _classes


def _value(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        mname = field.message_type.name
        if mname == "Time":
            if not value.seconds:
                return None
            return dt.datetime.fromtimestamp(value.seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if mname == "IntOrString":
            return value.strVal if value.type == 1 else value.intVal
        return to_json(value)
    if field.type == field.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def _repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 6; older ones have ``label``
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def _empty(v: Any) -> bool:
    return v is None or v == "" or v is False or (v == 0 and not isinstance(v, bool)) or v == [] or v == {}


def to_json(msg: Any) -> dict[str, Any]:
    """A decoded message as Kubernetes JSON: Go's ``omitempty`` (zero values left out)."""
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            vf = field.message_type.fields_by_name["value"]
            conv = {k: _value(vf, v) for k, v in value.items()}
        elif _repeated(field):
            conv = [_value(field, v) for v in value]
        else:
            conv = _value(field, value)
        if not _empty(conv):
            out[field.name] = conv
    return out


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    """The object in a ``k8s\\x00`` envelope, as JSON (with ``apiVersion`` and ``kind``)."""
    from google.protobuf.message import DecodeError

    if not raw.startswith(MAGIC):
        raise ProtobufError("no k8s protobuf envelope")
    classes = _build()
    try:
        unknown = classes["Unknown"].FromString(raw[len(MAGIC) :])
    except DecodeError as exc:
        raise ProtobufError(f"bad envelope: {exc}") from exc
    kind, api_version = unknown.typeMeta.kind, unknown.typeMeta.apiVersion
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not decoded by the emulator; send JSON")
    if unknown.contentEncoding:
        raise ProtobufError(f"content encoding {unknown.contentEncoding!r} is not supported")
    try:
        obj = to_json(classes[kind].FromString(unknown.raw))
    except DecodeError as exc:
        raise ProtobufError(f"bad {kind}: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}
