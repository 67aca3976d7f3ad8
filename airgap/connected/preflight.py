"""``airgap preflight``: the guide's requirements, checked against a cluster before installing.

* a supported Kubernetes version (ASM 1.8 supports Kubernetes 1.16 to 1.19; see
  :data:`SUPPORTED`: the range is this release's, not a general rule);
* at least 4 nodes, 4 vCPU and 15 GB of memory allocatable in total;
* service ports named ``protocol[-suffix]`` (or carrying ``appProtocol``), offenders listed;
  the system namespaces (kube-system, kube-public, kube-node-lease) are not checked;
* the caller may create cluster-wide RBAC (SelfSubjectAccessReview for clusterroles and
  clusterrolebindings), which ``istioctl install`` needs;
* the caller may make every call airgap itself makes (:data:`ACCESS`: each verb on each resource,
  in the namespace it is made in), each checked with a SelfSubjectAccessReview, so a missing
  permission is found here rather than half-way through an import or an install;
* no namespace carries both ``istio-injection`` and ``istio.io/rev`` (injection then fails).

The cluster's answers are facts to check, not trusted input: malformed values fail the check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

JSON = dict[str, Any]

SUPPORTED = ((1, 16), (1, 19))  # ASM 1.8.6: Kubernetes 1.16 - 1.19
MIN_NODES = 4
MIN_CPU = Decimal(4)
MIN_MEMORY = Decimal(15) * 1000**3  # 15 GB
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
# Istio's protocol selection by port name (1.8): the part before the first '-'.
PROTOCOLS = ("grpc", "grpc-web", "http", "http2", "https", "mongo", "mysql", "redis", "tcp", "tls", "udp")
_PORT_NAME = re.compile(r"^(grpc-web|grpc|http2|https|http|mongo|mysql|redis|tcp|tls|udp)(-.*)?$")

_SUFFIX = {
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(1000),
    "M": Decimal(1000**2),
    "G": Decimal(1000**3),
    "T": Decimal(1000**4),
    "P": Decimal(1000**5),
    "E": Decimal(1000**6),
}


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes resource quantity (``4``, ``3800m``, ``16Gi``, ``1e3``) as a number; ValueError if not one."""
    text = str(value).strip()
    m = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]{0,2})", text)
    if not m or (m.group(2) and m.group(2) not in _SUFFIX):
        raise ValueError(f"not a quantity: {text!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as exc:
        raise ValueError(f"not a quantity: {text!r}") from exc
    return number * _SUFFIX.get(m.group(2), Decimal(1))


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    offenders: list[str] = field(default_factory=list)

    def as_dict(self) -> JSON:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "offenders": self.offenders}


@dataclass
class PreflightReport:
    context: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> JSON:
        return {"context": self.context, "ok": self.ok, "checks": [c.as_dict() for c in self.checks]}

    def text(self) -> str:
        lines = [f"context: {self.context}"]
        for c in self.checks:
            lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}")
            lines += [f"        {o}" for o in c.offenders]
        return "\n".join(lines)


def check_version(kube: Any, defaults: Any = None) -> Check:
    """The server's Kubernetes version against the release's range (ASM 1.8's when no release is given).

    ``defaults`` is a :class:`airgap.connected.catalog.ReleaseDefaults`; a release the catalog does
    not know passes with a warning in its detail (its range is not known, so it is not checked).
    """
    supported, label = SUPPORTED, "ASM 1.8"
    if defaults is not None:
        if defaults.line is None:
            return Check(
                "kubernetes-version",
                True,
                f"warning: release {defaults.version} is not in airgap's catalog; Kubernetes version not checked",
            )
        supported, label = defaults.line.kubernetes, f"{defaults.line.line} ({defaults.version})"
    doc = kube.version()
    git = str(doc.get("gitVersion", ""))
    m = re.match(r"^v?(\d+)\.(\d+)", git)
    if m:
        major, minor = int(m.group(1)), int(m.group(2))
    else:
        try:  # some providers report minor as "19+"
            major, minor = int(str(doc.get("major", "")).rstrip("+")), int(str(doc.get("minor", "")).rstrip("+"))
        except ValueError:
            return Check("kubernetes-version", False, f"cannot read the server version ({git or 'none'})")
    lo, hi = supported
    ok = lo <= (major, minor) <= hi
    verdict = "supported" if ok else "not supported"
    detail = f"{git or f'{major}.{minor}'} ({verdict}; {label} supports {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]})"
    return Check("kubernetes-version", ok, detail)


def check_nodes(kube: Any) -> list[Check]:
    nodes = kube.list("Node")
    cpu, mem, bad = Decimal(0), Decimal(0), []
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        try:
            cpu += parse_quantity(alloc.get("cpu", "0"))
            mem += parse_quantity(alloc.get("memory", "0"))
        except ValueError as exc:
            bad.append(f"node {n['metadata'].get('name')}: {exc}")
    gb = mem / Decimal(1000**3)
    return [
        Check("nodes", len(nodes) >= MIN_NODES, f"{len(nodes)} nodes (need at least {MIN_NODES})"),
        Check(
            "cpu", cpu >= MIN_CPU and not bad, f"{cpu.normalize():f} vCPU allocatable (need at least {MIN_CPU})", bad
        ),
        Check(
            "memory",
            mem >= MIN_MEMORY and not bad,
            f"{gb.quantize(Decimal('0.1'))} GB allocatable (need at least 15 GB)",
            bad,
        ),
    ]


