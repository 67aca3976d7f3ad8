"""The gate of ``bundle import --rotate``: no change that splits the mesh, unless forced and recorded.

Before a rotation is written into a cluster (the *target*), the trust invariant
(:mod:`airgap.connected.trust`) is computed over the target and its *peers* as it would be after
the change: the target's ``cacerts`` replaced by the bundle's. Peers are the ``--peer`` contexts
plus every cluster the target holds a remote secret for (``istio/multiCluster: "true"`` Secrets
made by ``mesh connect``) whose server is the server of a kubeconfig context.

Refused (exit 4, nothing written anywhere, nothing recorded) when, after the change, a target and
some cluster would reject each other, or a peer cannot be read. This covers both directions of an
out-of-order rotation: an intermediate under a new root while a peer does not trust that root
yet, and a trust bundle without a root that a peer still issues under.

When the import moves the target's issuer to another root, every cluster of the set that runs
istiod (pods ``app=istiod`` in ``istio-system``) must already publish that root in the
``istio-ca-root-cert`` ConfigMap of each injected namespace (``istio-injection=enabled`` or
``istio.io/rev``): that is the trust the proxies load. The gate waits for it (a bounded poll),
then refuses.

``--force-split REASON`` is the only way past; the reason goes into the jump host's history with
the import (:func:`airgap.connected.bundle_import.history_hook`).

Trust: the bundle's facts are trusted (verified by ``prepare_import``); everything read from the
clusters and the remote secrets is not, and only decides whether to refuse. The clusters can
change between this check and the write; the check is a guard against operator error, not a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.connected.trust import (
    NAMESPACE,
    ROOT_CONFIGMAP,
    ROOT_CONFIGMAP_KEY,
    ClusterTrust,
    TrustState,
    evaluate,
    read_trust,
)
from airgap.errors import Refused

JSON = dict[str, Any]

DEFAULT_WAIT = 120.0  # seconds for istiod to publish the new root in injected namespaces


@dataclass(frozen=True)
class GateResult:
    """What the gate saw: the clusters, the invariant after the change, and whether it was forced."""

    targets: tuple[str, ...]
    peers: tuple[str, ...]
    after: TrustState
    forced: str | None
    blocking: tuple[str, ...]  # the problems the force let through (empty when not forced)

    def describe(self) -> str:
        peers = ", ".join(self.peers) or "none"
        if self.forced is not None:
            return f"gate: FORCED past a split ({self.forced}): " + "; ".join(self.blocking)
        return f"gate: the mesh stays whole after this import (peers: {peers})"


def context_servers(kubeconfig: Path | None = None) -> dict[str, str]:
    """kubeconfig context -> its cluster's server URL (every context in file order)."""
    from airgap.connected.kube import _existing_files, _read_kubeconfig, kubeconfig_path

    clusters: dict[str, str] = {}
    contexts: list[tuple[str, str]] = []
    for f in _existing_files(kubeconfig_path(kubeconfig)):
        doc = _read_kubeconfig(f)
        for entry in doc.get("clusters") or []:
            server = (entry.get("cluster") or {}).get("server") if isinstance(entry, dict) else None
            if isinstance(server, str) and isinstance(entry.get("name"), str):
                clusters.setdefault(entry["name"], server)
        for entry in doc.get("contexts") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                contexts.append((entry["name"], str((entry.get("context") or {}).get("cluster") or "")))
    out: dict[str, str] = {}
    for name, cluster in contexts:
        if cluster in clusters:
            out.setdefault(name, clusters[cluster])
    return out


def kubeconfig_servers(kubeconfig: Path | None = None) -> dict[str, str]:
    """server URL -> the first kubeconfig context (in file order) whose cluster has that server."""
    by_server: dict[str, str] = {}
    for name, server in context_servers(kubeconfig).items():
        by_server.setdefault(server, name)
    return by_server


def remote_peers(kube: Any, servers: dict[str, str]) -> list[str]:
    """The contexts of the clusters ``kube`` holds remote secrets for (a server no context has: skipped)."""
    from airgap.connected.remote_secrets import MULTICLUSTER_LABEL, _remote_server

    found: list[str] = []
    for s in kube.list("Secret", NAMESPACE, selector=f"{MULTICLUSTER_LABEL}=true"):
        ctx = servers.get(_remote_server(s))
        if ctx is not None and ctx not in found:
            found.append(ctx)
    return found


def _read(
    contexts: Sequence[str], parallel: int, kubeconfig: Path | None, policy: Any, servers: dict[str, str] | None
) -> dict[str, tuple[ClusterTrust, list[str]]]:
    """Each context's trust facts and (when ``servers``) the peers its remote secrets name."""
    from airgap.connected.kube import connect, policy_from_env
    from airgap.connected.trust import map_contexts

    def read_cluster(ctx: str) -> tuple[ClusterTrust, list[str]]:
        with connect(ctx, kubeconfig=kubeconfig, policy=policy or policy_from_env()) as kube:
            return read_trust(kube), (remote_peers(kube, servers) if servers is not None else [])

    return map_contexts(list(contexts), read_cluster, parallel) if contexts else {}


def _refusal(state: TrustState, targets: Sequence[str], problems: list[str]) -> str:
    blocking = sorted({c for r in state.involving(targets) for c in (r.issuer, r.rejecter)} - set(targets))
    phases = ", ".join(f"{c} in phase {state.phase(c)}" for c in blocking)
    head = "bundle import refused: after it the mesh would be split"
    if phases:
        head += f" (blocking: {phases})"
    return f"{head}: " + "; ".join(problems) + "; nothing was changed (pass --force-split REASON to override)"


