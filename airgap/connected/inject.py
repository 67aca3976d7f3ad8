"""``mesh inject``: turn on sidecar injection for namespaces, the guide's way, and check it took.

Trusted: the operator's namespace list and ``--revision``. Not trusted: the cluster's labels
and pods, which are read and checked.

1. The revision: ``--revision``, or the ``istio.io/rev`` label of the running istiod pods;
   refused when none runs, or several do and none was chosen, or ``--revision`` names one no
   running control plane serves (its injection webhook would not exist: pods stay uninjected).
2. Every namespace must exist before any is changed, and the caller must be allowed (asked with
   SelfSubjectAccessReviews) every write the run will make: refused otherwise, nothing changed.
3. One JSON merge patch per namespace sets ``istio.io/rev`` and removes ``istio-injection``
   (with both labels, injection silently fails).
4. ``restart``: every deployment in the namespace gets kubectl's ``restartedAt`` template
   annotation (what ``kubectl rollout restart`` does); we wait for the rollouts and then list
   the pods still without the revision label.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airgap.connected.mesh import ISTIOD_SELECTOR, NAMESPACE, REV_LABEL
from airgap.core.names import DNS_LABEL_RE
from airgap.core.retry import poll_until
from airgap.errors import ClusterError, InvalidInput, Refused

JSON = dict[str, Any]
LEGACY_LABEL = "istio-injection"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


@dataclass
class NamespaceResult:
    namespace: str
    label: str  # "set" | "unchanged"
    restarted: list[str] = field(default_factory=list)
    without_revision: list[str] = field(default_factory=list)

    def as_dict(self) -> JSON:
        return {
            "namespace": self.namespace,
            "label": self.label,
            "restarted": self.restarted,
            "pods_without_revision": self.without_revision,
        }


@dataclass
class InjectResult:
    context: str
    revision: str
    namespaces: list[NamespaceResult]

    @property
    def pods_without_revision(self) -> list[str]:
        return [f"{n.namespace}/{p}" for n in self.namespaces for p in n.without_revision]

    def as_dict(self) -> JSON:
        return {
            "context": self.context,
            "revision": self.revision,
            "namespaces": [n.as_dict() for n in self.namespaces],
        }


def running_revisions(kube: Any) -> list[str]:
    """The ``istio.io/rev`` labels of the istiod pods in istio-system, sorted."""
    pods = kube.list("Pod", NAMESPACE, selector=ISTIOD_SELECTOR)
    return sorted({str((p["metadata"].get("labels") or {}).get(REV_LABEL, "default")) for p in pods})


def choose_revision(kube: Any, revision: str | None) -> str:
    """Step 1: the chosen revision (if a control plane serves it), or the one running istiod revision."""
    revs = running_revisions(kube)
    if revision:
        if revision not in revs:
            running = ", ".join(revs) if revs else f"none; no istiod runs in {NAMESPACE}"
            raise Refused(
                f"context {kube.context}: no control plane serves revision {revision!r} (running: {running}); "
                "nothing changed"
            )
        return revision
    if not revs:
        raise Refused(f"context {kube.context}: no istiod runs in {NAMESPACE}; install the mesh or pass --revision")
    if len(revs) > 1:
        raise Refused(
            f"context {kube.context}: several istiod revisions run ({', '.join(revs)}); choose one with --revision"
        )
    return revs[0]


def _require_access(kube: Any, needs: list[tuple[str, str, str, str | None]]) -> None:
    """Refused (nothing written yet) unless the server allows every one of ``needs``
    (and, for a context with insecure-skip-tls-verify, ``--insecure`` was given)."""
    from airgap.connected.access import require

    require(kube, needs)


def injection_needs(namespaces: Sequence[str], restart: bool) -> list[tuple[str, str, str, str | None]]:
    """The writes (and the deployment lists) of an injection into ``namespaces``."""
    needs: list[tuple[str, str, str, str | None]] = [("patch", "namespaces", "", ns) for ns in namespaces]
    if restart:
        for ns in namespaces:
            needs += [("list", "deployments", "apps", ns), ("patch", "deployments", "apps", ns)]
    return needs


def ask_inject_fleet(
    contexts: Sequence[str], namespaces: Sequence[str], restart: bool, *, policy: Any = None, parallel: int = 8
) -> None:
    """Several clusters: every one is asked for :func:`injection_needs` before any is labelled (exit 4)."""
    from airgap.connected.access import ask_every

    wanted = list(dict.fromkeys(namespaces))
    ask_every(contexts, lambda _kube: injection_needs(wanted, restart), policy=policy, parallel=parallel)


def _rolled_out(dep: JSON) -> bool:
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    return (
        int(st.get("observedGeneration", 0)) >= int(dep["metadata"].get("generation", 0))
        and int(st.get("updatedReplicas", 0)) == want
        and int(st.get("readyReplicas", 0)) == want
        and int(st.get("replicas", 0)) == want
    )




# Kubernetes' and the mesh's own namespaces: injecting them puts sidecars into the cluster's system
# pods (and, with --restart, rolls every system Deployment); istiod itself must not be injected.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", NAMESPACE)


def check_names(namespaces: Sequence[str], revision: str | None, *, force: bool = False) -> None:
    """Before any cluster is asked: every namespace and the revision is a DNS-1123 label (exit 3),
    and no system namespace is named without ``force`` (exit 4).

    An empty name or ``../x`` would otherwise end up in the API path (``/namespaces/`` is the collection).
    """
    if not namespaces:
        raise InvalidInput("name at least one namespace")
    for ns in namespaces:
        if not DNS_LABEL_RE.match(ns):
            raise InvalidInput(f"namespace {ns!r}: must be a lowercase DNS label (1-63 of a-z, 0-9, '-')")
    if revision is not None and not DNS_LABEL_RE.match(revision):
        raise InvalidInput(f"--revision {revision!r}: must be a lowercase DNS label (e.g. asm-186-8)")
    system = [ns for ns in dict.fromkeys(namespaces) if ns in SYSTEM_NAMESPACES]
    if system and not force:
        raise Refused(
            f"namespace {', '.join(system)}: a system namespace; injecting it puts sidecars into the cluster's own "
            "pods (and --restart would restart them all); nothing changed; pass --force if you mean it"
        )


def enable_injection(
    kube: Any,
    namespaces: Sequence[str],
    *,
    revision: str | None = None,
    restart: bool = False,
    timeout: float = 300.0,
    poll: float = 2.0,
    notify: Callable[[str], None] = lambda _m: None,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    force: bool = False,
) -> InjectResult:
    """Steps 1-4 on one cluster; see the module docstring. A system namespace needs ``force``."""
    check_names(namespaces, revision, force=force)
    rev = choose_revision(kube, revision)
    found = {ns: kube.get("Namespace", ns) for ns in dict.fromkeys(namespaces)}
    missing = [ns for ns, obj in found.items() if obj is None]
    if missing:
        raise Refused(f"context {kube.context}: namespace(s) not found: {', '.join(missing)}; nothing changed")
    _require_access(kube, injection_needs(list(found), restart))
    results: list[NamespaceResult] = []
    for ns, obj in found.items():
        assert obj is not None
        labels = obj["metadata"].get("labels") or {}
        if labels.get(REV_LABEL) == rev and LEGACY_LABEL not in labels:
            results.append(NamespaceResult(ns, "unchanged"))
            continue
        kube.patch("Namespace", ns, {"metadata": {"labels": {REV_LABEL: rev, LEGACY_LABEL: None}}})
        results.append(NamespaceResult(ns, "set"))
    if restart:
        stamp = now().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        for r in results:
            for dep in kube.list("Deployment", r.namespace):
                name = str(dep["metadata"]["name"])
                kube.patch("Deployment", name, patch, r.namespace, patch_type="strategic")
                r.restarted.append(name)
        _wait_rollouts(kube, results, timeout=timeout, poll=poll, notify=notify)
        for r in results:
            pods = kube.list("Pod", r.namespace)
            r.without_revision = sorted(
                str(p["metadata"]["name"])
                for p in pods
                if (p["metadata"].get("labels") or {}).get(REV_LABEL) != rev
                and not (p.get("metadata") or {}).get("deletionTimestamp")
            )
    return InjectResult(kube.context, rev, results)


def _wait_rollouts(
    kube: Any, results: list[NamespaceResult], *, timeout: float, poll: float, notify: Callable[[str], None]
) -> None:
    last = -1
    pending: list[str] = []

    def rolled_out() -> bool | None:
        nonlocal last, pending
        pending = []
        for r in results:
            names = set(r.restarted)
            if not names:
                continue
            for dep in kube.list("Deployment", r.namespace):
                if dep["metadata"]["name"] in names and not _rolled_out(dep):
                    pending.append(f"{r.namespace}/{dep['metadata']['name']}")
        if len(pending) != last:
            total = sum(len(r.restarted) for r in results)
            notify(f"context {kube.context}: {total - len(pending)}/{total} deployments rolled out")
            last = len(pending)
        return True if not pending else None

    poll_until(
        rolled_out,
        timeout=timeout,
        poll=poll,
        on_timeout=lambda: ClusterError(
            f"context {kube.context}: rollout not finished after {timeout:g}s: {', '.join(pending)}"
        ),
    )