def check_port_names(kube: Any) -> Check:
    offenders = []
    for svc in kube.list("Service"):
        ns = str(svc["metadata"].get("namespace", ""))
        if ns in SYSTEM_NAMESPACES:
            continue
        for p in (svc.get("spec") or {}).get("ports") or []:
            if p.get("appProtocol"):
                continue
            name = str(p.get("name") or "")
            if not _PORT_NAME.match(name):
                offenders.append(f"{ns}/{svc['metadata']['name']} port {p.get('port')} name {name or '(unnamed)'!s}")
    detail = (
        "all service ports are named protocol[-suffix]"
        if not offenders
        else f"{len(offenders)} port(s) not named protocol[-suffix]"
    )
    return Check("service-port-names", not offenders, detail, offenders)


def check_rbac(kube: Any) -> Check:
    denied = []
    for resource in ("clusterroles", "clusterrolebindings"):
        allowed, reason = kube.can_i("create", resource, group="rbac.authorization.k8s.io")
        if not allowed:
            denied.append(f"create {resource}" + (f" ({reason})" if reason else ""))
    if denied:
        return Check("cluster-rbac", False, "the caller may not create cluster-wide RBAC (grant cluster-admin)", denied)
    return Check("cluster-rbac", True, "the caller may create clusterroles and clusterrolebindings")


# (verb, resource, API group, namespace or None for cluster-wide/all namespaces, the commands that need it)
ACCESS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("list", "nodes", "", None, "preflight"),
    ("list", "namespaces", "", None, "preflight, mesh status"),
    ("get", "namespaces", "", None, "bundle import, mesh"),
    ("create", "namespaces", "", None, "bundle import, mesh install"),
    ("update", "namespaces", "", None, "mesh install"),
    ("patch", "namespaces", "", None, "mesh inject"),
    ("list", "services", "", None, "preflight"),
    ("get", "services", "", "istio-system", "mesh install"),
    ("create", "services", "", "istio-system", "mesh install"),
    ("update", "services", "", "istio-system", "mesh install"),
    ("get", "secrets", "", "istio-system", "bundle import, mesh status"),
    ("list", "secrets", "", "istio-system", "bundle import --rotate"),
    ("create", "secrets", "", "istio-system", "bundle import"),
    ("update", "secrets", "", "istio-system", "bundle import"),
    ("delete", "secrets", "", "istio-system", "bundle import --rotate"),
    ("list", "pods", "", None, "mesh install, inject, status"),
    ("list", "deployments", "apps", None, "mesh inject"),
    ("patch", "deployments", "apps", None, "mesh inject --restart"),
    ("get", "gateways", "networking.istio.io", "istio-system", "mesh install --east-west"),
    ("create", "gateways", "networking.istio.io", "istio-system", "mesh install --east-west"),
    ("update", "gateways", "networking.istio.io", "istio-system", "mesh install --east-west"),
    ("get", "serviceaccounts", "", "istio-system", "mesh connect"),
    ("create", "serviceaccounts", "", "istio-system", "mesh connect"),
    ("get", "clusterroles", "rbac.authorization.k8s.io", None, "mesh connect"),
    ("get", "clusterrolebindings", "rbac.authorization.k8s.io", None, "mesh connect"),
)
# creating clusterroles and clusterrolebindings (mesh connect, istioctl install) is the cluster-rbac check


def check_access(kube: Any) -> Check:
    """Every call airgap makes, asked of the server (SelfSubjectAccessReview), the refused ones listed."""
    denied = []
    for verb, resource, group, namespace, needed_by in ACCESS:
        allowed, reason = kube.can_i(verb, resource, group=group, namespace=namespace)
        if not allowed:
            res = f"{resource}.{group}" if group else resource
            where = f" in {namespace}" if namespace else ""
            denied.append(f"{verb} {res}{where} (needed by {needed_by})" + (f": {reason}" if reason else ""))
    if denied:
        return Check("api-access", False, f"{len(denied)} of the {len(ACCESS)} calls airgap makes are refused", denied)
    return Check("api-access", True, f"all {len(ACCESS)} calls airgap makes are allowed")


def check_injection_labels(kube: Any) -> Check:
    both = []
    for ns in kube.list("Namespace"):
        labels = ns["metadata"].get("labels") or {}
        if "istio-injection" in labels and "istio.io/rev" in labels:
            name = ns["metadata"]["name"]
            both.append(f"{name}: istio-injection={labels['istio-injection']}, istio.io/rev={labels['istio.io/rev']}")
    detail = (
        "no namespace has both istio-injection and istio.io/rev"
        if not both
        else "namespaces with both labels (injection fails)"
    )
    return Check("injection-labels", not both, detail, both)


def preflight(kube: Any, defaults: Any = None) -> PreflightReport:
    """Run every check on one cluster; transport failures raise ClusterError (exit 5).

    ``defaults`` (from ``--release``) gives the Kubernetes range to check; absent, ASM 1.8's.
    """
    checks = [
        check_version(kube, defaults),
        *check_nodes(kube),
        check_port_names(kube),
        check_rbac(kube),
        check_access(kube),
        check_injection_labels(kube),
    ]
    return PreflightReport(kube.context, checks)