def check_split(
    bundle: ClusterTrust,
    targets: Sequence[str],
    peers: Sequence[str],
    *,
    force_split: str | None = None,
    parallel: int = 8,
    kubeconfig: Path | None = None,
    policy: Any = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[GateResult, dict[str, ClusterTrust]]:
    """The invariant after ``bundle``'s facts replace each target's; raises :class:`Refused`
    (unless ``force_split``). Returns the result and every cluster's facts before the change."""
    by_context = context_servers(kubeconfig)
    servers = kubeconfig_servers(kubeconfig)
    seen = _read(targets, parallel, kubeconfig, policy, servers)
    wanted = list(dict.fromkeys([*peers, *(p for t in targets for p in seen[t][1])]))
    mine = {by_context.get(t) for t in targets} - {None}
    others = [p for p in wanted if p not in targets and by_context.get(p) not in mine]  # another name of a target
    seen.update(_read(others, parallel, kubeconfig, policy, None))
    after = [ClusterTrust(t, bundle.issuing, bundle.trusted, bundle.subjects, None, bundle.not_before) for t in targets]
    after += [seen[p][0] for p in others]
    state = evaluate(after)  # letters: the oldest root is A
    problems = state.problems(state.involving(targets))  # unreadable peers included
    result = GateResult(tuple(targets), tuple(others), state, force_split, tuple(problems) if force_split else ())
    if problems and force_split is None:
        raise Refused(_refusal(state, targets, problems))
    if notify is not None:
        notify(result.describe())
    return result, {c: v[0] for c, v in seen.items()}


def _published(kube: Any, root: str) -> list[str]:
    """Injected namespaces whose ``istio-ca-root-cert`` lacks ``root``; none when istiod does not run
    (nothing publishes there then, and no proxy of that cluster gets a certificate either)."""
    from airgap.connected.inject import LEGACY_LABEL
    from airgap.connected.mesh import ISTIOD_SELECTOR, REV_LABEL
    from airgap.connected.trust import pem_facts

    if not kube.list("Pod", NAMESPACE, selector=ISTIOD_SELECTOR):
        return []
    missing: list[str] = []
    for ns in kube.list("Namespace"):
        labels = ns["metadata"].get("labels") or {}
        if labels.get(LEGACY_LABEL) != "enabled" and REV_LABEL not in labels:
            continue
        name = str(ns["metadata"]["name"])
        cm = kube.get("ConfigMap", ROOT_CONFIGMAP, name)
        pem = ((cm or {}).get("data") or {}).get(ROOT_CONFIGMAP_KEY)
        facts = pem_facts(None, pem.encode() if isinstance(pem, str) else None, context=kube.context)
        if root not in facts.trusted:
            missing.append(name)
    return missing


def wait_published(
    root: str,
    contexts: Sequence[str],
    *,
    timeout: float,
    poll: float,
    kubeconfig: Path | None = None,
    policy: Any = None,
    notify: Callable[[str], None] | None = None,
) -> None:
    """Wait until every cluster running istiod publishes ``root`` in every injected namespace; else
    :class:`Refused` naming the clusters and namespaces that still lack it."""
    from airgap.connected.kube import connect, policy_from_env
    from airgap.core.retry import poll_until

    lacking: dict[str, list[str]] = {}

    def check() -> bool | None:
        lacking.clear()
        for ctx in contexts:
            with connect(ctx, kubeconfig=kubeconfig, policy=policy or policy_from_env()) as kube:
                missing = _published(kube, root)
            if missing:
                lacking[ctx] = missing
        if lacking and notify is not None:
            notify(f"gate: waiting for istiod to publish root {root} in " + _where(lacking))
        return None if lacking else True

    poll_until(
        check,
        timeout=timeout,
        poll=poll,
        on_timeout=lambda: Refused(
            f"bundle import refused: the new issuing root {root} is not yet in the proxies' trust "
            f"({ROOT_CONFIGMAP} in {_where(lacking)}) after {timeout:g} s; nothing was changed: "
            "import the bundles with the new trust first and let istiod publish it (or restart it)"
        ),
    )


def _where(lacking: dict[str, list[str]]) -> str:
    return "; ".join(f"context {c}: namespace(s) {', '.join(ns)}" for c, ns in lacking.items())


def run_gate(
    bundle: ClusterTrust,
    targets: Sequence[str],
    peers: Sequence[str],
    *,
    force_split: str | None = None,
    wait: float = DEFAULT_WAIT,
    poll: float = 2.0,
    parallel: int = 8,
    kubeconfig: Path | None = None,
    policy: Any = None,
    notify: Callable[[str], None] | None = None,
) -> GateResult:
    """:func:`check_split`, then (when the issuer moves) :func:`wait_published`. Reads only."""
    result, before = check_split(
        bundle,
        targets,
        peers,
        force_split=force_split,
        parallel=parallel,
        kubeconfig=kubeconfig,
        policy=policy,
        notify=notify,
    )
    moves = bundle.issuing is not None and any(before[t].issuing not in (None, bundle.issuing) for t in targets)
    if moves and force_split is None:
        assert bundle.issuing is not None
        wait_published(
            bundle.issuing,
            [*targets, *result.peers],
            timeout=wait,
            poll=poll,
            kubeconfig=kubeconfig,
            policy=policy,
            notify=notify,
        )
    return result


__all__ = [
    "DEFAULT_WAIT",
    "GateResult",
    "check_split",
    "context_servers",
    "kubeconfig_servers",
    "remote_peers",
    "run_gate",
]
