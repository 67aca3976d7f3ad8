"""Ask first: before a command writes to any cluster, it asks every cluster whether each write of its
plan is allowed (``SelfSubjectAccessReview``), and writes nothing anywhere when one is not.

Trust: the API server's answers about the caller's own rights (the same server that would refuse
the write). A denied review, or a context whose TLS is not verified (``insecure-skip-tls-verify``
without ``--insecure``), is :class:`~airgap.errors.Refused` (exit 4) naming the context, the verb,
the resource and the namespace of each denial: the user learns everything missing in one run,
and no cluster is left half-written because a later cluster (or a later step) said no.

Used by ``bundle import --context`` (one cluster or a fleet), ``mesh install``, ``mesh connect``
and ``mesh inject``. A failure after writing began is undone by each command (:class:`Undo`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airgap.errors import AirgapError, Refused

# (verb, resource, API group, namespace or None for the cluster scope)
Need = tuple[str, str, str, str | None]


def describe(need: Need) -> str:
    """``create secrets in istio-system``, ``patch namespaces shop``, ``create clusterroles.rbac…``."""
    verb, resource, group, namespace = need
    res = f"{resource}.{group}" if group else resource
    where = "" if not namespace else f" {namespace}" if resource == "namespaces" else f" in {namespace}"
    return f"{verb} {res}{where}"


def denied(kube: Any, needs: Sequence[Need]) -> list[str]:
    """The needs of ``needs`` this cluster does not allow (one review per distinct need, in order)."""
    writes = [n for n in needs if n[0] not in ("get", "list", "watch")]
    if writes:
        kube.check_writable(describe(writes[0]))  # insecure-skip-tls-verify without --insecure: exit 4
    missing = []
    for need in dict.fromkeys(needs):
        verb, resource, group, namespace = need
        allowed, _reason = kube.can_i(verb, resource, group=group, namespace=namespace)
        if not allowed:
            missing.append(describe(need))
    return missing


def require(kube: Any, needs: Sequence[Need]) -> None:
    """One cluster: Refused (exit 4, nothing written) unless every need is allowed."""
    missing = denied(kube, needs)
    if missing:
        raise Refused(
            f"context {kube.context}: not allowed to {', '.join(missing)} (RBAC); nothing changed; "
            "`airgap preflight` lists every permission airgap needs"
        )


def require_all(plans: Sequence[tuple[Any, Sequence[Need]]]) -> None:
    """Every cluster of a fleet, before any writes: one Refused naming every denial of every context."""
    lines = []
    for kube, needs in plans:
        missing = denied(kube, needs)
        if missing:
            lines.append(f"context {kube.context}: {', '.join(missing)}")
    if lines:
        raise Refused(
            f"not allowed (RBAC): {'; '.join(lines)}; nothing was written to any cluster; "
            "`airgap preflight` lists every permission airgap needs"
        )


def ask_every(
    contexts: Sequence[str],
    needs_of: Callable[[Any], Sequence[Need]],
    *,
    kubeconfig: Any = None,
    policy: Any = None,
    parallel: int = 8,
) -> None:
    """A fleet run asks every cluster first: ``needs_of(kube)`` (reads allowed) gives each cluster's
    writes; a denial anywhere (or a context whose TLS is not verified, without ``--insecure``) is one
    Refused (exit 4) before any cluster is written. A cluster that cannot be reached or read, or whose
    own rules refuse, is left to its own run, which fails alone as a fleet's clusters do; a context
    the kubeconfig does not name is a typo, refused (exit 3) before any cluster is asked or written."""
    import concurrent.futures as cf

    from airgap.connected.kube import connect, policy_from_env, resolve_context

    def ask(ctx: str) -> str | None:
        try:
            kube = connect(ctx, kubeconfig=kubeconfig, policy=policy or policy_from_env())
        except AirgapError:
            return None
        with kube:
            try:
                needs = needs_of(kube)
            except AirgapError:
                return None
            try:
                missing = denied(kube, needs)
            except Refused as exc:  # insecure-skip-tls-verify without --insecure
                return exc.message
            except AirgapError:
                return None
        return f"context {ctx}: {', '.join(missing)}" if missing else None

    if len(contexts) < 2:
        return  # one cluster asks itself, right before it writes
    for ctx in contexts:
        resolve_context(ctx, kubeconfig)
    with cf.ThreadPoolExecutor(max_workers=max(1, min(parallel, len(contexts))), thread_name_prefix="ask") as pool:
        lines = [a for a in pool.map(ask, contexts) if a]
    if lines:
        raise Refused(
            f"not allowed: {'; '.join(lines)}; nothing was written to any cluster; "
            "`airgap preflight` lists every permission airgap needs"
        )


@dataclass
class Undo:
    """What this run created, to delete again (newest first, each only if it still has our uid)
    when a later step fails. Objects that existed before the run are never in it."""

    kube: Any
    made: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)  # kind, name, ns, uid

    def created(self, kind: str, obj: dict[str, Any], namespace: str | None = None) -> None:
        meta = obj.get("metadata") or {}
        self.made.append((kind, str(meta.get("name")), namespace, meta.get("uid")))

    def run(self, notify: Callable[[str], None] = lambda _m: None) -> None:
        """Delete what was created; best effort (the original error is what the user sees)."""
        for kind, name, namespace, uid in reversed(self.made):
            try:
                self.kube.delete(kind, name, namespace, uid=uid)
                notify(f"context {self.kube.context}: removed {kind} {name} that this run had created")
            except (AirgapError, OSError):
                notify(f"context {self.kube.context}: could not remove {kind} {name}; remove it by hand")
        self.made.clear()


__all__ = ["Need", "Undo", "ask_every", "denied", "describe", "require", "require_all"]
