"""RBAC as kube-apiserver's authorizer evaluates it: additive rules from (Cluster)Roles, bound to users
and groups by (Cluster)RoleBindings stored in the emulated cluster.

* ``system:masters`` is allowed everything (the superuser group, as the real authorizer does);
* discovery, ``/version``, ``/healthz`` and ``/openapi`` are open to every authenticated user
  (``system:discovery``), and so is creating a SelfSubjectAccessReview (``system:basic-user``);
* otherwise a request is allowed when a ClusterRoleBinding, or a RoleBinding in the request's
  namespace, grants a rule matching its verb, API group, resource and name. There is no deny.

Refusals are 403 ``Forbidden`` with the real message: ``secrets "cacerts" is forbidden: User "dev"
cannot get resource "secrets" in API group "" in the namespace "istio-system"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.kubeapi.errors import JSON, RESOURCES, ApiError, ResourceDef

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ("system:authenticated",)

    @property
    def superuser(self) -> bool:
        return "system:masters" in self.groups


@dataclass(frozen=True)
class Attributes:
    verb: str
    group: str
    resource: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""


def _rule_matches(rule: JSON, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    return (
        ("*" in verbs or a.verb in verbs)
        and ("*" in groups or a.group in groups)
        and ("*" in resources or res in resources)
        and (not names or a.name in names)
    )


def _subject_matches(subject: JSON, user: User, binding_ns: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user.name == f"system:serviceaccount:{ns}:{name}"
    return False


def authorize(objects: dict[tuple[str, str, str], JSON], user: User, a: Attributes) -> tuple[bool, str]:
    """(allowed, reason) for ``user`` doing ``a``, from the bindings and roles in ``objects``."""
    if user.superuser:
        return True, ""
    if a.resource == "selfsubjectaccessreviews" and a.verb == "create":
        return True, 'RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user"'

    def role(kind: str, ns: str, name: str) -> JSON | None:
        plural = "clusterroles" if kind == "ClusterRole" else "roles"
        return objects.get((plural, ns if plural == "roles" else "", name))

    candidates: list[tuple[str, JSON]] = []
    for (plural, ns, _name), obj in objects.items():
        if plural == "clusterrolebindings" or (plural == "rolebindings" and a.namespace and ns == a.namespace):
            candidates.append((ns, obj))
    for ns, binding in sorted(candidates, key=lambda c: (c[0], c[1]["metadata"]["name"])):
        if not any(_subject_matches(s, user, ns) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        r = role(str(ref.get("kind")), ns, str(ref.get("name")))
        if r is None:
            continue
        if any(_rule_matches(rule, a) for rule in r.get("rules") or []):
            kind = "ClusterRoleBinding" if binding["kind"] == "ClusterRoleBinding" else "RoleBinding"
            where = f' in namespace "{ns}"' if ns else ""
            return True, (
                f'RBAC: allowed by {kind} "{binding["metadata"]["name"]}"{where} of {ref.get("kind")} '
                f'"{ref.get("name")}" to User "{user.name}"'
            )
    return False, ""


def forbidden_message(user: User, a: Attributes, rd: ResourceDef | None = None) -> str:
    group = a.group
    gr = f"{a.resource}.{group}" if group else a.resource
    if a.subresource:
        gr = f"{gr}/{a.subresource}"
    subject = f'{gr} "{a.name}"' if a.name else gr
    res = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    scope = f'in the namespace "{a.namespace}"' if a.namespace else "at the cluster scope"
    del rd
    return f'{subject} is forbidden: User "{user.name}" cannot {a.verb} resource "{res}" in API group "{group}" {scope}'


def forbidden(user: User, a: Attributes) -> ApiError:
    d: JSON = {}
    if a.name:
        d["name"] = a.name
    if a.group:
        d["group"] = a.group
    d["kind"] = a.resource
    return ApiError(403, "Forbidden", forbidden_message(user, a), d)


def seed(create: Any) -> None:
    """cluster-admin bound to system:masters, and a ``view``-like role, as a fresh cluster has them."""
    create(
        "clusterroles",
        None,
        {
            "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        },
    )
    create(
        "clusterrolebindings",
        None,
        {
            "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": "system:masters"}],
        },
    )
    create(
        "clusterroles",
        None,
        {
            "metadata": {"name": "view", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "rules": [
                {
                    "apiGroups": ["", "apps"],
                    "resources": ["namespaces", "pods", "services", "deployments", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    )


def resource_def(group: str, resource: str) -> ResourceDef | None:
    return RESOURCES.get((group, resource))
